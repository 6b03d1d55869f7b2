"""The seq2seq_coref component (STYLE 1.9): factory, lifecycle, edge inputs, overfitting,
serialization, pipe, evaluate keys, configs, the train command."""
import warnings

import pytest
import spacy
from spacy.lang.en import English
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import make_tempdir

from spacy_kbnlp.extensions import set_coref_clusters
from spacy_kbnlp.pipeline.seq2seq_coref import DEFAULT_SCORE_WEIGHTS, SCORE_KEYS
from spacy_kbnlp.training.loop import train_loop

WORDS = "Lord Byron wrote poems . He loved them and his friends loved him .".split()
SENTS = [True, False, False, False, False, True] + [False] * 8
GOLD = [[(0, 2), (5, 6), (9, 10), (12, 13)], [(3, 4), (7, 8)]]
SMALL = {"segment_length": 32, "stride": 16, "train_stride": 32, "max_target_length": 96,
         "max_clusters": 5}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.models.tiny_seq2seq import build_tiny_seq2seq

    return str(build_tiny_seq2seq(tmp_path_factory.mktemp("tiny") / "model", hidden=64))


def _example(nlp):
    ref = Doc(nlp.vocab, words=WORDS, sent_starts=SENTS)
    set_coref_clusters(ref, GOLD)
    return Example(Doc(nlp.vocab, words=WORDS), ref)


def _make(tiny_dir, sentencizer=False, **cfg):
    nlp = English()
    if sentencizer:
        nlp.add_pipe("sentencizer")
    nlp.add_pipe("seq2seq_coref", config={"model": tiny_dir, **SMALL, **cfg})
    return nlp


def _overfit(nlp, steps=150):
    comp = nlp.get_pipe("seq2seq_coref")
    items = comp.training_items([_example(nlp)])
    with make_tempdir() as tmp:
        train_loop(comp.torch_module, items, comp.training_loss,
                   dict(learning_rate=3e-3, max_steps=steps, warmup_ratio=0.05, weight_decay=0.0),
                   tmp, show_progress=False)
    return nlp


@pytest.fixture(scope="module")
def trained(tiny_dir):
    nlp = _make(tiny_dir)
    nlp.initialize()
    return _overfit(nlp)


def clusters(doc):
    return [[(s.start, s.end) for s in cl] for cl in doc._.coref_clusters]


def test_add_pipe_and_config(nlp):
    comp = nlp.add_pipe("seq2seq_coref")
    assert comp.cfg["representation"] == "full" and comp.cfg["action"] == "copy"
    assert comp.coref_model is None  # nothing loaded in the factory
    assert "seq2seq_coref" in nlp.pipe_names


def test_bad_settings_are_clear_errors(nlp):
    with pytest.raises(ValueError, match="KBE253"):
        nlp.add_pipe("seq2seq_coref", config={"representation": "partial", "action": "copy"})
    with pytest.raises(ValueError, match="KBE259"):
        nlp.add_pipe("seq2seq_coref", name="c2", config={"decoding": "sampling"})
    with pytest.raises(ValueError, match="KBE259.*merge"):
        nlp.add_pipe("seq2seq_coref", name="c3", config={"merge": "max"})
    with pytest.raises(ValueError, match="KBE259.*batch_segments"):
        nlp.add_pipe("seq2seq_coref", name="c4", config={"batch_segments": 0})
    with pytest.raises(ValueError, match="name_match"):  # spaCy's config check
        nlp.add_pipe("seq2seq_coref", name="c5", config={"name_match": "yes"})
    assert nlp.add_pipe("seq2seq_coref", name="c6").cfg["name_match"] is True


def test_uninitialized_raises(nlp):
    nlp.add_pipe("seq2seq_coref")
    with pytest.raises(ValueError, match="KBE250"):
        nlp("Lord Byron was a poet.")


