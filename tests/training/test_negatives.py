"""Negatives for the retriever's multi-label NCE and EntQA training data preparation."""
import random

import numpy
import pytest
import spacy
import torch

from spacy_kbnlp.models.passages import entity_pieces
from spacy_kbnlp.models.retriever import RetrieverSpec, encode_entity_texts, topk_exhaustive
from spacy_kbnlp.readers import read_docs
from spacy_kbnlp.training.entqa import (EntityTexts, TrainPassage, eval_token_range, gold_links,
                                        reader_candidates, retriever_step_inputs, split_holdout,
                                        training_passages)
from spacy_kbnlp.training.negatives import HardNegativeMiner, sample_negatives

ENTITIES = ["Barack Obama: 44th president of the United States", "Berlin: capital of Germany",
            "Apple Inc.: technology company", "Angela Merkel: German chancellor",
            "Mount Everest: highest mountain"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def retriever():
    return RetrieverSpec().build()


@pytest.fixture(scope="module")
def oke_docs(shared_data):
    path = shared_data / "el" / "elevant" / "benchmarks" / "oke-2016-train.benchmark.jsonl"
    return list(read_docs(path, "elevant", spacy.blank("en"), limit=12))


def test_sample_negatives_excludes_golds_mixes_hard_and_random():
    rng = numpy.random.default_rng(0)
    ranked = [3, 7, 1, 9, 4, 2]
    for _ in range(50):
        neg = sample_negatives({3, 5}, ranked, 20, 100, hard_fraction=0.1, rng=rng)
        assert len(neg) == len(set(neg)) == 20
        assert 3 not in neg and 5 not in neg
        assert neg[:2] == [7, 1]  # round(20 * 0.1) = 2 hard ones, best first, gold 3 skipped
    # all hard
    assert sample_negatives(set(), ranked, 4, 100, hard_fraction=1.0, rng=rng) == [3, 7, 1, 9]
    # a KB smaller than asked gives every non-excluded entity
    assert sorted(sample_negatives({0}, [], 10, 4, rng=rng)) == [1, 2, 3]
    assert sample_negatives({0}, [0], 5, 1, rng=rng) == []  # single-entity KB, it is the gold
    # deterministic for a seed; the global numpy state works too (the training loop saves it)
    a = sample_negatives(set(), [], 5, 1000, rng=numpy.random.default_rng(1))
    assert a == sample_negatives(set(), [], 5, 1000, rng=numpy.random.default_rng(1))
    numpy.random.seed(3)
    b = sample_negatives({1, 2}, [], 5, 1000, rng=numpy.random)
    numpy.random.seed(3)
    assert b == sample_negatives({1, 2}, [], 5, 1000, rng=numpy.random) and not {1, 2} & set(b)


def test_miner_ranks_with_the_current_model_and_refreshes(retriever, nlp):
    from spacy_kbnlp.models.passages import doc_pieces, make_passages

    doc = nlp("Barack Obama visited Berlin and met Angela Merkel.")
    passages = make_passages(0, doc, doc_pieces(retriever.tokenizer, doc, "none"), 32, 16)
    pieces = entity_pieces(retriever.tokenizer, ENTITIES, 32)
    miner = HardNegativeMiner(retriever, pieces, passages, pool=3)
    assert miner.ranked(0).size == 0
    miner.refresh()
    reps, mask = encode_entity_texts(retriever, pieces)
    p, pm = miner.encode_passages(passages)
    _, rows = topk_exhaustive(retriever, p, pm, reps, mask, 3)
    assert miner.ranked(0).tolist() == rows[0].tolist()
    assert set(miner.ranked(0).tolist()) == {0, 1, 3}
    numpy.testing.assert_allclose(miner.reps, reps, atol=1e-6)
    # a refresh after changing the entity encoder changes the reps
    weight = retriever.entity_model.encoder.layer[5].output.dense.weight
    delta = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.05
    with torch.no_grad():
        weight.add_(delta)
    try:
        miner.refresh()
        assert miner.n_refreshes == 2
        assert not numpy.allclose(miner.reps, reps, atol=1e-4)
    finally:
        with torch.no_grad():
            weight.sub_(delta)
    # a single-entity KB: the miner returns it and sampling never picks a gold
    single = HardNegativeMiner(retriever, pieces[:1], passages, pool=3)
    single.refresh()
    assert single.ranked(0).tolist() == [0]


def test_step_inputs_exclude_the_passage_golds_and_labelled_entities(retriever, nlp):
    from spacy_kbnlp.models.passages import Passage

    ids = [f"Q{i}" for i in range(1, 41)]
    pieces = [[1000 + i] for i in range(40)]
    texts = EntityTexts(ids, pieces, pieces)
    p = Passage(0, 0, 3, [[1], [2], [3]], [])
    items = [(0, TrainPassage(p, {"Q1": [(0, 1)], "Q2": [(1, 2)]}, {"Q1", "Q2", "Q3"})),
             (1, TrainPassage(p, {"Q3": [(0, 1)]}, {"Q3"}))]
    rng = numpy.random.default_rng(0)
    for _ in range(20):
        passages, ent_pieces, cand, gold = retriever_step_inputs(
            items, texts, lambda i: [0, 1, 2, 3, 4], n_negatives=10, hard_fraction=0.2, rng=rng)
        rows = [sorted({ent_pieces[c][0] - 1000 for c in cand[b] if c >= 0}) for b in range(2)]
        negs0 = [ent_pieces[c][0] - 1000 for c, g in zip(cand[0], gold[0]) if c >= 0 and not g]
        assert [ids[ent_pieces[c][0] - 1000] for c, g in zip(cand[0], gold[0]) if g] == ["Q1", "Q2"]
        assert not {0, 1, 2} & set(negs0)  # golds Q1, Q2 and the labelled Q3 are never negatives
        assert 3 in negs0 and 4 in negs0  # the two hard negatives (20% of 10)
        negs1 = [ent_pieces[c][0] - 1000 for c, g in zip(cand[1], gold[1]) if c >= 0 and not g]
        assert 2 not in negs1 and len(negs1) == 10
        assert gold.sum() == 3 and len(rows[0]) == 12


def test_training_passages_from_elevant_docs(oke_docs, retriever):
    tps = training_passages(oke_docs, retriever.tokenizer, length=8, stride=4)
    assert tps and all(tp.passage.n_words <= 8 for tp in tps)
    n_gold = 0
    for tp in tps:
        doc = oke_docs[tp.passage.doc_index]
        for qid, spans in tp.golds.items():
            for s, e in spans:
                span = doc[tp.passage.start + s: tp.passage.start + e]
                recs = [r for r in doc._.el_gold if r["entity_id"] == qid and r["start"] == span.start
                        and r["end"] == span.end]
                assert recs and not recs[0]["optional"]
                n_gold += 1
        assert set(tp.golds) <= tp.labelled
    # every target link lies inside at least one passage
    links = [(i, s, e, q) for i, d in enumerate(oke_docs) for s, e, q in gold_links(d)
             if e - s <= 4]
    covered = {(tp.passage.doc_index, tp.passage.start + s, tp.passage.start + e, q)
               for tp in tps for q, spans in tp.golds.items() for s, e in spans}
    assert set(links) <= covered and n_gold >= len(links)
    # a KB restriction keeps only its ids
    kb = {q for _, _, _, q in links[:3]}
    assert {q for tp in training_passages(oke_docs, retriever.tokenizer, kb_ids=kb)
            for q in tp.golds} == kb


def test_eval_span_restricts_passages(shared_data, retriever):
    path = shared_data / "el" / "elevant" / "benchmarks" / "news-fair-v2.benchmark.jsonl"
    doc = next(iter(read_docs(path, "elevant", spacy.blank("en"), limit=1)))
    lo, hi = eval_token_range(doc)
    a, b = doc._.el_eval_span
    assert doc[lo].idx >= a and doc[hi - 1].idx + len(doc[hi - 1]) <= b and 0 < lo < hi < len(doc)
    tps = training_passages([doc], retriever.tokenizer)
    assert min(tp.passage.start for tp in tps) == lo and max(tp.passage.end for tp in tps) == hi


def test_split_holdout_and_reader_candidates(oke_docs):
    train, dev = split_holdout(oke_docs, every=4)
    assert len(dev) == 3 and len(train) == 9
    assert not {id(d) for d in train} & {id(d) for d in dev}
    assert [d._.source["id"] for d in dev] == [d._.source["id"] for d in split_holdout(oke_docs, 4)[1]]
    tp = TrainPassage(None, {"Q1": [(0, 1)], "Q2": [(2, 3)]}, {"Q1", "Q2", "Q9"})
    cands = reader_candidates(tp, ["Q1", "Q9", "Q5", "Q6", "Q7"], 4, random.Random(0))
    assert sorted(cands) == ["Q1", "Q2", "Q5", "Q6"]


def test_training_passages_take_any_kb_id_scheme(retriever):
    """Your own KB's ids (slugs, not QIDs) are training targets when the KB is given;
    NIL and unknown labels never are, and they are never labelled either."""
    from spacy_kbnlp.readers.elevant import build_el_doc

    nlp = spacy.blank("en")
    text = "Ada Lovelace wrote notes on the Analytical Engine in London ."
    labels = [{"id": 0, "span": [0, 12], "entity_id": "ada_lovelace", "name": "Ada"},
              {"id": 1, "span": [32, 49], "entity_id": "analytical_engine", "name": "AE"},
              {"id": 2, "span": [53, 59], "entity_id": "<NIL>", "name": "London"}]
    doc = build_el_doc(nlp, text, labels)
    kb = {"ada_lovelace", "analytical_engine", "london"}
    tps = training_passages([doc], retriever.tokenizer, kb_ids=kb)
    golds = {q: spans for tp in tps for q, spans in tp.golds.items()}
    assert golds == {"ada_lovelace": [(0, 2)], "analytical_engine": [(6, 8)]}
    assert set().union(*(tp.labelled for tp in tps)) == {"ada_lovelace", "analytical_engine"}
    # without the KB only Wikidata QIDs count (ELEVANT's malformed ids stay out)
    assert not any(tp.golds for tp in training_passages([doc], retriever.tokenizer))
