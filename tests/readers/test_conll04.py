import json
from collections import Counter

import pytest
from spacy.util import make_tempdir

from spacy_kbnlp.readers.conll04 import read_conll04


def spert(shared_data, split):
    return shared_data / "re" / "conll04" / "spert_format" / f"conll04_{split}.json"


@pytest.mark.parametrize("split,n_sents,n_tokens,ents,rels", [
    ("train", 922, 26525, (1087, 1219, 616, 455), (330, 271, 247, 256, 179)),
    ("dev", 231, 6993, (283, 322, 170, 118), (91, 76, 65, 69, 42)),
    ("test", 288, 8336, (321, 427, 198, 133), (100, 105, 94, 76, 47)),
])
def test_counts_match_readme(shared_data, nlp, split, n_sents, n_tokens, ents, rels):
    docs = list(read_conll04(spert(shared_data, split), nlp))
    assert len(docs) == n_sents
    assert sum(len(d) for d in docs) == n_tokens
    ent_counts = Counter(e.label_ for d in docs for e in d.ents)
    assert tuple(ent_counts[k] for k in ("Peop", "Loc", "Org", "Other")) == ents
    rel_counts = Counter(r["label"] for d in docs for r in d._.rel_records)
    kinds = ("Live_In", "OrgBased_In", "Located_In", "Work_For", "Kill")
    assert tuple(rel_counts[k] for k in kinds) == rels
    assert all(r["score"] == 1.0 for d in docs for r in d._.rel_records)


def test_train_totals_and_exact_triple(shared_data, nlp):
    path = spert(shared_data, "train")
    docs = list(read_conll04(path, nlp))
    assert sum(len(d.ents) for d in docs) == 3377
    assert sum(len(d._.rel_records) for d in docs) == 1283
    # first training sentence (orig_id 3255): "Radio Reloj Network" OrgBased_In "Havana"
    doc = docs[0]
    assert doc._.source == {"format": "conll04", "file": str(path), "index": 0, "id": 3255}
    assert doc[:3].text == "Newspaper ` Explains"
    assert [(h.text, t.text, lab, s) for h, t, lab, s in doc._.relations] == [
        ("Radio Reloj Network", "Havana", "OrgBased_In", 1.0)]
    assert doc._.kb_rels == {(10, 9): {"OrgBased_In": 1.0}}
    assert [(e.text, e.label_) for e in doc.ents][:3] == [
        ("U.S.", "Loc"), ("Havana", "Loc"), ("Radio Reloj Network", "Org")]


def test_argument_types_never_vary(shared_data, nlp):
    """README: Live_In Peop->Loc, OrgBased_In Org->Loc, Located_In Loc->Loc,
    Work_For Peop->Org, Kill Peop->Peop."""
    expected = {"Live_In": ("Peop", "Loc"), "OrgBased_In": ("Org", "Loc"),
                "Located_In": ("Loc", "Loc"), "Work_For": ("Peop", "Org"), "Kill": ("Peop", "Peop")}
    for doc in read_conll04(spert(shared_data, "dev"), nlp):
        labels = {(e.start, e.end): e.label_ for e in doc.ents}
        for r in doc._.rel_records:
            pair = (labels[tuple(r["head"])], labels[tuple(r["tail"])])
            assert pair == expected[r["label"]]


GOOD = {"tokens": ["Bill", "Gates", "founded", "Microsoft"],
        "entities": [{"type": "Peop", "start": 0, "end": 2}, {"type": "Org", "start": 3, "end": 4}],
        "relations": [{"type": "Work_For", "head": 0, "tail": 1}]}


@pytest.mark.parametrize("bad,match", [
    ({**GOOD, "entities": [{"type": "Peop", "start": 0, "end": 9}]}, r"KBE057.*x\.json\[1\] entities\[0\]"),
    ({**GOOD, "relations": [{"type": "Kill", "head": 0, "tail": 5}]}, r"KBE064.*x\.json\[1\] relations\[0\].*'tail'"),
    ({k: v for k, v in GOOD.items() if k != "tokens"}, r"KBE054.*x\.json\[1\].*'tokens'"),
    ({**GOOD, "entities": [{"type": "Peop", "start": "0", "end": 1}]}, r"KBE059.*x\.json\[1\].*'start'"),
])
def test_malformed_item_names_file_and_index(nlp, bad, match):
    with make_tempdir() as tmp:
        path = tmp / "x.json"
        path.write_text(json.dumps([GOOD, bad]), encoding="utf-8")
        with pytest.raises(ValueError, match=match):
            list(read_conll04(path, nlp))


def test_bad_json_names_line(nlp):
    with make_tempdir() as tmp:
        path = tmp / "x.json"
        path.write_text("[\n" + json.dumps(GOOD) + ",\n{oops}\n]", encoding="utf-8")
        with pytest.raises(ValueError, match=r"KBE053.*x\.json:3"):
            list(read_conll04(path, nlp))