def test_not_seq2seq_model_path(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(str(tmp_path / "bert"))
    nlp = English()
    nlp.add_pipe("seq2seq_coref", config={"model": str(tmp_path / "bert")})
    with pytest.raises(ValueError, match="KBE251"):
        nlp.initialize()


def test_overfit_exact_clusters(trained):
    doc = trained(" ".join(WORDS))
    assert clusters(doc) == GOLD
    assert [list(doc.spans[f"coref_clusters_{i}"]) for i in (1, 2)] == doc._.coref_clusters
    assert doc[5:6]._.coref_cluster == 1 and doc[7:8]._.coref_cluster == 2
    assert doc[2:3]._.coref_cluster is None
    assert doc._.resolved_text == ("Lord Byron wrote poems . Lord Byron loved poems and "
                                   "Lord Byron's friends loved Lord Byron .")


@pytest.mark.slow
@pytest.mark.parametrize("rep,act", [("integer_free", "copy"), ("full", "token"),
                                     ("partial", "token")])
def test_overfit_other_representations(tiny_dir, rep, act):
    nlp = _make(tiny_dir, sentencizer=(rep == "partial"), representation=rep, action=act)
    nlp.initialize()
    _overfit(nlp, steps=150)
    assert clusters(nlp(" ".join(WORDS))) == GOLD


def test_decoding_options_agree(trained):
    comp = trained.get_pipe("seq2seq_coref")
    text = " ".join(WORDS)
    base = clusters(trained(text))
    old = dict(comp.cfg)
    try:
        comp.cfg["speculative"] = 0
        assert clusters(trained(text)) == base          # naive greedy == speculative
        comp.cfg.update(decoding="beam", beam_size=3)
        assert clusters(trained(text)) == base
        comp.cfg.update(decoding="greedy", speculative=8, mention_bias=-100.0)
        assert clusters(trained(text)) == []             # <m> made impossible to choose
    finally:
        comp.cfg.update(old)


def test_edge_docs_and_mixed_pipe(trained):
    texts = ["", "   ", "\n\n", "Byron", "👋 שלום مرحبا \u200b\u200d zero\u200bwidth [SEP] <m> </m>",
             " ".join(WORDS), " ".join(WORDS * 12)]
    docs = list(trained.pipe(texts))
    assert [d.text for d in docs] == texts
    for d in docs[:4]:
        assert clusters(d) == [] and d._.resolved_text == d.text
    for d in docs:
        for cl in d._.coref_clusters:
            assert len(cl) >= 2 and all(0 <= s.start < s.end <= len(d) for s in cl)
    assert clusters(docs[5]) == GOLD
    # pipe twice == per-doc calls
    again = list(trained.pipe(texts))
    assert [clusters(d) for d in again] == [clusters(trained(t)) for t in texts] == [
        clusters(d) for d in docs]


def test_long_doc_segments_and_merging(trained):
    """A document much longer than a segment: decoded segment by segment; clusters
    joined through mentions shared by overlapping segments."""
    comp = trained.get_pipe("seq2seq_coref")
    text = " ".join(WORDS * 30)
    doc = trained(text)
    assert comp.coref_model is not None
    n_units = len(comp.coref_model.doc_units(doc).ids)
    assert n_units > 10 * comp.cfg["segment_length"]
    for cl in clusters(doc):
        assert cl == sorted(set(cl))


def test_progress_and_long_doc_warning(trained, capsys):
    """``progress`` shows segments done / total on stderr; a doc over ``warn_tokens``
    tokens warns (KBW255) with its segment count and expected time; batching the
    segments of several docs changes no cluster."""
    comp = trained.get_pipe("seq2seq_coref")
    text = " ".join(WORDS * 6)
    plain = [clusters(d) for d in trained.pipe([text, " ".join(WORDS)], batch_size=1)]
    old = dict(comp.cfg)
    try:
        comp.cfg.update(progress=True, warn_tokens=50, batch_segments=3)
        n = comp.coref_model.n_segments(trained.make_doc(text), comp.cfg["stride"])
        assert n > 3
        with pytest.warns(UserWarning, match=rf"KBW255.*84 tokens is {n} segments.*about \d+ s"):
            docs = list(trained.pipe([text, " ".join(WORDS)], batch_size=2))
        err = capsys.readouterr().err
        assert f"{n + 1}/{n + 1}" in err and "segment" in err
        assert [clusters(d) for d in docs] == plain
        comp.cfg.update(progress=False, warn_tokens=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            trained(text)
    finally:
        comp.cfg.update(old)


def test_to_disk_and_load_identical(trained, tiny_dir):
    texts = [" ".join(WORDS), "Byron loved poems . He wrote them .", ""]
    before = [clusters(d) for d in trained.pipe(texts)]
    with make_tempdir() as tmp:
        trained.to_disk(tmp)
        model_dir = tmp / "seq2seq_coref" / "model"
        assert (model_dir / "model.safetensors").exists() and (model_dir / "config.json").exists()
        comp_files = list((tmp / "seq2seq_coref").rglob("*"))
        assert not [f for f in comp_files if f.suffix in (".bin", ".pkl", ".pt", ".pth")]
        loaded = spacy.load(tmp)
        assert [clusters(d) for d in loaded.pipe(texts)] == before
        comp = loaded.get_pipe("seq2seq_coref")
        assert comp.cfg["segment_length"] == SMALL["segment_length"]
    blob = trained.get_pipe("seq2seq_coref").to_bytes()
    other = _make(tiny_dir)
    other.get_pipe("seq2seq_coref").from_bytes(blob)
    assert [clusters(d) for d in other.pipe(texts)] == before


def test_from_disk_without_model_files(trained):
    with make_tempdir() as tmp:
        trained.to_disk(tmp)
        for f in (tmp / "seq2seq_coref" / "model").iterdir():
            f.unlink()
        with pytest.raises(ValueError, match="KBE260"):
            spacy.load(tmp)


def test_pipe_n_process_2(trained):
    texts = [" ".join(WORDS), "He loved them .", "", " ".join(WORDS[:5])]
    serial = [clusters(d) for d in trained.pipe(texts)]
    parallel = [clusters(d) for d in trained.pipe(texts, n_process=2)]
    assert parallel == serial


def test_evaluate_returns_declared_keys(trained):
    scores = trained.evaluate([_example(trained)])
    assert set(SCORE_KEYS) <= set(scores)
    assert {k for k in scores if k.startswith("coref_")} == set(DEFAULT_SCORE_WEIGHTS)
    assert scores["coref_conll_f"] == pytest.approx(1.0)
    assert scores["coref_lea_f"] == pytest.approx(1.0)


def test_calibrate_mention_bias(trained, tmp_path):
    """``coref calibrate`` decodes the dev docs at each mention_bias, keeps the best
    CoNLL F1 and writes it into a copy of the pipeline; a bias that forbids <m>
    finds nothing. No biases (KBE265) or no dev docs (the reader's KBE108) are
    coded errors."""
    from spacy_kbnlp.cli.coref import calibrate

    trained.to_disk(tmp_path / "pipeline")
    DocBin(docs=[_example(trained).reference], store_user_data=True).to_disk(tmp_path / "dev.spacy")
    res = calibrate(tmp_path / "pipeline", tmp_path / "dev.spacy", tmp_path / "out",
                    biases=[0.5, -50])
    assert [c["mention_bias"] for c in res["curve"]] == [-50, 0.5]
    assert res["curve"][0]["conll_f"] == 0.0 and res["curve"][0]["mention_r"] == 0.0
    assert res["mention_bias"] == 0.5 and res["dev_conll_f"] == pytest.approx(1.0)
    assert res["docs"] == 1 and res["conll_f_at_previous"] is None
    loaded = spacy.load(tmp_path / "out")
    assert loaded.get_pipe("seq2seq_coref").cfg["mention_bias"] == 0.5
    assert loaded.config["components"]["seq2seq_coref"]["mention_bias"] == 0.5
    assert clusters(loaded(" ".join(WORDS))) == GOLD
    with pytest.raises(ValueError, match="KBE265"):
        calibrate(tmp_path / "pipeline", tmp_path / "dev.spacy", tmp_path / "out2", biases=[])
    DocBin().to_disk(tmp_path / "empty.spacy")
    with pytest.raises(ValueError, match="KBE108"):
        calibrate(tmp_path / "pipeline", tmp_path / "empty.spacy", tmp_path / "out3")


def test_fit_linker(trained, tmp_path):
    """``coref fit-linker`` decodes the dev docs once, cross-validates the threshold over
    even/odd docs and writes a linker that ``initialize(linker_path=...)`` loads; too
    few docs or bad thresholds are coded errors (KBE266)."""
    from spacy_kbnlp.cli.coref import DEFAULT_THRESHOLDS, fit_linker
    from spacy_kbnlp.models.coref_linker import PairLinker

    ref = _example(trained).reference
    DocBin(docs=[ref] * 4, store_user_data=True).to_disk(tmp_path / "dev.spacy")
    logistic = fit_linker(trained, tmp_path / "dev.spacy", tmp_path / "logistic", hidden=0)
    assert logistic["hidden"] == 0 and PairLinker.from_disk(tmp_path / "logistic").units == 0
    # every threshold separates the overfit model's pairs: the tie goes to the smallest
    assert logistic["cv_conll_f"] == pytest.approx(1.0)
    assert logistic["link_threshold"] == min(DEFAULT_THRESHOLDS)
    res = fit_linker(trained, tmp_path / "dev.spacy", tmp_path / "linker")
    assert res["docs"] == 4 and [c["threshold"] for c in res["curve"]] == sorted(DEFAULT_THRESHOLDS)
    assert res["without_linker_conll_f"] == pytest.approx(1.0)  # the overfit model's own clusters
    assert res["cv_conll_f"] == pytest.approx(1.0) and res["hidden"] == 32
    assert res["link_threshold"] == min(c["threshold"] for c in res["curve"]
                                        if c["conll_f"] == res["cv_conll_f"])
    assert trained.get_pipe("seq2seq_coref").linker is None  # the pipeline is left as it was
    linker = PairLinker.from_disk(tmp_path / "linker")
    assert linker.trained_on == "dev.spacy (4 docs)" and linker.units == 32
    comp = trained.get_pipe("seq2seq_coref")
    threshold = comp.cfg["link_threshold"]
    try:
        comp.linker = linker
        comp.cfg["link_threshold"] = res["link_threshold"]
        assert clusters(trained(" ".join(WORDS))) == GOLD
    finally:
        comp.linker = None
        comp.cfg["link_threshold"] = threshold
    with pytest.raises(ValueError, match="KBE266.*thresholds"):
        fit_linker(trained, tmp_path / "dev.spacy", tmp_path / "l2", thresholds=[1.5])
    DocBin(docs=[ref], store_user_data=True).to_disk(tmp_path / "one.spacy")
    with pytest.raises(ValueError, match="KBE266.*at least 2"):
        fit_linker(trained, tmp_path / "one.spacy", tmp_path / "l3")


def test_update_steps_own_optimizer(tiny_dir):
    import torch

    nlp = _make(tiny_dir)
    nlp.initialize()
    comp = nlp.get_pipe("seq2seq_coref")
    before = {k: v.clone() for k, v in comp.torch_module.state_dict().items()}
    losses = nlp.update([_example(nlp)])
    assert losses["seq2seq_coref"] > 0
    after = comp.torch_module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ["coref.cfg", "coref_partial.cfg", "test/coref.cfg"])
def test_configs_build_with_init_nlp(tiny_dir, corpus_files, name):
    from pathlib import Path

    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / name
    config = load_config(path, overrides={"paths.model": tiny_dir,
                                          "paths.train": str(corpus_files / "train.spacy"),
                                          "paths.dev": str(corpus_files / "dev.spacy")},
                         interpolate=False)
    nlp = init_nlp(config)
    comp = nlp.get_pipe("seq2seq_coref")
    assert comp.coref_model is not None
    weighted = {k for k, v in config["training"]["score_weights"].items() if v is not None}
    assert weighted <= set(SCORE_KEYS)
    # model-best is chosen by the coreference score alone (no sentencizer score mixed in)
    assert {k for k, v in nlp.config["training"]["score_weights"].items() if v} == {"coref_conll_f"}
    assert "torch_training" in config


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory, shared_data):
    from spacy_kbnlp.readers.conll2012 import read_conll2012

    root = shared_data / "coref" / "gum"
    nlp = English()
    docs = list(read_conll2012(root / "ontogum" / "conll" / "GUM_bio_byron.conll", nlp,
                               sentences_from=root / "gum" / "tsv"))
    docs += list(read_conll2012(root / "ontogum" / "conll" / "GUM_news_iodine.conll", nlp,
                                sentences_from=root / "gum" / "tsv"))
    out = tmp_path_factory.mktemp("corpus")
    for name, part in (("train.spacy", docs), ("dev.spacy", docs[1:])):
        DocBin(docs=part, store_user_data=True).to_disk(out / name)
    return out


