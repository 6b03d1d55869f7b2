"""ETRAG's retrieval path on top of a frozen backbone and the neighbours' label vote:
``warm_lr_scale`` (the weights copied by ``init_from`` step with that scale; 0 freezes
them) and ``knn_mix`` (prediction: the label distribution of the retrieved neighbours
interpolated with the model's, as kNN-LM does)."""
from collections import Counter

import numpy
import pytest
import spacy

from spacy_kbnlp.pipeline.etrag_relation_extractor import knn_mix_scores, log_softmax

from ..retrieval.util import re_docs, unannotated
from .test_etrag import _nlp, _train, tiny  # noqa: F401  (the tiny fixture)
from .test_etrag_init_from import _save_tiny, _with_init_from

NAME = "etrag_relation_extractor"


def test_knn_mix_scores():
    scores = numpy.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype="float32")
    votes = numpy.array([[0.0, 1.0, 0.0], [0.0, 0.25, 0.75]], dtype="float32")
    assert numpy.allclose(knn_mix_scores(scores, votes, 0.0), log_softmax(scores), atol=1e-6)
    assert numpy.allclose(numpy.exp(knn_mix_scores(scores, votes, 1.0)), votes, atol=1e-6)
    half = numpy.exp(knn_mix_scores(scores, votes, 0.5))
    assert numpy.allclose(half, 0.5 * numpy.exp(log_softmax(scores)) + 0.5 * votes, atol=1e-6)
    assert numpy.allclose(half.sum(1), 1.0, atol=1e-6)
    # first row: the model gives label 0 p 0.84, label 1 p 0.11; the vote is all label 1
    assert numpy.exp(knn_mix_scores(scores, votes, 0.25))[0].argmax() == 0  # 0.63 against 0.34
    assert half[0].argmax() == 1  # 0.42 against 0.56


def test_neighbour_votes_and_the_knn_mix(tiny):
    with pytest.raises(ValueError, match=r"KBE312.*knn_mix.*label vote"):
        nlp = spacy.blank("en")
        nlp.add_pipe(NAME, config={"model": {"backbone": tiny["t5"]}, "knn_mix": 1.5})
    # one neighbour, a sharp top-1: the vote is the label of the nearest bank row
    nlp = _nlp(tiny["t5"], n_neighbors=1, temperature=1e-4)
    _train(nlp, steps=3)
    pipe = nlp.get_pipe(NAME)
    pipe.refresh_bank()
    gold = [i for d in re_docs(nlp) for i in pipe.instances(d, gold=True)]
    # each training sentence with one entity pair as a new document (another key): its
    # nearest neighbour is its own copy in the bank, so its own label tops the vote (a
    # sentence with three entities has three pair instances, nearly the same text)
    pairs = Counter(i["key"] for i in gold)
    single = [i for i in gold if pairs[i["key"]] == 1]
    assert len(single) == 6
    votes = pipe.neighbour_votes([dict(i, key="new") for i in single])
    assert votes.shape == (6, len(pipe.labels))
    assert numpy.allclose(votes.sum(1), 1.0, atol=1e-5) and numpy.allclose(votes.max(1), 1.0, atol=1e-3)
    assert [pipe.labels[j] for j in votes.argmax(1)] == [i["label"] for i in single]
    gold = single
    # with its own key the copy is left out (leave-one-out, as in training): the vote changes
    assert not numpy.allclose(pipe.neighbour_votes(gold), votes, atol=1e-3)
    # knn_mix 1: the predicted labels are the vote's; 0 (default): the model's
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    insts = [i for d in docs for i in pipe.instances(d, gold=False)]
    model_top = pipe.score_instances(insts).argmax(1)
    vote_top = pipe.neighbour_votes(insts).argmax(1)
    assert (model_top != vote_top).any()  # otherwise the test could not tell them apart
    for mix, expected in ((0.0, model_top), (1.0, vote_top)):
        pipe.cfg["knn_mix"] = mix
        (_, scores), = pipe.predict([docs[0]])
        n = len(pipe.instances(docs[0], gold=False))
        assert list(scores.argmax(1)) == list(expected[:n])
    # the baseline (no neighbours) has no vote: knn_mix changes nothing
    base = _nlp(tiny["t5"], n_neighbors=0)
    _train(base, steps=1)
    bpipe = base.get_pipe(NAME)
    assert not bpipe.neighbour_votes(insts).any()


