"""RUIE: the exact LLM preference signal on a tiny causal LM, the ETRAG preference,
and a short end-to-end training run of the reward model and the bi-encoder."""
import pytest

from spacy_kbnlp.encoders.hf import HFEncoder
from spacy_kbnlp.llm.backends import HFLocalBackend
from spacy_kbnlp.llm.prompts import build_prompt
from spacy_kbnlp.retrieval.render import doc_key, render_target
from spacy_kbnlp.retrieval.ruie import LLMPreference, mine_candidates, train_ruie
from spacy_kbnlp.retrieval.store import DemoStore

from ..llm.tiny import build_tiny_models
from .util import re_docs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny_ruie"))


def test_candidates_leave_one_out(nlp):
    docs = re_docs(nlp)
    store = DemoStore.from_docs(docs)
    cands = mine_candidates(store, docs, 3)
    for doc, rows in zip(docs, cands):
        assert len(rows) == 3 and all(store.records[r]["key"] != doc_key(doc) for r in rows)


def test_llm_preference_is_avg_loglik_of_gold_output(nlp, tiny):
    docs = re_docs(nlp)
    store = DemoStore.from_docs(docs)
    backend = HFLocalBackend(tiny["gpt"])
    pref = LLMPreference(backend, ["Kill", "Live_In"])
    demos = [store.records[1], store.records[6]]
    got = pref(docs[0], demos)
    want = backend.score([build_prompt(docs[0], ["Kill", "Live_In"], demonstrations=[d]) for d in demos],
                         [render_target(docs[0])] * 2)
    assert got == pytest.approx(want) and got[0] != got[1]


@pytest.mark.slow
def test_train_ruie_end_to_end(nlp, tiny, tmp_path):
    docs = re_docs(nlp)
    store = DemoStore.from_docs(docs)
    pref = LLMPreference(HFLocalBackend(tiny["gpt"]), ["Kill", "Live_In", "Work_For", "OrgBased_In"])
    logs = []
    meta = train_ruie(store, docs, pref, tmp_path / "ruie", n_candidates=4, n_negatives=2,
                      batch_size=2, reward_steps=2, bi_steps=2, log=logs.append)
    assert meta["preference"] == "llm" and meta["queries"] == len(docs)
    assert meta["positive_pref_mean"] >= meta["negative_pref_mean"]
    assert (tmp_path / "ruie" / "ruie_meta.json").exists()
    enc = HFEncoder(str(tmp_path / "ruie" / "encoder")).load()
    assert enc.encode(["Alan Turing lived in London ."]).shape == (1, 384)
    assert any(l.startswith("bi-encoder step 2/2") for l in logs)
    # the trained encoder serves the dense store
    dense = DemoStore.from_docs(docs, encoder=enc)
    hits = dense.search(["[E0 Peop: Niels Bohr] lived in [E1 Loc: Copenhagen] ."], 2, retriever="dense",
                        encoder=enc)
    assert len(hits[0]) == 2
    with pytest.raises(ValueError, match="KBE316"):
        train_ruie(store, docs[:1], pref, tmp_path / "x")


def test_etrag_preference_forces_demonstration_prompts(tiny):
    import torch

    from spacy_kbnlp.retrieval.ruie import RelationModelPreference

    from ..pipeline.test_etrag import _nlp, _train

    nlp = _nlp(tiny["t5"])
    _train(nlp, steps=3)
    pipe = nlp.get_pipe("etrag_relation_extractor")
    docs = re_docs(nlp)
    store = DemoStore.from_docs(docs)
    pref = RelationModelPreference(pipe)
    demos = [store.records[1], store.records[6], {"key": "not-in-bank"}]
    got = pref(docs[0], demos)
    assert got[2] == float("-inf") and all(v < 0 for v in got[:2])
    module = pipe.module
    rows = module._rows_by_key[demos[1]["key"]]
    inst = pipe.instances(docs[0], gold=True)[0]
    with torch.no_grad():
        want = module.gold_loglik([inst["text"]], [pipe.labels.index(inst["label"])], [None],
                                  forced=[[rows[i % len(rows)] for i in range(module.n_neighbors)]])
    assert got[1] == pytest.approx(float(want[0]), abs=1e-5)
    with pytest.raises(ValueError, match="KBE315"):
        baseline = _nlp(tiny["t5"], n_neighbors=0)
        _train(baseline, steps=1)
        RelationModelPreference(baseline.get_pipe("etrag_relation_extractor"))
