"""Two-stage ETRAG: ``init_from`` ([initialize.components.etrag_relation_extractor]) starts
the model from the weights of a saved no-retrieval baseline pipeline; bad folders and
weights that do not fit are coded errors."""
import random
import shutil

import numpy
import pytest
import spacy
from spacy.training import Example
from thinc.api import Adam

from ..retrieval.util import make_doc, re_docs, unannotated
from .test_etrag import DECISION_RECORDS, _examples, _nlp, _train, tiny  # noqa: F401  (the tiny fixture)

NAME = "etrag_relation_extractor"


def _decision_examples(nlp):
    return [Example(unannotated(nlp, d), d) for d in (make_doc(nlp, *r) for r in DECISION_RECORDS)]


def _with_init_from(nlp, path):
    """The documented route: the setting in [initialize.components.<name>]."""
    nlp.config["initialize"]["components"][NAME] = {"init_from": str(path)}
    return nlp


def _instances(pipe, nlp):
    docs = [unannotated(nlp, make_doc(nlp, *r)) for r in DECISION_RECORDS]
    return [i for d in docs for i in pipe.instances(d, gold=False)]


def test_init_from_baseline_gives_the_baseline_without_prompts(tmp_path):
    """MiniLM warm start (BERT positions): ETRAG started from a trained baseline scores
    exactly as the baseline with its prompts hidden, before any update; the copied
    parameters are not fresh; the neighbours change the scores when shown."""
    import torch

    from spacy_kbnlp.core.torch_io import set_seed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_seed(0)
        base = spacy.blank("en")
        base.add_pipe(NAME, config={"model": {"n_neighbors": 0}})
        egs = _decision_examples(base)
        base.initialize(lambda: egs)
        opt, rng = Adam(1e-4), random.Random(0)
        for _ in range(3):
            rng.shuffle(egs)
            base.update(egs, sgd=opt, losses={})
        base.to_disk(tmp_path / "base")
        base_pipe = base.get_pipe(NAME)
        insts = _instances(base_pipe, base)
        expected = base_pipe.score_instances(insts)

        def etrag(init_from):
            set_seed(1)
            nlp = spacy.blank("en")
            nlp.add_pipe(NAME, config={"model": {"n_neighbors": 2, "n_candidates": 4}})
            if init_from:
                _with_init_from(nlp, tmp_path / "base")
            nlp.initialize(lambda: _decision_examples(nlp))
            return nlp.get_pipe(NAME)

        pipe = etrag(True)
        fresh = etrag(False)
    finally:
        torch.set_num_threads(threads)
    assert pipe.labels == base_pipe.labels
    module, saved = pipe.module, base_pipe.module
    assert all(torch.equal(p, saved.state_dict()[n]) for n, p in module.state_dict().items())
    assert sorted({n.split(".")[0] for n in module.fresh_parameters()}) == ["label_emb", "value"]
    assert any(".crossattention." in n for n in fresh.module.fresh_parameters())
    bare = pipe.score_instances(insts, no_prompts=True)
    assert numpy.allclose(bare, expected, atol=1e-4)
    assert numpy.array_equal(bare.argmax(1), expected.argmax(1))
    assert not numpy.allclose(fresh.score_instances(insts, no_prompts=True), expected, atol=1e-2)
    assert not numpy.allclose(pipe.score_instances(insts), expected, atol=1e-3)  # neighbours shown


def _save_tiny(tmp_path, name, backbone, records=None, **model):
    nlp = spacy.blank("en")
    cfg = {"backbone": backbone, "n_neighbors": 0}
    cfg.update(model)
    nlp.add_pipe(NAME, config={"model": cfg})
    egs = _decision_examples(nlp) if records == "decision" else _examples(nlp)
    nlp.initialize(lambda: egs)
    nlp.to_disk(tmp_path / name)
    return tmp_path / name


