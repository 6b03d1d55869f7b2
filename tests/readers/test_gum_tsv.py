import pytest
from spacy.util import make_tempdir

from spacy_kbnlp.extensions import get_coref_clusters
from spacy_kbnlp.readers import read_docs
from spacy_kbnlp.readers.gum_tsv import read_gum_tsv


@pytest.fixture(scope="module")
def gum_docs(shared_data):
    from spacy.lang.en import English

    nlp = English()
    tsv = list(read_gum_tsv(shared_data / "coref" / "gum" / "gum" / "tsv", nlp))
    conll = list(read_docs(shared_data / "coref" / "gum" / "gum" / "conll", "conll2012", nlp))
    return tsv, conll


def as_sets(doc):
    return {frozenset((s.start, s.end) for s in c) for c in get_coref_clusters(doc)}


def test_tsv_clusters_equal_gum_conll_on_all_documents(gum_docs):
    tsv, conll = gum_docs
    assert len(tsv) == len(conll) == 237
    for a, b in zip(tsv, conll):
        assert a._.source["id"] == b._.source["id"]
        assert [t.text for t in a] == [t.text for t in b]
        assert as_sets(a) == as_sets(b), a._.source["id"]


def test_totals_match_readme(gum_docs):
    tsv, _ = gum_docs
    # README table: train + dev + test
    assert sum(len(d) for d in tsv) == 177410 + 28119 + 28397
    assert sum(len(list(d.sents)) for d in tsv) == 10224 + 1575 + 1464
    assert sum(len(d.spans["gum_mentions"]) for d in tsv) == 49649 + 7897 + 7927
    clusters = [c for d in tsv for c in get_coref_clusters(d)]
    assert len(clusters) == 25757 + 3940 + 4319
    assert sum(len(c) == 1 for c in clusters) == 18750 + 2838 + 3225
    # bridging relations: bridge:other 1,138 + bridge:def 872 + bridge:aggr 371
    labels = [r["label"] for d in tsv for r in d._.rel_records or ()]
    assert len(labels) == 1138 + 872 + 371
    assert labels.count("bridge:def") == 872 and labels.count("bridge:aggr") == 371


def test_byron_layout(gum_docs):
    tsv, _ = gum_docs
    doc = next(d for d in tsv if d._.source["id"] == "GUM_bio_byron")
    assert [s.text for s in list(doc.sents)[:1]] == ["Education and early loves"]
    mentions = {m["id"]: m for m in doc._.source["mentions"]}
    byron = mentions["4"]
    assert (byron["start"], byron["end"], byron["type"], byron["identity"]) == (4, 5, "person",
                                                                                  "Lord_Byron")
    assert byron["infstat"] == "new" and byron["salience"] == "sssss"
    span = next(s for s in doc.spans["gum_mentions"] if (s.start, s.end) == (4, 5))
    assert span.label_ == "person" and span.kb_id_ == "Lord_Byron"
    # mention 6 "his early formal education at Aberdeen Grammar School" (tokens 6-13)
    assert doc[mentions["6"]["start"]:mentions["6"]["end"]].text == \
        "his early formal education at Aberdeen Grammar School"
    # row 2-8 holds "bridge:aggr 4-12[38_9]": from mention 9 (Aberdeen Grammar School) to 38
    rel = {"type": "bridge:aggr", "source": "9", "target": "38"}
    assert rel in doc._.source["relations"]
    m9, m38 = mentions["9"], mentions["38"]
    assert doc[m9["start"]:m9["end"]].text == "Aberdeen Grammar School"
    assert {"head": [m9["start"], m9["end"]], "tail": [m38["start"], m38["end"]],
            "label": "bridge:aggr", "score": 1.0} in doc._.rel_records


def test_malformed_relation_target(nlp):
    row = "1-1\t0-1\tA\tperson[1]\tnew[1]\ts[1]\t_\t_\tcoref\t1-9\t\n"
    with make_tempdir() as tmp:
        path = tmp / "bad.tsv"
        path.write_text("#FORMAT=WebAnno TSV 3.2\n\n#Text=A\n" + row, encoding="utf-8")
        with pytest.raises(ValueError, match=r"KBE062.*bad\.tsv:4.*'1-9'"):
            list(read_gum_tsv(path, nlp))