def test_train_command_and_exact_resume(tiny_dir, corpus_files, tmp_path):
    from spacy_kbnlp.cli.train import train_pipeline

    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "configs" / "test" / "coref.cfg"
    over = {"paths.model": tiny_dir, "paths.train": str(corpus_files / "train.spacy"),
            "paths.dev": str(corpus_files / "dev.spacy"), "corpora.train.limit": 1,
            "corpora.dev.limit": 1, "components.seq2seq_coref.max_target_length": 100,
            "torch_training.eval_every": 2, "torch_training.max_steps": 4}
    full = train_pipeline(cfg, tmp_path / "full", overrides=over, show_progress=False)
    assert full.steps == 4 and full.stopped == "done"
    for name in ("model-best", "model-last"):
        assert spacy.load(tmp_path / "full" / name).pipe_names == ["seq2seq_coref"]
    # interrupted after 2 steps (the time limit), then resumed: same weights as the full run
    half = train_pipeline(cfg, tmp_path / "half", overrides=dict(over, **{"torch_training.max_minutes": 1e-9}),
                          show_progress=False)
    assert half.stopped == "time" and half.steps == 1
    resumed = train_pipeline(cfg, tmp_path / "half", overrides=over, resume=True,
                             show_progress=False)
    assert resumed.steps == 4
    a = (tmp_path / "full" / "checkpoint" / "model.safetensors").read_bytes()
    b = (tmp_path / "half" / "checkpoint" / "model.safetensors").read_bytes()
    assert a == b


