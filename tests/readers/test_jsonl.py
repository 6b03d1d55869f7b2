import json

import pytest
from spacy.util import make_tempdir

from spacy_kbnlp.extensions import get_coref_clusters
from spacy_kbnlp.readers import read_docs
from spacy_kbnlp.readers.jsonl import read_jsonl, write_jsonl

pytestmark = pytest.mark.filterwarnings("ignore:.*KBW050")


def records(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def test_el_records(nlp, fixtures_dir):
    docs = list(read_jsonl(fixtures_dir / "readers" / "el.jsonl", nlp))
    a, b = docs
    assert a._.source["tasks"] == ["el"] and a._.source["id"] == "a"
    assert [(s.text, s.label_, s.kb_id_) for s in a.spans["el_gold"]] == [
        ("Paris", "ENTITY", "Q90"), ("the capital of France", "NIL", "<NIL>"),
        ("France", "ENTITY", "Q142")]
    # France has a parent -> not a root -> not in ents; the optional NIL is not either
    assert [(e.text, e.kb_id_) for e in a.ents] == [("Paris", "Q90")]
    assert a._.el_gold[1]["optional"] is True and a._.el_gold[2]["parent"] == 1
    assert [(e.text, e.kb_id_) for e in b.ents] == [("Angela Merkel", "Q567"), ("Rome", "Q220")]
    assert b.spans["el_gold"][2].label_ == "DATETIME" and b.spans["el_gold"][2].text == "2019"
    assert b._.el_eval_span == [0, len(b.text)]


def test_coref_records_token_offsets(nlp, fixtures_dir):
    docs = list(read_jsonl(fixtures_dir / "readers" / "coref.jsonl", nlp))
    assert [[s.text for s in c] for c in get_coref_clusters(docs[1])] == [
        ["The dog", "It", "it"], ["Anna"]]
    assert docs[0].text == "Anna said she would come ."


def test_re_records(nlp, fixtures_dir):
    r1, r2 = read_jsonl(fixtures_dir / "readers" / "re.jsonl", nlp)
    assert [(e.text, e.label_) for e in r1.ents] == [("Bill Gates", "Peop"), ("Microsoft", "Org")]
    assert [(h.text, t.text, lab, s) for h, t, lab, s in r2._.relations] == [
        ("John", "Boston", "Live_In", 0.5), ("Boston", "Cambridge", "Located_In", 1.0)]


@pytest.mark.parametrize("name,task,offsets", [
    ("el.jsonl", "el", "char"), ("coref.jsonl", "coref", "token"), ("re.jsonl", "re", "char")])
def test_round_trip(nlp, fixtures_dir, name, task, offsets):
    path = fixtures_dir / "readers" / name
    docs = list(read_jsonl(path, nlp, task=task))
    with make_tempdir() as tmp:
        out = tmp / "out.jsonl"
        assert write_jsonl(docs, out, task, offsets=offsets) == len(docs)
        assert records(out) == records(path)
        again = list(read_jsonl(out, nlp))
    assert [d.text for d in again] == [d.text for d in docs]


def test_elevant_to_jsonl_round_trip(shared_data, nlp):
    """ELEVANT -> JSONL -> Docs keeps every aligned label, its kb id and the eval span."""
    path = shared_data / "el" / "elevant" / "benchmarks" / "wiki-fair-v2-test.benchmark.jsonl"
    docs = list(read_docs(path, "elevant", nlp, limit=5))
    with make_tempdir() as tmp:
        write_jsonl(docs, tmp / "el.jsonl", "el")
        back = list(read_jsonl(tmp / "el.jsonl", nlp))
    for a, b in zip(docs, back):
        assert b._.el_eval_span == a._.el_eval_span
        assert [(s.start, s.end, s.kb_id_, s.label_) for s in b.spans["el_gold"]] == \
            [(s.start, s.end, s.kb_id_, s.label_) for s in a.spans["el_gold"]]
        assert [(e.start, e.end, e.kb_id_) for e in b.ents] == [(e.start, e.end, e.kb_id_) for e in a.ents]


def test_predictions_from_span_key(nlp):
    doc = nlp.make_doc("Paris and Rome")
    doc.spans["entqa"] = [doc.char_span(0, 5, label="ENTITY", kb_id="Q90")]
    with make_tempdir() as tmp:
        write_jsonl([doc], tmp / "p.jsonl", "el", el_key="entqa")
        assert records(tmp / "p.jsonl") == [
            {"id": 0, "text": "Paris and Rome", "mentions": [{"start": 0, "end": 5, "kb_id": "Q90"}]}]


def test_multi_task_record(nlp):
    rec = {"id": 1, "tokens": ["Anna", "met", "Bob", "."],
           "clusters": [[[0, 1]]], "entities": [{"start": 0, "end": 1, "label": "PER"},
                                               {"start": 2, "end": 3, "label": "PER"}],
           "relations": [{"head": 0, "tail": 1, "label": "met"}]}
    with make_tempdir() as tmp:
        (tmp / "m.jsonl").write_text(json.dumps(rec) + "\n", encoding="utf-8")
        doc = next(read_jsonl(tmp / "m.jsonl", nlp))
        only = next(read_jsonl(tmp / "m.jsonl", nlp, task="coref"))
    assert doc._.source["tasks"] == ["coref", "re"]
    assert len(doc.ents) == 2 and len(get_coref_clusters(doc)) == 1
    assert only.ents == () and only._.rel_records is None


@pytest.mark.parametrize("line,match", [
    ('{"id": 1, "text": "A b", "mentions": [', r"KBE053.*bad\.jsonl:2"),
    ('{"id": 1, "text": "A b"}', r"KBE065.*bad\.jsonl:2"),
    ('{"id": 1, "mentions": []}', r"KBE067.*bad\.jsonl:2"),
    ('{"id": 1, "text": "A b", "mentions": [{"start": 0, "end": 9, "kb_id": null}]}',
     r"KBE055.*bad\.jsonl:2 mentions\[0\]"),
    ('{"id": 1, "text": "A b", "mentions": [{"start": 0, "kb_id": null}]}',
     r"KBE054.*bad\.jsonl:2 mentions\[0\].*'end'"),
    ('{"id": 1, "text": "A b", "mentions": [{"start": 0, "end": 1, "kb_id": 5}]}',
     r"KBE059.*bad\.jsonl:2 mentions\[0\].*'kb_id'"),
    ('{"id": 1, "tokens": ["A", "b"], "clusters": [[[0, 3]]]}', r"KBE057.*bad\.jsonl:2 clusters\[0\]\[0\]"),
    ('{"id": 1, "tokens": ["A", "b"], "clusters": [[0, 1]]}', r"KBE059.*bad\.jsonl:2 clusters\[0\]"),
    ('{"id": 1, "text": "A b", "entities": [{"start": 0, "end": 1, "label": "X"}], '
     '"relations": [{"head": 0, "tail": 1, "label": "r"}]}', r"KBE064.*bad\.jsonl:2 relations\[0\]"),
    ('{"id": 1, "text": "Ab c", "entities": [{"start": 0, "end": 1, "label": "X"}]}', None),
])
def test_malformed_line_names_file_and_line(nlp, line, match):
    with make_tempdir() as tmp:
        path = tmp / "bad.jsonl"
        path.write_text('{"id": 0, "text": "ok", "clusters": []}\n' + line + "\n",
                        encoding="utf-8")
        if match is None:  # off-boundary offsets: strict fails, expand widens
            with pytest.raises(ValueError, match=r"KBE056.*bad\.jsonl:2 entities\[0\]"):
                list(read_jsonl(path, nlp, policy="strict"))
            with pytest.warns(UserWarning, match="KBW050"):
                docs = list(read_jsonl(path, nlp))
            assert docs[1].ents[0].text == "Ab"
            return
        with pytest.raises(ValueError, match=match):
            list(read_jsonl(path, nlp))


def test_unknown_task(nlp, fixtures_dir):
    with pytest.raises(ValueError, match="KBE066"):
        list(read_jsonl(fixtures_dir / "readers" / "el.jsonl", nlp, task="ner"))
