import numpy
import pytest
from spacy.util import make_tempdir

from spacy_kbnlp.encoders.hf import HFEncoder
from spacy_kbnlp.retrieval.bm25 import BM25Index
from spacy_kbnlp.retrieval.knn import KNNRelationClassifier
from spacy_kbnlp.retrieval.render import (NO_RELATION, doc_key, doc_labels, keyword_text, label_match,
                                          pair_instances, relation_from_instance, render_input,
                                          render_target)
from spacy_kbnlp.retrieval.store import DemoStore

from .util import make_doc, re_docs


def test_render_formats(nlp):
    doc = re_docs(nlp)[5]
    assert render_input(doc) == "[E0 Peop: Booth] killed [E1 Peop: Lincoln] in [E2 Loc: Washington] ."
    assert render_input(doc, "text") == doc.text
    assert render_target(doc) == "Booth | Kill | Lincoln"
    assert render_target(doc, "ner") == "Booth | Peop\nLincoln | Peop\nWashington | Loc"
    assert doc_labels(doc) == ["Kill(e1,e2)"]
    assert keyword_text("[E0 X: a] b", "a | r | b\nc | r | d") == "[E0 X: a] b => a | r | b ; c | r | d"
    empty = make_doc(nlp, "Nothing here .", [], [])
    assert render_target(empty) == "none" and doc_labels(empty) == []


def test_pair_instances_directed(nlp):
    doc = make_doc(nlp, "London is home to Alan Turing .", [(0, 6, "Loc"), (18, 29, "Peop")],
                   [(1, 0, "Live_In")])
    (inst,) = pair_instances(doc)
    assert inst["label"] == "Live_In(e2,e1)"
    assert inst["text"] == "[E1 Loc: London] is home to [E2 Peop: Alan Turing] ."
    assert relation_from_instance(inst, inst["label"]) == {"head": [4, 6], "tail": [0, 1], "label": "Live_In"}
    assert relation_from_instance(inst, NO_RELATION) is None
    three = re_docs(nlp)[5]
    labels = [i["label"] for i in pair_instances(three)]
    assert labels == ["Kill(e1,e2)", NO_RELATION, NO_RELATION]
    assert pair_instances(make_doc(nlp, "Only Paris .", [(5, 10, "Loc")], [])) == []


def test_overlapping_entities_marked_as_far_as_possible(nlp):
    doc = make_doc(nlp, "University of Manchester staff .", [(0, 24, "Org")], [])
    from spacy.tokens import Span
    from spacy_kbnlp.extensions import add_relation
    add_relation(doc, Span(doc, 0, 3), Span(doc, 2, 3), "Located_In")  # Manchester inside the Org
    insts = pair_instances(doc)
    assert len(insts) == 1 and insts[0]["label"] == "Located_In(e1,e2)"
    assert insts[0]["text"] == "[E1 Org: University of Manchester] staff . [E2 ENT: Manchester]"


def test_bm25_sorted_and_padded():
    index = BM25Index(["alan turing lived in london", "marie curie lived in paris", "cern geneva"])
    scores, rows = index.search(["turing london", "the of", "paris"], 5)
    assert rows[0, 0] == 0 and rows[2, 0] == 1
    assert list(rows[0, 3:]) == [-1, -1] and numpy.isneginf(scores[0, 3:]).all()
    for s in scores:
        finite = s[numpy.isfinite(s)]
        assert list(finite) == sorted(finite, reverse=True)
    assert (scores[1, :3] == 0).all()  # stopwords only: no evidence, no crash
    assert BM25Index([]).search(["x"], 2)[1].tolist() == [[-1, -1]]


def test_bm25_over_texts_without_index_terms_scores_zero():
    """Texts of stopwords and one-letter words give bm25s no vocabulary (it fails with
    "max() arg is an empty sequence"); such an index scores every text 0."""
    index = BM25Index(["x y z ", "the of"])
    scores, rows = index.search(["turing london", "x"], 3)
    assert rows.tolist() == [[0, 1, -1], [0, 1, -1]]
    assert (scores[:, :2] == 0).all() and numpy.isneginf(scores[:, 2]).all()