def test_train_command_errors(tmp_path, corpus_files, tiny_dir):
    from pathlib import Path

    from spacy_kbnlp.cli.train import find_trainable, train_pipeline

    with pytest.raises(ValueError, match="KBE258"):
        find_trainable(English())
    cfg = Path(__file__).resolve().parents[2] / "configs" / "test" / "coref.cfg"
    with pytest.raises(ValueError, match="KBE259"):
        train_pipeline(cfg, tmp_path, overrides={"paths.model": tiny_dir,
                                                 "paths.train": str(corpus_files / "train.spacy"),
                                                 "paths.dev": str(corpus_files / "dev.spacy"),
                                                 "torch_training.learning_rte": 0.1},
                       show_progress=False)


@pytest.mark.slow
def test_100k_token_doc_bounded_memory(tiny_dir):
    """A 100k-token document runs segment by segment; memory grows with the output
    (mentions), not with the document's attention."""
    import resource

    nlp = _make(tiny_dir, segment_length=64, stride=64, max_target_length=120)
    nlp.initialize()
    words = (WORDS * 8000)[:100_000]
    doc = Doc(nlp.vocab, words=words)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doc = nlp(doc)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(doc) == 100_000
    assert grown_mib < 500
    for cl in doc._.coref_clusters:
        assert all(0 <= s.start < s.end <= len(doc) for s in cl)


