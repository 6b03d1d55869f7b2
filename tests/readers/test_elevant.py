import json
import re

import pytest
from spacy.util import make_tempdir

from spacy_kbnlp.readers import AlignmentStats, read_docs
from spacy_kbnlp.readers.elevant import read_elevant

pytestmark = pytest.mark.filterwarnings("ignore:.*KBW050")


def bench(shared_data, name):
    return shared_data / "el" / "elevant" / "benchmarks" / f"{name}.benchmark.jsonl"


def raw_lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


# (docs, labels, <NIL>, DATETIME+QUANTITY) from the data README table
README_COUNTS = {
    "wiki-fair-v2-test": (40, 1365, 153, 278),
    "news-fair-v2-test": (80, 1233, 183, 234),
    "oke-2016-eval": (55, 340, 52, 0),
    "rss-500": (500, 1000, 476, 0),
    "spotlight": (58, 330, 0, 0),
}


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_counts_match_readme(shared_data, nlp, name):
    n_docs, n_labels, n_nil, n_dq = README_COUNTS[name]
    docs = list(read_elevant(bench(shared_data, name), nlp))
    assert len(docs) == n_docs
    recs = [r for d in docs for r in d._.el_gold]
    assert len(recs) == n_labels
    assert sum(r["entity_id"] == "<NIL>" for r in recs) == n_nil
    assert sum(r["entity_id"] in ("DATETIME", "QUANTITY") for r in recs) == n_dq
    # every label is aligned and kept in the span group too
    assert sum(len(d.spans["el_gold"]) for d in docs) == n_labels


def test_wiki_fair_layout(shared_data, nlp):
    path = bench(shared_data, "wiki-fair-v2-test")
    raw = raw_lines(path)
    docs = list(read_elevant(path, nlp))
    doc, obj = docs[0], raw[0]
    assert doc.text == obj["text"]
    assert doc._.source["id"] == 37040882 and doc._.source["format"] == "elevant"
    assert doc._.source["line"] == 1 and doc._.source["file"] == str(path)
    assert doc._.source["title_synonyms"] == [[14, 26]]
    assert doc._.source["hyperlinks"][0] == [[56, 66], "Paralympics"]
    assert doc._.el_eval_span == [253, 613]
    gold = {r["id"]: r for r in doc._.el_gold}
    spans = {(s.start_char, s.end_char, s.kb_id_): s for s in doc.spans["el_gold"]}
    # label 0: a coreferent pronoun; label 2 a NIL parent of 3 (NIL) and 4 (Southampton)
    assert doc.text[253:256] == "She" and gold[0]["coref"] is True
    assert gold[2]["children"] == [3, 4] and gold[2]["entity_id"] == "<NIL>"
    assert gold[3]["parent"] == 2 and gold[4]["parent"] == 2
    assert spans[(297, 334, "<NIL>")].text == "Eastleigh Leisure Centre, Southampton"
    assert spans[(297, 334, "<NIL>")].label_ == "NIL"
    assert spans[(297, 321, "<NIL>")].text == "Eastleigh Leisure Centre"
    assert spans[(323, 334, "Q79848")].text == "Southampton"
    assert spans[(323, 334, "Q79848")].label_ == "ENTITY"
    assert spans[(286, 287, "QUANTITY")].label_ == "QUANTITY"
    s = spans[(297, 321, "<NIL>")]
    assert (gold[3]["start"], gold[3]["end"]) == (s.start, s.end)
    # ents: roots only -> Southampton (child of a NIL) is not in doc.ents, the pronoun is
    ents = {(e.start_char, e.end_char): e for e in doc.ents}
    assert (323, 334) not in ents
    assert ents[(253, 256)].kb_id_ == "Q17403146" and ents[(253, 256)].label_ == "ENTITY"
    assert all(253 <= e.start_char and e.end_char <= 613 for e in doc.ents)


def test_ents_follow_contract(shared_data, nlp):
    """Independent recount from the raw file: root, non-optional/desc QID labels inside the
    evaluation span."""
    path = bench(shared_data, "wiki-fair-v2-test")
    expected = 0
    for obj in raw_lines(path):
        ev0, ev1 = obj["evaluation_span"]
        for lab in obj["labels"]:
            s, e = lab["span"]
            if (lab.get("parent") is None and re.fullmatch(r"Q\d+", lab["entity_id"])
                    and not lab.get("optional") and not lab.get("desc") and ev0 <= s and e <= ev1):
                expected += 1
    stats = AlignmentStats()
    docs = list(read_elevant(path, nlp, stats=stats))
    assert sum(len(d.ents) for d in docs) + stats.ents_skipped == expected
    assert stats.ents_skipped == 0