def test_init_from_round_trip_and_training(tiny, tmp_path):
    """Started from a tiny-T5 baseline, ETRAG trains and saves; the saved pipeline loads
    without the source folder and its config keeps the setting as given."""
    src = _save_tiny(tmp_path, "base", tiny["t5"])
    nlp = _with_init_from(_nlp(tiny["t5"]), src)
    losses = _train(nlp, steps=10)
    assert losses[-1] < losses[0]
    gold = re_docs(nlp)
    a = [nlp(unannotated(nlp, d))._.rel_records for d in gold]  # (refreshes the bank first)
    nlp.to_disk(tmp_path / "etrag")
    shutil.rmtree(src)
    loaded = spacy.load(tmp_path / "etrag")
    assert loaded.config["initialize"]["components"][NAME]["init_from"] == str(src)
    b = [loaded(unannotated(loaded, d))._.rel_records for d in gold]
    assert a == b


def test_init_from_errors(tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"KBE323.*no config.cfg"):
        _train(_with_init_from(_nlp(tiny["t5"]), empty), steps=0)
    other = spacy.blank("en")
    other.add_pipe("sentencizer")
    other.to_disk(tmp_path / "other")
    with pytest.raises(ValueError, match=r"KBE323.*no trained etrag_relation_extractor"):
        _train(_with_init_from(_nlp(tiny["t5"]), tmp_path / "other"), steps=0)
    head = _save_tiny(tmp_path, "head", tiny["t5"], label_scoring="head")
    with pytest.raises(ValueError, match=r"KBE324.*label_head"):
        _train(_with_init_from(_nlp(tiny["t5"]), head), steps=0)
    wide = _save_tiny(tmp_path, "wide", tiny["t5"], prompt_length=2)
    with pytest.raises(ValueError, match=r"KBE324.*value.weight"):
        _train(_with_init_from(_nlp(tiny["t5"]), wide), steps=0)
    minilm = _save_tiny(tmp_path, "minilm", None)
    with pytest.raises(ValueError, match=r"KBE324.*tokenizer"):
        _train(_with_init_from(_nlp(tiny["t5"]), minilm), steps=0)
    fewer = _save_tiny(tmp_path, "fewer", tiny["t5"], records="decision")
    with pytest.raises(ValueError, match=r"KBE325.*'Kill\(e1,e2\)', 'OrgBased_In\(e1,e2\)'"):
        _train(_with_init_from(_nlp(tiny["t5"]), fewer), steps=0)


def test_init_from_with_head_scoring(tiny, tmp_path):
    """The CoNLL04 two-stage recipe (``label_scoring = "head"``): ETRAG with head
    scoring starts from a head baseline, takes every weight it has, and trains."""
    import torch

    head = _save_tiny(tmp_path, "head", tiny["t5"], label_scoring="head")
    nlp = _with_init_from(_nlp(tiny["t5"], label_scoring="head"), head)
    losses = _train(nlp, steps=0)
    module = nlp.get_pipe(NAME).module
    saved = spacy.load(head).get_pipe(NAME).module.state_dict()
    assert module.label_scoring == "head" and "label_head" in saved
    assert all(torch.equal(p, saved[n]) for n, p in module.state_dict().items())
    assert sorted({n.split(".")[0] for n in module.fresh_parameters()}) == ["label_emb", "value"]
    assert losses == []
    assert len(_train(nlp, steps=2)) == 2  # and it trains on from there


def test_shipped_config_takes_init_from(tiny, tmp_path):
    """configs/etrag.cfg: --paths.init_from reaches the component's initialize."""
    import torch
    from spacy.util import load_config, load_model_from_config

    from .test_etrag import CONFIGS

    src = _save_tiny(tmp_path, "base", tiny["t5"])
    config = load_config(CONFIGS / "etrag.cfg", overrides={
        "paths.backbone": tiny["t5"], "paths.init_from": str(src), "vars.n_neighbors": 2}, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: _examples(nlp))
    saved = spacy.load(src).get_pipe(NAME).module.state_dict()
    module = nlp.get_pipe(NAME).module
    assert module.n_neighbors == 2
    assert all(torch.equal(p, saved[n]) for n, p in module.state_dict().items())