def test_warm_lr_scale_zero_trains_only_the_retrieval_path(tiny, tmp_path):
    """Started from a saved baseline with ``warm_lr_scale = 0``: after training, every
    copied weight is the baseline's, the retrieval path has moved, and with the prompts
    hidden the model scores exactly as the baseline."""
    import torch

    with pytest.raises(ValueError, match=r"KBE312.*warm_lr_scale"):
        nlp = spacy.blank("en")
        nlp.add_pipe(NAME, config={"model": {"backbone": tiny["t5"]}, "warm_lr_scale": -1.0})
    src = _save_tiny(tmp_path, "base", tiny["t5"])
    saved = spacy.load(src).get_pipe(NAME)
    before = {n: p.clone() for n, p in saved.module.state_dict().items()}

    def trained(scale):
        return trained_steps(src, 4, scale, tiny["t5"])

    frozen, losses = trained(0.0)
    module = frozen.module
    after = module.state_dict()
    warm = sorted(module.warm_parameters & set(after))
    assert warm and all(torch.equal(after[n], before[n]) for n in warm)
    assert all(not p.requires_grad for n, p in module.named_parameters() if n in module.warm_parameters)
    start, _ = trained_steps(src, 0, 0.0, tiny["t5"])  # the same initialisation, no update
    for name in ("value.weight", "label_emb.weight"):  # the retrieval path trained
        assert not torch.equal(after[name], start.module.state_dict()[name])
    insts = [i for d in re_docs(spacy.blank("en")) for i in frozen.instances(d, gold=False)]
    assert numpy.allclose(frozen.score_instances(insts, no_prompts=True),
                          saved.score_instances(insts), atol=1e-5)
    assert not numpy.allclose(frozen.score_instances(insts), saved.score_instances(insts), atol=1e-3)
    assert losses[-1] < losses[0]
    moved, _ = trained(1.0)  # the default: the copied weights train too
    assert any(not torch.equal(moved.module.state_dict()[n], before[n]) for n in warm)


def trained_steps(src, steps, scale=0.0, backbone=None):
    nlp = _with_init_from(_nlp(backbone), src)
    nlp.get_pipe(NAME).cfg["warm_lr_scale"] = scale
    return nlp.get_pipe(NAME), _train(nlp, steps=steps)


def test_shipped_config_freezes_the_copied_weights(tiny, tmp_path):
    """configs/etrag.cfg with --paths.init_from and warm_lr_scale 0 (docs/relations.md):
    the copied weights do not train, the retrieval path does."""
    import torch
    from spacy.util import load_config, load_model_from_config
    from thinc.api import Adam

    from .test_etrag import CONFIGS, _examples

    src = _save_tiny(tmp_path, "base", tiny["t5"])
    config = load_config(CONFIGS / "etrag.cfg", overrides={
        "paths.backbone": tiny["t5"], "paths.init_from": str(src), "vars.n_neighbors": 2,
        "components.etrag_relation_extractor.warm_lr_scale": 0.0,
        "components.etrag_relation_extractor.knn_mix": 0.25}, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: _examples(nlp))
    optimizer = Adam(0.01)  # (the config's schedule starts with a warmup at 0)
    pipe = nlp.get_pipe(NAME)
    assert pipe.cfg["warm_lr_scale"] == 0.0 and pipe.cfg["knn_mix"] == 0.25
    before = {n: p.detach().clone() for n, p in pipe.module.named_parameters()}
    for _ in range(2):
        nlp.update(_examples(nlp), sgd=optimizer, losses={})
    after = dict(pipe.module.named_parameters())
    warm = [n for n in before if n in pipe.module.warm_parameters]
    assert warm and all(torch.equal(after[n], before[n]) for n in warm)
    assert not torch.equal(after["value.weight"], before["value.weight"])
