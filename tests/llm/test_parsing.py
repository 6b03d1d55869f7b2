from spacy_kbnlp.llm.parsing import parse_entities, parse_relations
from spacy_kbnlp.llm.prompts import build_prompt

from ..retrieval.util import make_doc, re_docs

LABELS = ["Live_In", "Work_For", "Kill", "OrgBased_In", "Located_In"]


def _doc(nlp):
    return make_doc(nlp, "Booth killed Lincoln in Washington .",
                    [(0, 5, "Peop"), (13, 20, "Peop"), (24, 34, "Loc")], [])


def test_parse_lines_all_forms(nlp):
    doc = _doc(nlp)
    answer = ("1. Booth | Kill | Lincoln\n- (Lincoln; live in; Washington)\n"
              "E0 | kill | E1\n[E1 Peop: Lincoln] | Live_In | washington\nnone")
    recs, errors = parse_relations(answer, list(doc.ents), LABELS)
    assert recs == [{"head": [0, 1], "tail": [2, 3], "label": "Kill"},
                    {"head": [2, 3], "tail": [4, 5], "label": "Live_In"}]
    assert [e["kind"] for e in errors] == ["duplicate", "duplicate"]


def test_parse_partial_and_malformed(nlp):
    doc = _doc(nlp)
    answer = ("Booth | Kill | Lincoln\nthis line is chatter\nBooth | Married_To | Lincoln\n"
              "Oswald | Kill | Lincoln\nLincoln | Kill | Lincoln")
    recs, errors = parse_relations(answer, list(doc.ents), LABELS)
    assert recs == [{"head": [0, 1], "tail": [2, 3], "label": "Kill"}]
    assert [e["kind"] for e in errors] == ["unparsable", "unknown_label", "unknown_entity",
                                           "self_relation"]
    assert errors[0]["detail"] == "this line is chatter"
    assert parse_relations(None, list(doc.ents), LABELS) == ([], [{"kind": "empty_answer", "detail": ""}])
    assert parse_relations("None.", list(doc.ents), LABELS) == ([], [])


def test_parse_json_answers(nlp):
    doc = _doc(nlp)
    answer = ('Sure! [{"head": "Booth", "label": "Kill", "tail": "Lincoln"}, '
              '{"dep": 1, "dest": 2, "relation": "Live_In"}, {"oops": 1}]')
    recs, errors = parse_relations(answer, list(doc.ents), LABELS)
    assert recs == [{"head": [0, 1], "tail": [2, 3], "label": "Kill"},
                    {"head": [2, 3], "tail": [4, 5], "label": "Live_In"}]
    assert [e["kind"] for e in errors] == ["unparsable"]
    # broken JSON falls back to lines
    recs, errors = parse_relations('[{"head": "Booth"', list(doc.ents), LABELS)
    assert recs == [] and errors[0]["kind"] == "unparsable"


def test_parse_entities(nlp):
    doc = nlp.make_doc("Paris is not Paris Hilton , says Paris .")
    spans, errors = parse_entities("Paris | Loc\nParis Hilton | Peop\nParis | Loc\nRome | Loc\nx",
                                   doc, ["Loc", "Peop"])
    assert spans == [(0, 1, "Loc"), (3, 5, "Peop"), (7, 8, "Loc")]
    assert [e["kind"] for e in errors] == ["unknown_entity", "unparsable"]


def test_prompt_from_demonstrations(nlp):
    demo_doc = re_docs(nlp)[0]
    demos = [{"input": "[E0 Peop: Alan Turing] lived in [E1 Loc: London] .", "text": demo_doc.text,
              "target": "Alan Turing | Live_In | London"}] * 7
    prompt = build_prompt(_doc(nlp), ["Kill", "Live_In"], demonstrations=demos, max_demonstrations=2)
    assert prompt.count("Alan Turing | Live_In | London") == 2
    assert prompt.startswith("Extract the relations") and "Relation labels: Kill, Live_In." in prompt
    assert prompt.endswith("Text: [E0 Peop: Booth] killed [E1 Peop: Lincoln] in [E2 Loc: Washington] .\nAnswer:\n")
    ner = build_prompt(_doc(nlp), ["Peop"], task="ner", demonstrations=demos[:1])
    assert "[E0" not in ner  # never shows the entity marks of the entity task