def test_demo_retriever_initialized_without_examples_does_not_crash():
    """`nlp.initialize()` without examples (spaCy's placeholder doc) used to crash inside
    bm25s at the first call."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("demo_retriever")
    nlp.initialize()
    doc = nlp("Obama was born in Hawaii.")
    assert doc.text == "Obama was born in Hawaii."


def test_store_leave_one_out_and_round_trip(nlp, encoder):
    docs = re_docs(nlp)
    store = DemoStore.from_docs(docs, encoder=encoder)
    queries = [render_input(d) for d in docs]
    keys = [doc_key(d) for d in docs]
    for retriever in ("bm25", "dense"):
        hits = store.search(queries, 3, retriever=retriever, encoder=encoder, exclude_keys=keys)
        for i, h in enumerate(hits):
            assert len(h) == 3
            assert all(store.records[r]["key"] != keys[i] for r, _ in h)  # never itself
            assert [s for _, s in h] == sorted((s for _, s in h), reverse=True)
        with_self = store.search(queries, 1, retriever=retriever, encoder=encoder)
        assert [h[0][0] for h in with_self] == list(range(len(docs)))
    dense = store.search(queries, 3, retriever="dense", encoder=encoder, exclude_keys=keys)
    # the nearest other Live_In sentence of "Alan Turing lived in London" is a Live_In one
    assert store.records[dense[0][0][0]]["labels"] == ["Live_In(e1,e2)"]
    with make_tempdir() as tmp:
        store.to_disk(tmp / "store")
        loaded = DemoStore.from_disk(tmp / "store")
        assert loaded.records == store.records
        for retriever in ("bm25", "dense"):
            a = store.search(queries, 3, retriever=retriever, encoder=encoder, exclude_keys=keys)
            b = loaded.search(queries, 3, retriever=retriever, encoder=encoder, exclude_keys=keys)
            assert a == b
        with pytest.raises(FileNotFoundError, match="KBE303"):
            DemoStore.from_disk(tmp / "missing")


def test_store_errors(nlp, encoder):
    store = DemoStore.from_docs(re_docs(nlp))
    with pytest.raises(ValueError, match="KBE305"):
        store.search(["x"], 2, retriever="dense", encoder=encoder)
    with pytest.raises(ValueError, match="KBE300"):
        store.search(["x"], 2, retriever="sparse")
    with pytest.raises(ValueError, match="KBE301"):
        DemoStore(task="coref")
    other = HFEncoder(pooling="cls")
    other.name = "another-encoder"
    store.build_dense(encoder)
    with pytest.raises(ValueError, match="KBE302"):
        store.check_encoder(other)
    assert DemoStore().search(["x"], 3) == [[]]


def test_label_match():
    assert label_match(["A"], [["A"], ["B"], ["A", "C"], []]) == 0.5
    assert label_match([], [["A"]]) is None


def test_knn_votes_and_leaves_one_out(nlp, encoder):
    docs = re_docs(nlp)
    knn = KNNRelationClassifier(encoder, k=2).fit(docs)
    assert len(knn.instances) == 6 * 1 + 2 * 3  # six docs with one pair, two with three
    query = make_doc(nlp, "Niels Bohr lived in Copenhagen .", [(0, 10, "Peop"), (20, 30, "Loc")], [])
    (recs,) = knn.predict_docs([query])
    assert [(r["head"], r["tail"], r["label"]) for r in recs] == [([0, 2], [4, 5], "Live_In")]
    assert 0 < recs[0]["score"] <= 1
    hits = knn.neighbours([pair_instances(docs[0])[0]["text"]], [doc_key(docs[0])])
    assert all(knn.instances[r]["key"] != doc_key(docs[0]) for r, _ in hits[0])