@pytest.mark.slow
def test_10k_token_document_with_the_bundled_model(shared_data, capsys):
    """A 10,000-token document (GUM documents one after another) with the bundled
    model and the default decoding: warns with the expected time, shows progress to
    the last segment, and gives valid clusters well within the benchmark's bound
    (60 s on the 2-core CPU, benchmarks/README_coref.md; 3 minutes here, for slower
    machines)."""
    import time

    from spacy_kbnlp.readers.conll2012 import read_conll2012

    nlp = English()
    words = []
    for path in sorted((shared_data / "coref" / "gum" / "ontogum" / "conll").glob("GUM_*.conll")):
        for doc in read_conll2012(path, nlp):
            words.extend(t.text for t in doc)
        if len(words) >= 10_000:
            break
    doc = Doc(nlp.vocab, words=words[:10_000])
    nlp.add_pipe("seq2seq_coref", config={"model": {"@misc": "spacy_kbnlp.BundledCorefModel.v1"},
                                          "aligned_input": True, "warn_tokens": 5000,
                                          "progress": True})
    nlp.initialize()
    comp = nlp.get_pipe("seq2seq_coref")
    n = comp.coref_model.n_segments(doc, comp.cfg["stride"])
    start = time.perf_counter()
    with pytest.warns(UserWarning, match=rf"KBW255.*10000 tokens is {n} segments"):
        doc = nlp(doc)
    seconds = time.perf_counter() - start
    assert n > 70 and f"{n}/{n}" in capsys.readouterr().err
    assert len(doc._.coref_clusters) > 50
    for cl in doc._.coref_clusters:
        assert len(cl) >= 2 and all(0 <= s.start < s.end <= len(doc) for s in cl)
    assert seconds < 180
    # the bundled model's pair linker ran: no entity holds pronouns of two classes
    from spacy_kbnlp.models.coref_linker import PRONOUNS

    assert comp.pair_linker() is not None
    for cl in doc._.coref_clusters:
        assert len({PRONOUNS[s.text.lower()] for s in cl if len(s) == 1 and s.text.lower() in PRONOUNS}) <= 1