def test_desc_label_with_child(shared_data, nlp):
    docs = list(read_elevant(bench(shared_data, "wiki-fair-v2-test"), nlp, limit=2))
    assert len(docs) == 2
    doc = docs[1]
    gold = {r["id"]: r for r in doc._.el_gold}
    assert gold[12]["desc"] is True and gold[12]["children"] == [13]
    assert doc[gold[12]["start"]:gold[12]["end"]].text == "their senior team"
    assert doc[gold[13]["start"]:gold[13]["end"]].text == "their"
    assert all(e.start_char != gold[12]["start_char"] for e in doc.ents)


def test_spotlight_subwords_expanded_and_counted(shared_data, nlp):
    path = bench(shared_data, "spotlight")
    stats = AlignmentStats()
    docs = list(read_elevant(path, nlp, stats=stats))
    assert stats.char_spans == 330
    assert stats.expanded > 0 and stats.expanded + stats.exact == 330 and stats.dropped == 0
    # line 5, label 0 is "red" inside "lingered" -> widened to the whole token
    rec = docs[4]._.el_gold[0]
    assert docs[4].text[26:29] == "red"
    assert docs[4][rec["start"]:rec["end"]].text == "lingered"
    assert (rec["start_char"], rec["end_char"]) == (26, 29)
    assert any("spotlight.benchmark.jsonl:5 labels[0]" in x for x in stats.examples)


def test_spotlight_contract_drops_are_counted(shared_data, nlp):
    stats = AlignmentStats()
    with pytest.warns(UserWarning, match=r"KBW050.*policy 'contract'.*dropped"):
        list(read_elevant(bench(shared_data, "spotlight"), nlp, policy="contract"))
    docs = list(read_elevant(bench(shared_data, "spotlight"), nlp, policy="contract", stats=stats))
    assert stats.dropped > 0
    # dropped labels stay in el_gold with no token offsets
    assert sum(len(d._.el_gold) for d in docs) == 330
    assert sum(r["start"] is None for d in docs for r in d._.el_gold) == stats.dropped
    assert sum(len(d.spans["el_gold"]) for d in docs) == 330 - stats.dropped


def test_strict_policy_fails_on_spotlight(shared_data, nlp):
    with pytest.raises(ValueError, match=r"KBE056.*spotlight\.benchmark\.jsonl:5 labels\[0\]"):
        list(read_docs(bench(shared_data, "spotlight"), "elevant", nlp, policy="strict"))


def test_warning_summary_on_default_run(shared_data, nlp):
    with pytest.warns(UserWarning, match=r"KBW050.*spotlight"):
        list(read_elevant(bench(shared_data, "spotlight"), nlp))


GOOD = {"id": 1, "text": "Paris is nice.", "labels": [
    {"id": 0, "span": [0, 5], "entity_id": "Q90", "name": "Paris", "type": "Q515"}]}


@pytest.mark.parametrize("bad,match", [
    ("{not json", r"KBE053.*bad\.jsonl:2"),
    (json.dumps({"id": 2, "labels": []}), r"KBE054.*bad\.jsonl:2.*'text'"),
    (json.dumps({**GOOD, "labels": {"a": 1}}), r"KBE059.*bad\.jsonl:2.*'labels'"),
    (json.dumps({**GOOD, "labels": [{"id": 0, "span": [0, 50], "entity_id": "Q90"}]}),
     r"KBE055.*bad\.jsonl:2 labels\[0\]"),
    (json.dumps({**GOOD, "labels": [{"id": 0, "span": "0-5", "entity_id": "Q90"}]}),
     r"KBE059.*bad\.jsonl:2 labels\[0\].*'span'"),
    (json.dumps({**GOOD, "labels": [{"id": 0, "span": [0, 5]}]}),
     r"KBE054.*bad\.jsonl:2 labels\[0\].*'entity_id'"),
])
def test_malformed_line_names_file_and_line(nlp, bad, match):
    with make_tempdir() as tmp:
        path = tmp / "bad.jsonl"
        path.write_text(json.dumps(GOOD) + "\n" + bad + "\n", encoding="utf-8")
        with pytest.raises(ValueError, match=match):
            list(read_elevant(path, nlp))


def test_malformed_ids_are_nil(nlp):
    obj = {"id": 1, "text": "Paris is nice.", "labels": [
        {"id": 0, "span": [0, 5], "entity_id": "Q90x"}]}
    with make_tempdir() as tmp:
        (tmp / "a.jsonl").write_text(json.dumps(obj) + "\n", encoding="utf-8")
        doc = next(read_elevant(tmp, nlp))
    assert [s.label_ for s in doc.spans["el_gold"]] == ["NIL"]
    assert doc.ents == () and doc._.el_eval_span == [0, 14]
