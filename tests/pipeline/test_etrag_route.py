"""The documented route on a user's own data: `spacy train configs/etrag.cfg` (the shipped
config, its [vars] overridden) on a small project-JSONL set with a label set that is
neither SemEval's nor CoNLL04's and with overlapping entities, for ETRAG and the
no-retrieval baseline (tiny T5 backbone built from a config, no hub)."""
import warnings
from pathlib import Path

import pytest
import spacy
from spacy.training import Example

from spacy_kbnlp.readers import input_doc, read_jsonl
from spacy_kbnlp.retrieval.render import pair_instances

from ..llm.tiny import build_tiny_models

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "fixtures" / "re" / "new_labels.jsonl"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny_route"))


def _gold(nlp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KBW051: the overlapping entities leave doc.ents
        return list(read_jsonl(DATA, nlp))


def _input(nlp, gold):
    """Prediction input (as `spacy_kbnlp evaluate re --gold-ents` builds it): tokens,
    doc.ents and the entity span group, no relations."""
    return input_doc(nlp, gold, gold_ents=True)


def _rels(doc):
    return sorted((doc[r["head"][0]:r["head"][1]].text, r["label"], doc[r["tail"][0]:r["tail"][1]].text)
                  for r in doc._.rel_records or ())


def test_overlapping_pair_is_a_prediction_candidate():
    nlp = spacy.blank("en")
    gold = _gold(nlp)[0]  # "Bank of Rome" (ORG) contains "Rome" (CITY)
    assert len(gold.ents) == 1
    pairs = [(i["a"], i["b"]) for i in pair_instances(_input(nlp, gold), with_labels=False)]
    train_pairs = [(i["a"], i["b"], i["label"]) for i in pair_instances(gold)]
    assert pairs == [([0, 3], [2, 3])] and train_pairs == [([0, 3], [2, 3], "named_after(e1,e2)")]
    # without the span group only doc.ents is paired (one entity: no pair)
    assert pair_instances(_input(nlp, gold), with_labels=False, spans_key=None) == []


@pytest.mark.parametrize("n_neighbors", [0, 2])
def test_spacy_train_shipped_config_new_labels_overlaps(tiny, tmp_path, n_neighbors, one_torch_thread):
    from spacy.cli.train import train

    train(ROOT / "configs" / "etrag.cfg", tmp_path / "out", overrides={
        "paths.train": str(DATA), "paths.dev": str(DATA), "paths.backbone": tiny["t5"],
        "vars.n_neighbors": n_neighbors, "vars.steps": 60, "vars.epochs": 100, "vars.lr": 0.01,
        "vars.batch_size": 8, "vars.eval_frequency": 30,
        "components.etrag_relation_extractor.model.n_candidates": 4,
        "components.etrag_relation_extractor.refresh_every": 5})
    nlp = spacy.load(tmp_path / "out" / "model-last")
    pipe = nlp.get_pipe("etrag_relation_extractor")
    assert pipe.module.n_neighbors == n_neighbors
    assert pipe.labels == ("capital_of(e1,e2)", "capital_of(e2,e1)", "named_after(e1,e2)", "no_relation")
    gold = _gold(nlp)
    out = [nlp(_input(nlp, g)) for g in gold]
    assert [_rels(o) for o in out] == [_rels(g) for g in gold]
    assert _rels(out[0]) == [("Bank of Rome", "named_after", "Rome")]  # overlapping entities
    assert _rels(out[4]) == [("Paris", "capital_of", "France")]  # tail first in the text
    assert out[5]._.rel_records == [] and out[6]._.rel_records == []
    # the dev scores of the last evaluation: every relation right
    scores = nlp.evaluate([Example(_input(nlp, g), g) for g in gold])
    assert scores["rel_micro_f"] == 1.0
    again = spacy.load(tmp_path / "out" / "model-last")
    assert [a._.rel_records for a in again.pipe([_input(again, g) for g in gold])] == \
        [o._.rel_records for o in out]


def test_spacy_train_the_vote_on_a_frozen_baseline(tiny, tmp_path, one_torch_thread):
    """The recipe of docs/components.md: the baseline (`--vars.n_neighbors 0`), then one step
    from its weights, frozen, with the vote of the nearest training instances (pair pooling,
    retrieval_mix 1): the saved pipeline keeps the baseline's weights and predicts the
    baseline's label distribution interpolated with the vote."""
    import numpy
    import torch
    from spacy.cli.train import train

    from spacy_kbnlp.pipeline.etrag_relation_extractor import knn_mix_scores

    common = {"paths.train": str(DATA), "paths.dev": str(DATA), "paths.backbone": tiny["t5"],
              "vars.epochs": 100, "vars.lr": 0.01, "vars.batch_size": 8, "vars.eval_frequency": 30,
              "components.etrag_relation_extractor.model.n_candidates": 4}
    train(ROOT / "configs" / "etrag.cfg", tmp_path / "base", overrides=dict(common, **{
        "vars.n_neighbors": 0, "vars.steps": 30}))
    comp = "components.etrag_relation_extractor"
    train(ROOT / "configs" / "etrag.cfg", tmp_path / "vote", overrides=dict(common, **{
        "vars.n_neighbors": 2, "vars.steps": 1, "paths.init_from": str(tmp_path / "base" / "model-last"),
        f"{comp}.warm_lr_scale": 0.0, f"{comp}.model.pooling": "pair", f"{comp}.retrieval_mix": 1.0,
        f"{comp}.knn_mix": 0.75, f"{comp}.knn_k": 8}))
    base = spacy.load(tmp_path / "base" / "model-last").get_pipe("etrag_relation_extractor")
    vote = spacy.load(tmp_path / "vote" / "model-last").get_pipe("etrag_relation_extractor")
    assert vote.module.pooling == "pair" and (vote.cfg["knn_k"], vote.cfg["knn_mix"]) == (8, 0.75)
    saved = base.module.state_dict()
    assert all(torch.equal(p, saved[n]) for n, p in vote.module.state_dict().items() if n.startswith("seq2seq."))
    nlp = spacy.blank("en")
    docs = [_input(nlp, g) for g in _gold(nlp)]
    insts = [i for d in docs for i in vote.instances(d, gold=False)]
    predicted = numpy.concatenate([s for _, s in vote.predict(docs)])
    by_hand = knn_mix_scores(base.score_instances(insts), vote.neighbour_votes(insts), 0.75)
    assert numpy.allclose(predicted, by_hand, atol=1e-4)
