"""A tiny relation corpus written for the tests (CoNLL04 labels)."""
from typing import List

from spacy.language import Language
from spacy.tokens import Doc, Span

from spacy_kbnlp.extensions import add_relation, install_extensions

# text, entities (char start, end, label), relations (head idx, tail idx, label)
RECORDS = [
    ("Alan Turing lived in London .", [(0, 11, "Peop"), (21, 27, "Loc")], [(0, 1, "Live_In")]),
    ("Marie Curie lived in Paris .", [(0, 11, "Peop"), (21, 26, "Loc")], [(0, 1, "Live_In")]),
    ("Ada Lovelace lived in London .", [(0, 12, "Peop"), (22, 28, "Loc")], [(0, 1, "Live_In")]),
    ("Tim Berners-Lee worked for CERN .", [(0, 15, "Peop"), (27, 31, "Org")], [(0, 1, "Work_For")]),
    ("Grace Hopper worked for the Navy .", [(0, 12, "Peop"), (28, 32, "Org")], [(0, 1, "Work_For")]),
    ("Booth killed Lincoln in Washington .", [(0, 5, "Peop"), (13, 20, "Peop"), (24, 34, "Loc")],
     [(0, 1, "Kill")]),
    ("CERN is based in Geneva .", [(0, 4, "Org"), (17, 23, "Loc")], [(0, 1, "OrgBased_In")]),
    ("Oswald killed Kennedy in Dallas .", [(0, 6, "Peop"), (14, 21, "Peop"), (25, 31, "Loc")],
     [(0, 1, "Kill")]),
]


def make_doc(nlp: Language, text: str, ents, rels) -> Doc:
    install_extensions()
    doc = nlp.make_doc(text)
    spans = [doc.char_span(s, e, label=l) for s, e, l in ents]
    doc.ents = spans
    for h, t, l in rels:
        add_relation(doc, spans[h], spans[t], l)
    doc._.source = {"id": (text.split() or [""])[0]}
    return doc


def re_docs(nlp: Language) -> List[Doc]:
    return [make_doc(nlp, *rec) for rec in RECORDS]


def unannotated(nlp: Language, doc: Doc) -> Doc:
    """Same tokens and entities, no relations (prediction input)."""
    out = Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
    out.ents = [Span(out, e.start, e.end, label=e.label_) for e in doc.ents]
    return out
