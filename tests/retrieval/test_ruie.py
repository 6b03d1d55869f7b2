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


# the same person and place with two relations: the zero-shot encoder finds the same
# person's other sentence first, the label preference teaches it the relation
BORN_DIED = [(f"{name} was {verb} in {city} .", [(0, len(name), "Peop"),
                                                  (len(f"{name} was {verb} in "), len(f"{name} was {verb} in {city}"), "Loc")],
              [(0, 1, label)])
             for name, city in (("Alan Turing", "London"), ("Marie Curie", "Paris"), ("Niels Bohr", "Copenhagen"),
                                ("Grace Hopper", "New York"))
             for verb, label in (("born", "Born_In"), ("buried", "Buried_In"))]


def _label_match_at_1(docs, encoder):
    from spacy_kbnlp.retrieval.render import doc_labels, label_match, render_input

    store = DemoStore.from_docs(docs, encoder=encoder)
    hits = store.search([render_input(d) for d in docs], 1, retriever="dense", encoder=encoder,
                        exclude_keys=[doc_key(d) for d in docs])
    return sum(label_match(doc_labels(d), [store.records[r]["labels"] for r, _ in h])
               for d, h in zip(docs, hits)) / len(docs)


def test_label_preference_orders_agreement(nlp):
    from spacy_kbnlp.retrieval.ruie import LabelPreference

    from .util import make_doc

    docs = re_docs(nlp)  # docs[0]: Live_In(e1,e2)
    store = DemoStore.from_docs(docs + [
        make_doc(nlp, "In London lived Alan Turing .", [(3, 9, "Loc"), (16, 27, "Peop")], [(1, 0, "Live_In")]),
        make_doc(nlp, "Nothing happened .", [], [])])
    live_rev, empty = store.records[-2], store.records[-1]
    assert live_rev["labels"] == ["Live_In(e2,e1)"]
    pref = LabelPreference()
    # same label and direction > same relation, other direction > another relation
    assert pref(docs[0], [store.records[1], live_rev, store.records[3], empty]) == [1.0, 0.5, 0.0, 0.0]
    # a query without relations agrees with a demonstration without relations
    assert pref(make_doc(nlp, "Rain fell .", [], []), [empty, store.records[1]]) == [1.0, 0.0]


def test_mixed_preference_orders_within_a_label_tier(nlp):
    from spacy_kbnlp.retrieval.ruie import MixedPreference

    docs = re_docs(nlp)
    store = DemoStore.from_docs(docs)
    demos = [store.records[1], store.records[2], store.records[3]]  # Live_In, Live_In, Work_For
    model = lambda query, ds: [-2.0, -1.0, float("-inf")]  # noqa: E731  (prefers demo 2; demo 3 unscored)
    got = MixedPreference(model, weight=0.1)(docs[0], demos)
    assert got[1] > got[0] > got[2]
    assert got[0] == pytest.approx(1.0 - 0.1) and got[1] == pytest.approx(1.1) and got[2] == pytest.approx(-0.2)
    assert MixedPreference(model, weight=0.0)(docs[0], demos) == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="KBE312"):
        MixedPreference(model, weight=-1)


def test_label_preference_training_raises_label_match(nlp, tmp_path):
    from spacy_kbnlp.retrieval.ruie import LabelPreference

    from .util import make_doc

    docs = [make_doc(nlp, *rec) for rec in BORN_DIED]
    before = _label_match_at_1(docs, HFEncoder().load())
    meta = train_ruie(DemoStore.from_docs(docs), docs, LabelPreference(), tmp_path / "ruie", n_candidates=7,
                      n_negatives=3, batch_size=4, reward_steps=0, bi_steps=6, lr=1e-4, log=lambda m: None)
    after = _label_match_at_1(docs, HFEncoder(str(tmp_path / "ruie" / "encoder")).load())
    assert meta["preference"] == "label" and meta["informative_queries"] == len(docs)
    assert meta["in_batch_masking"] and meta["reward_final_loss"] is None
    assert meta["positive_pref_mean"] == 1.0 and meta["negative_pref_mean"] == 0.0
    assert before <= 0.25 and after >= before + 0.5, (before, after)


