"""The ETRAG trust gate on a tiny T5 built from a config: ``retrieval_dropout`` (ETRAG.v1,
training: an instance's soft prompts hidden) and ``retrieval_mix`` (the component,
prediction: label log-probabilities with and without the neighbours mixed)."""
import numpy
import pytest
import spacy
from spacy.util import make_tempdir

from spacy_kbnlp.pipeline.etrag_relation_extractor import log_softmax
from spacy_kbnlp.retrieval.render import relation_from_instance

from ..retrieval.util import re_docs, unannotated
from .test_etrag import _examples, _nlp, _train, tiny  # noqa: F401  (the tiny fixture)


def _insts(pipe, nlp):
    insts = [i for d in re_docs(nlp) for i in pipe.instances(d, gold=True)]
    return [i["text"] for i in insts], [i["key"] for i in insts]


def _no_backbone_dropout(module):
    """Training mode for the ETRAG module, the backbone's own dropout layers off (so
    that two training-mode passes are comparable)."""
    import torch

    module.train()
    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.eval()


def test_retrieval_dropout_hides_the_prompts_in_training_only(tiny):
    import torch

    with pytest.raises(ValueError, match=r"KBE312.*retrieval_dropout"):
        _nlp(tiny["t5"], retrieval_dropout=1.5)
    nlp = _nlp(tiny["t5"], retrieval_dropout=1.0)
    _train(nlp, steps=3)
    pipe = nlp.get_pipe("etrag_relation_extractor")
    module = pipe.module
    texts, keys = _insts(pipe, nlp)
    with torch.no_grad():
        module.eval()
        bare = module(texts, keys, no_prompts=True)
        shown = module(texts, keys)  # prediction: dropout never applies
        _no_backbone_dropout(module)
        p1 = module(texts, keys)
        module.retrieval_dropout = 0.0
        p0 = module(texts, keys)
        # p = 0.5: the hidden instances (the draw of hidden_prompts) read as without
        # neighbours, the others as with them, in one pass
        module.retrieval_dropout = 0.5
        torch.manual_seed(3)
        hide = torch.rand(len(texts)) < 0.5
        torch.manual_seed(3)
        half = module(texts, keys)
    assert not torch.allclose(bare, shown, atol=1e-3)  # the neighbours change the scores
    assert torch.equal(p1, bare)  # dropout 1 in training: exactly the no-prompt scores
    assert torch.allclose(p0, shown, atol=1e-5)  # dropout 0: the scores with neighbours
    assert 0 < int(hide.sum()) < len(texts)
    assert torch.allclose(half[hide], bare[hide], atol=1e-5)
    assert torch.allclose(half[~hide], shown[~hide], atol=1e-5)


def test_retrieval_mix_scores(tiny):
    import torch

    with pytest.raises(ValueError, match=r"KBE312.*retrieval_mix"):
        nlp = spacy.blank("en")
        nlp.add_pipe("etrag_relation_extractor", config={"model": {"backbone": tiny["t5"]},
                                                         "retrieval_mix": 1.2})
    nlp = _nlp(tiny["t5"], retrieval_dropout=0.5)
    _train(nlp, steps=5)
    pipe = nlp.get_pipe("etrag_relation_extractor")
    pipe.refresh_bank()  # what predict does first after training
    assert pipe.cfg["retrieval_mix"] == 0.0  # the default: today's prediction
    module = pipe.module
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    texts = [i["text"] for d in docs for i in pipe.instances(d, gold=False)]
    keys = [i["key"] for d in docs for i in pipe.instances(d, gold=False)]
    module.eval()
    with torch.no_grad():
        shown = module(texts, keys).numpy()
        bare = module(texts, keys, no_prompts=True).numpy()
    assert not numpy.allclose(log_softmax(shown), log_softmax(bare), atol=1e-3)

    def predicted(mix):
        pipe.cfg["retrieval_mix"] = mix
        return numpy.concatenate([s for _, s in pipe.predict(docs)])

    assert numpy.array_equal(predicted(0.0), shown)  # lambda 0: the scores of before, exactly
    assert numpy.allclose(predicted(1.0), log_softmax(bare), atol=1e-6)  # lambda 1: no neighbours
    assert numpy.allclose(predicted(0.25), 0.75 * log_softmax(shown) + 0.25 * log_softmax(bare), atol=1e-6)
    # set_annotations reads the mixed scores: with lambda 1 the records are the bare
    # pass's first-ranked labels (no_relation writes nothing)
    pipe.cfg["retrieval_mix"] = 1.0
    insts = [i for d in docs for i in pipe.instances(d, gold=False)]
    recs = [relation_from_instance(i, pipe.labels[int(j)]) for i, j in zip(insts, bare.argmax(1))]
    expected = sorted((tuple(r["head"]), tuple(r["tail"]), r["label"]) for r in recs if r is not None)
    assert expected  # the bare pass predicts relations here
    records = [r for doc in nlp.pipe([unannotated(nlp, d) for d in re_docs(nlp)]) for r in doc._.rel_records]
    assert sorted((tuple(r["head"]), tuple(r["tail"]), r["label"]) for r in records) == expected


def test_gate_settings_round_trip(tiny):
    nlp = spacy.blank("en")
    nlp.add_pipe("etrag_relation_extractor", config={
        "model": {"backbone": tiny["t5"], "n_neighbors": 2, "n_candidates": 4, "temperature": 0.5,
                  "retrieval_dropout": 0.3}, "refresh_every": 5, "retrieval_mix": 0.25})
    _train(nlp, steps=3)
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    pipe = nlp.get_pipe("etrag_relation_extractor")
    before = [s for _, s in pipe.predict(docs)]
    with make_tempdir() as d:
        nlp.to_disk(d)
        loaded = spacy.load(d)
    again = loaded.get_pipe("etrag_relation_extractor")
    assert again.cfg["retrieval_mix"] == 0.25 and again.module.retrieval_dropout == 0.3
    component = loaded.config["components"]["etrag_relation_extractor"]
    assert component["retrieval_mix"] == 0.25 and component["model"]["retrieval_dropout"] == 0.3
    after = [s for _, s in again.predict([unannotated(loaded, d) for d in re_docs(loaded)])]
    assert all(numpy.allclose(a, b, atol=1e-6) for a, b in zip(before, after))
    # a saved pipeline takes another mix at load time (docs/relations.md)
    with make_tempdir() as d:
        nlp.to_disk(d)
        other = spacy.load(d, config={"components.etrag_relation_extractor.retrieval_mix": 0.75})
    assert other.get_pipe("etrag_relation_extractor").cfg["retrieval_mix"] == 0.75