def test_load_config_overrides_and_model_architecture(trained, tmp_path):
    """Settings come from nlp.config (``spacy.load(path, config=...)`` overrides
    them; the saved ``cfg`` holds derived state and the settings the model was
    trained for); a config whose representation or cluster count differs from the
    saved model's is KBE161."""
    import srsly

    trained.to_disk(tmp_path)
    saved = srsly.read_json(tmp_path / "seq2seq_coref" / "cfg")
    assert saved == {"format_version": 1, "architecture": {
        "representation": "full", "action": "copy", "aligned_input": False, "max_clusters": 5}}
    loaded = spacy.load(tmp_path, config={"components": {"seq2seq_coref": {
        "span_cluster_prefix": "chains", "decoding": "beam", "beam_size": 2}}})
    comp = loaded.get_pipe("seq2seq_coref")
    assert (comp.cfg["decoding"], comp.cfg["beam_size"]) == ("beam", 2)
    doc = loaded(" ".join(WORDS))
    assert sorted(k for k in doc.spans if k.startswith("chains")) == ["chains_1", "chains_2"]
    assert not any(k.startswith("coref_clusters") for k in doc.spans)
    for setting, value in (("representation", "integer_free"), ("max_clusters", 7)):
        with pytest.raises(ValueError, match=f"KBE161.*{setting}"):
            spacy.load(tmp_path, config={"components": {"seq2seq_coref": {setting: value}}})


def test_relink_settings_and_the_bundled_models_linker():
    nlp = English()
    with pytest.raises(ValueError, match="KBE259.*link_threshold"):
        nlp.add_pipe("seq2seq_coref", name="c1", config={"link_threshold": 1.5})
    comp = nlp.add_pipe("seq2seq_coref", name="c2", config={
        "model": {"@misc": "spacy_kbnlp.BundledCorefModel.v1"}})
    assert comp.cfg["relink"] is True and comp.cfg["link_threshold"] == 0.2
    assert comp.pair_linker() is not None  # the bundled model comes with its linker
    comp.cfg["relink"] = False
    assert comp.pair_linker() is None


def test_relink_with_a_fitted_linker_and_round_trip(trained, tiny_dir, tmp_path):
    import numpy

    from spacy_kbnlp.models.coref_linker import FEATURES, PairLinker

    text = " ".join(WORDS)
    comp = trained.get_pipe("seq2seq_coref")
    assert comp.pair_linker() is None and clusters(trained(text)) == GOLD  # no linker: as generated
    never = numpy.zeros(len(FEATURES))
    never[FEATURES.index("bias")] = -10.0
    follow = never.copy()  # link where the decoder's segment put the pair together
    follow[FEATURES.index("co_clustered")] = 20.0
    try:
        comp.linker = PairLinker(never)
        assert clusters(trained(text)) == []  # every link refused: only singletons, dropped
        comp.linker = PairLinker(follow)
        assert clusters(trained(text)) == GOLD
        PairLinker(never).to_disk(tmp_path / "never")
        trained.to_disk(tmp_path / "nlp")
        loaded = spacy.load(tmp_path / "nlp")
        assert numpy.array_equal(loaded.get_pipe("seq2seq_coref").linker.weights, comp.linker.weights)
        assert clusters(loaded(text)) == GOLD
    finally:
        comp.linker = None
    nlp = _make(tiny_dir)
    nlp.config["initialize"]["components"]["seq2seq_coref"] = {"linker_path": str(tmp_path / "never")}
    nlp.initialize()
    assert nlp.get_pipe("seq2seq_coref").linker.weights[0] == -10.0
    assert clusters(nlp(text)) == []