def test_train_ruie_needs_an_informative_query(nlp, tmp_path):
    from spacy_kbnlp.retrieval.ruie import LabelPreference

    from .util import make_doc

    same = [make_doc(nlp, f"{n} lived in Rome .", [(0, len(n), "Peop"), (len(n) + 10, len(n) + 14, "Loc")],
                     [(0, 1, "Live_In")]) for n in ("Ann", "Bob", "Cid", "Dan")]
    with pytest.raises(ValueError, match="KBE322"):
        train_ruie(DemoStore.from_docs(same), same, LabelPreference(), tmp_path / "x", n_candidates=3,
                   n_negatives=2, reward_steps=0, bi_steps=1)


def test_train_ruie_time_limit_and_continued_training(nlp, tmp_path):
    """``max_minutes`` stops the bi-encoder cleanly (the encoder saved, the steps run
    recorded); ``encoder`` starts a second run from the saved encoder's weights."""
    import torch

    from spacy_kbnlp.retrieval.ruie import BiEncoder, LabelPreference

    docs = re_docs(nlp)
    store = DemoStore.from_docs(docs)
    meta = train_ruie(store, docs, LabelPreference(), tmp_path / "a", n_candidates=4, n_negatives=2,
                      batch_size=2, reward_steps=0, bi_steps=50, max_minutes=1e-9, log=lambda m: None)
    assert meta["bi_steps"] == 50 and meta["bi_steps_done"] == 1
    saved = BiEncoder(str(tmp_path / "a" / "encoder"))
    bundled = BiEncoder(None)
    text = ["[E0 Peop: Niels Bohr] lived in [E1 Loc: Copenhagen] ."]
    with torch.no_grad():
        assert not torch.allclose(saved.embed(text), bundled.embed(text), atol=1e-6)
    train_ruie(store, docs, LabelPreference(), tmp_path / "b", n_candidates=4, n_negatives=2,
               batch_size=2, reward_steps=0, bi_steps=1, lr=0.0, encoder=str(tmp_path / "a" / "encoder"),
               log=lambda m: None)
    again = BiEncoder(str(tmp_path / "b" / "encoder"))
    with torch.no_grad():  # lr 0: the continued run keeps the weights it started from
        assert torch.allclose(again.embed(text), saved.embed(text), atol=1e-6)


def test_closest_negatives_put_the_opposite_direction_first(nlp, tmp_path):
    """``negatives="closest"``: the same relation in the other direction is the first
    negative (the directed miss), then the highest-BM25 candidates of other labels;
    ``"least"`` never picks it while enough other-label candidates exist."""
    from spacy_kbnlp.retrieval.ruie import LabelPreference, _split

    from .util import make_doc

    docs = re_docs(nlp)  # docs[0]: "Alan Turing lived in London", Live_In(e1,e2)
    rev = make_doc(nlp, "In London lived Alan Turing .", [(3, 9, "Loc"), (16, 27, "Peop")], [(1, 0, "Live_In")])
    store = DemoStore.from_docs(docs + [rev])
    cands = mine_candidates(store, docs[:1], 8)[0]
    prefs = LabelPreference()(docs[0], [store.records[r] for r in cands])
    at = [store.records[r]["key"] for r in cands].index(doc_key(rev))
    assert store.records[cands[at]]["labels"] == ["Live_In(e2,e1)"] and prefs[at] == 0.5
    pos, least = _split(prefs, 3)
    assert _split(prefs, 3, "closest") == (pos, [at] + least[:2])
    assert prefs[pos] == 1.0 and at not in least and [prefs[i] for i in least] == [0.0, 0.0, 0.0]
    run = dict(n_candidates=8, n_negatives=3, batch_size=2, reward_steps=0, bi_steps=1, lr=0.0, log=lambda m: None)
    least_meta = train_ruie(store, docs, LabelPreference(), tmp_path / "least", **run)
    closest_meta = train_ruie(store, docs, LabelPreference(), tmp_path / "closest", negatives="closest", **run)
    assert least_meta["negatives"] == "least" and closest_meta["negatives"] == "closest"
    assert closest_meta["informative_queries"] == least_meta["informative_queries"]
    assert least_meta["negative_pref_mean"] == 0.0 < closest_meta["negative_pref_mean"]
    with pytest.raises(ValueError, match="KBE326"):
        train_ruie(store, docs, LabelPreference(), tmp_path / "x", negatives="hardest", **run)
