"""benchmarks/re.py on any dataset by path: the dataset spec, the step budget, the
scorers, and `collect` (mean over seeds, the seeds' list) on run files of a JSONL set."""
import json
import shutil
from pathlib import Path

import pytest

from .conftest import load_benchmark

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "re" / "new_labels.jsonl"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("re")


@pytest.fixture()
def folder(tmp_path):
    data = tmp_path / "mydata"
    data.mkdir()
    for split in ("train", "dev", "test"):
        shutil.copy(FIXTURE, data / f"{split}.jsonl")
    return data


def test_dataset_by_folder_and_paths(bench, folder, nlp):
    spec = bench.dataset_spec(str(folder))
    assert spec["name"] == "mydata" and spec["scorer"] == "micro" and spec["test_limit"] == 0
    assert spec["train"].endswith("mydata/train.jsonl") and not Path(spec["train"]).is_absolute()
    docs = bench.load(spec, "train", nlp)
    assert [d.text for d in docs][:2] == ["Bank of Rome opened .", "Bank of Bonn opened ."]
    assert len(docs[0].spans["entities"]) == 2  # overlapping entities kept
    explicit = bench.dataset_spec("", train=str(folder / "train.jsonl"), test=str(folder / "test.jsonl"),
                                  name="mine", scorer="macro", test_limit=3)
    assert explicit["name"] == "mine" and explicit["dev"] is None and explicit["scorer"] == "macro"
    assert len(bench.load(explicit, "test", nlp)) == 3 and bench.load(explicit, "dev", nlp) == []
    with pytest.raises(SystemExit, match="KBE321"):
        bench.dataset_spec(str(folder / "nothing"))
    named = bench.dataset_spec("conll04")
    assert named["format"] == "conll04" and named["batch_docs"] == 4 and named["test_limit"] == 100


def test_step_budget(bench):
    # min(epochs x batches per epoch, steps): 720 docs / 16 = 45 batches x 6 epochs = 270
    assert bench.step_budget(720, 16, 6, 150) == 150
    assert bench.step_budget(72, 16, 6, 150) == 30
    assert bench.step_budget(72, 16, 6, 0) == 30


def test_collect_means_over_seeds(bench, folder, nlp, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setattr(bench, "RUNS", runs)
    monkeypatch.setattr(bench, "RESULT", tmp_path / "re.json")
    spec = bench.dataset_spec(str(folder))
    gold = bench.load(spec, "test", nlp)
    perfect = [list(d._.rel_records or []) for d in gold]
    half = [recs if i % 2 == 0 else [] for i, recs in enumerate(perfect)]
    for seed, preds in ((0, perfect), (1, half)):
        bench.write(bench.run_name("mydata", "0.5", "etrag", seed),
                    {"dataset": "mydata", "data": spec, "fraction": "0.5", "system": "etrag",
                     "seed": seed, "predictions": preds})
    assert sorted(p.name for p in runs.iterdir()) == ["mydata_0.5_etrag.json", "mydata_0.5_etrag_s1.json"]
    bench.cmd_collect(None)
    cell = json.loads((tmp_path / "re.json").read_text())["mydata"]["0.5"]["etrag"]
    # 5 gold relations; seed 1 finds those of docs 0, 2, 4: P 1, R 3/5, F1 75
    assert cell == {"f1": 87.5, "f1_seeds": [100.0, 75.0], "seeds": [0, 1], "f1_std": 12.5}
    macro = bench.score_predictions(__import__("spacy_kbnlp.scorers.rel", fromlist=["rel"]), "macro", gold, half)
    # named_after: 1 of 2 (F1 2/3); capital_of: 2 of 3 (F1 0.8)
    assert macro == pytest.approx(100 * (2 / 3 + 0.8) / 2, abs=0.01)


def _tiny_etrag(bench, folder, tmp_path, **model):
    """An ETRAG pipeline on the tiny T5, 5 updates on the folder's training docs."""
    import random

    import spacy
    from thinc.api import Adam

    from spacy_kbnlp.core.torch_io import set_seed

    from .llm.tiny import build_tiny_models

    tiny = build_tiny_models(tmp_path / "tiny")
    set_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("etrag_relation_extractor", config={"model": dict({
        "backbone": tiny["t5"], "n_neighbors": 2, "n_candidates": 4}, **model)})
    spec = bench.dataset_spec(str(folder))
    egs = bench.with_gold_entities(nlp, bench.load(spec, "train", nlp))
    nlp.initialize(lambda: egs)
    opt = Adam(0.01)
    for _ in range(5):
        random.Random(0).shuffle(egs)
        nlp.update(egs, sgd=opt)
    return nlp


def test_analyse_neighbour_labels(bench, folder, tmp_path, monkeypatch):
    """`analyse` on a saved ETRAG pipeline: per test instance the soft neighbours'
    label mass (sums to 1), the gold / predicted / neighbour-top counts per label."""
    import argparse

    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    nlp = _tiny_etrag(bench, folder, tmp_path)
    spec = bench.dataset_spec(str(folder))
    nlp.to_disk(tmp_path / "model")
    args = argparse.Namespace(dataset=str(folder), train=None, dev=None, test=None, name=None,
                              format="auto", scorer=None, test_limit=None, fraction="0.5", seed=0,
                              threads=1, model=str(tmp_path / "model"), split="test")
    bench.cmd_analyse(args)
    out = json.loads((tmp_path / "runs" / "analysis_mydata_0.5_etrag.json").read_text())
    assert out["instances"] == 7  # one pair per test sentence
    rows = out["by_label"]
    assert {k: v["gold"] for k, v in rows.items()} == {
        "capital_of(e1,e2)": 2, "capital_of(e2,e1)": 1, "named_after(e1,e2)": 2, "no_relation": 2}
    assert sum(v["predicted"] for v in rows.values()) == 7 == sum(v["neighbour_top"] for v in rows.values())
    assert sum(v["neighbour_mass"] for v in rows.values()) == pytest.approx(1.0, abs=1e-3)
    assert 0 <= out["neighbour_mass_on_gold"] <= 1 and out["soft_prompt_norm"] > 0
    # --split train: the training subset's instances, each without its own sentence
    args.split = "train"
    bench.cmd_analyse(args)
    train = json.loads((tmp_path / "runs" / "analysis_mydata_0.5_etrag_train.json").read_text())
    n_train = sum(len(pipe_insts) for pipe_insts in (
        nlp.get_pipe("etrag_relation_extractor").instances(d, gold=True)
        for d in bench.subset(bench.load(spec, "train", nlp), "0.5")))
    assert train["split"] == "train" and train["instances"] == n_train > 0


def test_tagged_runs_and_dated_timings_keep_earlier_results(bench, folder, tmp_path, monkeypatch):
    """A run with other settings (`train --tag`) writes its own cell, not the earlier
    run's file; a later label-match run adds dated timings next to the earlier ones."""
    import argparse

    runs = tmp_path / "runs"
    monkeypatch.setattr(bench, "RUNS", runs)
    monkeypatch.setattr(bench, "RESULT", tmp_path / "re.json")
    monkeypatch.setattr(bench, "train_one", lambda spec, fraction, system, **kw: {
        "dataset": spec["name"], "fraction": fraction, "system": system, "train_s": 1.0,
        "docs_per_s": 1.0, "kw": sorted(kw)})
    parser_args = dict(dataset=str(folder), train=None, dev=None, test=None, name=None, format="auto",
                       scorer=None, test_limit=None, fractions="0.5", systems="baseline", seeds="0",
                       force=False, save=False, lr=1e-4, steps=5, epochs=1, threads=1,
                       token_loss_weight=0.5, fresh_lr_scale=10.0, negative_ratio=1.0,
                       label_scoring="head", batch_docs=None, neighbour_label_noise=None,
                       retrieval_dropout=None, init_from=None, warm_lr_scale=None, pooling=None)
    bench.write("mydata_0.5_baseline", {"system": "baseline", "earlier": True})
    bench.cmd_train(argparse.Namespace(**parser_args, tag="neg1"))
    earlier = json.loads((runs / "mydata_0.5_baseline.json").read_text())
    assert earlier["system"] == "baseline" and earlier["earlier"] is True
    assert json.loads((runs / "mydata_0.5_baseline_neg1.json").read_text())["system"] == "baseline_neg1"
    bench.merge_json(tmp_path / "re.json", {"speed": {"retrieval_ms_per_doc": {"bm25": 3.0}}}, depth=3)
    (runs / "label_match.json").write_text(json.dumps(
        {"bm25": {"share": 0.3, "ms_per_doc": 0.8}, "date": "2026-12-06"}))
    for p in runs.glob("mydata_*"):
        p.unlink()
    bench.cmd_collect(None)
    speed = json.loads((tmp_path / "re.json").read_text())["speed"]
    assert speed["retrieval_ms_per_doc"] == {"bm25": 3.0}
    assert speed["retrieval_ms_per_doc_2026_12_06"] == {"bm25": 0.8}


def test_ruie_label_preference_uses_training_queries_only(bench, folder, tmp_path, monkeypatch):
    """`re.py ruie --preference label`: the label preference, queries and store from the
    training subset only (the test docs never), its own retriever name (`ruie_label`)."""
    import argparse

    from spacy_kbnlp.retrieval import ruie as ruie_module
    from spacy_kbnlp.retrieval.render import doc_key

    calls = {}

    def fake_train(store, queries, pref, output, **kw):
        calls.update(store=store, queries=queries, pref=pref, output=output, kw=kw)
        return {"preference": pref.name}

    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ruie_module, "train_ruie", fake_train)
    args = argparse.Namespace(dataset=str(folder), train=None, dev=None, test=None, name=None, format="auto",
                              scorer=None, test_limit=None, fraction="0.5", queries=0, candidates=6,
                              reward_steps=0, bi_steps=3, preference="label", weight=0.1, model=None, lr=5e-5, tag="",
                              batch_size=8,
                              model_seed=0, threads=1, train_fraction=None, init_encoder=None, max_minutes=0.0,
                              negatives="least")
    bench.cmd_ruie(args)
    nlp = __import__("spacy").blank("en")
    spec = bench.dataset_spec(str(folder))
    train_keys = {doc_key(d) for d in bench.subset(bench.load(spec, "train", nlp), "0.5")}
    assert isinstance(calls["pref"], ruie_module.LabelPreference)
    assert {doc_key(d) for d in calls["queries"]} == train_keys  # --queries 0: the whole subset
    assert {r["key"] for r in calls["store"].records} == train_keys
    assert calls["output"] == bench.ROOT / "training" / "ruie_label"
    assert calls["kw"]["reward_steps"] == 0 and calls["kw"]["lr"] == 5e-5 and calls["kw"]["negatives"] == "least"
    run = json.loads((tmp_path / "runs" / "ruie_label.json").read_text())
    assert run["preference"] == "label" and run["store_docs"] == len(train_keys) and "preference_model" not in run
    assert bench.ruie_name("model") == "ruie" and bench.ruie_name("mixed") == "ruie_mixed"
    assert bench.ruie_name("label", "s300") == "ruie_label_s300"


def test_plain_train_runs_the_default_component(bench, folder, tmp_path, monkeypatch):
    """`re.py train` without --label-scoring / --negative-ratio passes nothing, so the
    component's defaults apply (sequence scoring, negative_ratio 1); given ones pass."""
    import argparse

    import spacy

    seen = []
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(bench, "train_one", lambda spec, fraction, system, **kw: seen.append(kw) or {
        "train_s": 1.0, "docs_per_s": 1.0})
    args = dict(dataset=str(folder), train=None, dev=None, test=None, name=None, format="auto", scorer=None,
                test_limit=None, fractions="0.5", systems="baseline", seeds="0", force=True, save=False,
                lr=1e-4, steps=5, epochs=1, threads=1, token_loss_weight=0.5, fresh_lr_scale=10.0,
                batch_docs=None, tag="", init_from=None)
    bench.cmd_train(argparse.Namespace(**args, pooling=None, negative_ratio=None, label_scoring=None,
                                       neighbour_label_noise=None, retrieval_dropout=None, warm_lr_scale=None))
    bench.cmd_train(argparse.Namespace(**args, negative_ratio=0.0, label_scoring="head",
                                       neighbour_label_noise=0.5, retrieval_dropout=0.5, warm_lr_scale=0.0,
                                       pooling="pair"))
    assert seen[0]["init_from"] is None
    # --init-from: a saved pipeline folder, or a saved cell's run of the same seed
    saved = tmp_path / "base"
    saved.mkdir()
    (saved / "config.cfg").write_text("[nlp]\n")
    bench.cmd_train(argparse.Namespace(**dict(args, init_from=str(saved)), pooling=None, negative_ratio=None,
                                       label_scoring=None, neighbour_label_noise=None, retrieval_dropout=None,
                                       warm_lr_scale=None))
    assert seen[2]["init_from"] == saved
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    run = tmp_path / "training" / "re_bench" / "semeval_0.1_baseline_x_s2"
    run.mkdir(parents=True)
    (run / "config.cfg").write_text("[nlp]\n")
    assert bench.init_source("baseline_x", "semeval", "0.1", 2) == run
    with pytest.raises(SystemExit, match=r"no saved pipeline at training/re_bench/mydata_0.5_nothing_s1"):
        bench.init_source("nothing", "mydata", "0.5", 1)
    assert seen[0]["component"] == {} and seen[0]["model"] == {}
    assert seen[1]["component"] == {"negative_ratio": 0.0, "warm_lr_scale": 0.0}
    assert seen[1]["model"] == {"label_scoring": "head", "neighbour_label_noise": 0.5, "retrieval_dropout": 0.5,
                                "pooling": "pair"}
    pipe = spacy.blank("en").add_pipe("etrag_relation_extractor")
    assert pipe.cfg["negative_ratio"] == 1.0 and pipe.model.attrs["label_scoring"] == "sequence"


def test_ruie_train_fraction_trains_on_more_than_the_store(bench, folder, tmp_path, monkeypatch):
    """`re.py ruie --train-fraction 1.0 --fraction 0.5`: queries and candidate store from the
    whole training split, the 0.5 subset recorded as the store label match uses."""
    import argparse

    from spacy_kbnlp.retrieval import ruie as ruie_module
    from spacy_kbnlp.retrieval.render import doc_key

    calls = {}
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ruie_module, "train_ruie", lambda store, queries, pref, output, **kw: calls.update(
        store=store, queries=queries, encoder=kw["encoder"], negatives=kw["negatives"]) or {
            "preference": pref.name, "bi_encoder_s": 2.0, "preference_s": 0.5})
    args = argparse.Namespace(dataset=str(folder), train=None, dev=None, test=None, name=None, format="auto",
                              scorer=None, test_limit=None, fraction="0.5", train_fraction="1.0", queries=0,
                              candidates=6, reward_steps=0, bi_steps=3, preference="label", weight=0.1,
                              model=None, lr=5e-5, tag="full", batch_size=8, model_seed=0, threads=1,
                              init_encoder=None, max_minutes=0.0, negatives="closest")
    bench.cmd_ruie(args)
    nlp = __import__("spacy").blank("en")
    spec = bench.dataset_spec(str(folder))
    all_keys = {doc_key(d) for d in bench.load(spec, "train", nlp)}
    half = {doc_key(d) for d in bench.subset(bench.load(spec, "train", nlp), "0.5")}
    assert len(half) < len(all_keys)
    assert {doc_key(d) for d in calls["queries"]} == all_keys == {r["key"] for r in calls["store"].records}
    run = json.loads((tmp_path / "runs" / "ruie_label_full.json").read_text())
    assert run["train_fraction"] == "1.0" and run["label_match_store"] == "0.5"
    assert run["store_docs"] == len(all_keys) and run["total_s"] == 2.5
    assert "fraction 1.0" in run["train_data"] and "test never" in run["train_data"]
    assert calls["encoder"] is None and "init_encoder" not in run
    assert calls["negatives"] == "closest"  # --negatives reaches train_ruie
    # --init-encoder: training goes on from a trained encoder, recorded relative to the repository
    args.init_encoder, args.tag = str(bench.ROOT / "training" / "ruie_label_full" / "encoder"), "full_more"
    bench.cmd_ruie(args)
    assert calls["encoder"] == args.init_encoder
    run = json.loads((tmp_path / "runs" / "ruie_label_full_more.json").read_text())
    assert run["init_encoder"] == "training/ruie_label_full/encoder"


def test_gate_chooses_the_mix_on_dev(bench, folder, tmp_path, monkeypatch):
    """`re.py gate`: the saved runs' test predictions for every lambda and label-vote weight
    (the cells <system>_mix<lambda>[_knn<mu>]) equal what the component predicts with that
    retrieval_mix and knn_mix; the <system>_gate cell holds the setting with the best mean
    dev F1."""
    import argparse

    import spacy

    runs = tmp_path / "runs"
    monkeypatch.setattr(bench, "RUNS", runs)
    monkeypatch.setattr(bench, "RESULT", tmp_path / "re.json")
    spec = bench.dataset_spec(str(folder))
    nlp = _tiny_etrag(bench, folder, tmp_path, retrieval_dropout=0.5)
    nlp.get_pipe("etrag_relation_extractor").refresh_bank()
    (tmp_path / "models").mkdir()
    nlp.to_disk(tmp_path / "models" / "mydata_0.5_etrag_rd")
    bench.write("mydata_0.5_etrag_rd", {"dataset": "mydata", "data": spec, "fraction": "0.5",
                                         "system": "etrag_rd", "seed": 0, "train_s": 1.0, "predictions": []})
    args = argparse.Namespace(dataset=str(folder), train=None, dev=None, test=None, name=None, format="auto",
                              scorer=None, test_limit=None, fraction="0.5", system="etrag_rd", seeds="0",
                              lambdas="0,1", knn_mixes="0,1", knn_ks="0", knn_temperatures="0.05", threads=1,
                              models=str(tmp_path / "models"))
    bench.cmd_gate(args)
    summary = json.loads((runs / "gate_mydata_0.5_etrag_rd.json").read_text())
    dev = {k: v[0] for k, v in summary["dev_f1_by_lambda"].items()}
    assert sorted(dev) == ["0.0", "0.0+knn1.0", "1.0", "1.0+knn1.0"]
    settings = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
    best = max(settings, key=lambda st: (dev[bench.gate_key(*st)], -st[1], -st[0]))
    assert (summary["retrieval_mix"], summary["knn_mix"]) == best
    acc = summary["vote_accuracy"]  # the vote's top label against the gold labels, in %
    assert set(acc) == {"dev", "test"} and all(0 <= a <= 100 for a in acc["dev"] + acc["test"])
    inputs = [eg.predicted for eg in bench.with_gold_entities(nlp, bench.load(spec, "test", nlp))]
    cells = (("etrag_rd_mix000", 0.0, 0.0), ("etrag_rd_mix100", 1.0, 0.0),
             ("etrag_rd_mix000_knn100", 0.0, 1.0), ("etrag_rd_mix100_knn100", 1.0, 1.0))
    for cell, lam, knn in cells:
        run = json.loads((runs / f"mydata_0.5_{cell}.json").read_text())
        again = spacy.load(tmp_path / "models" / "mydata_0.5_etrag_rd",
                           config={"components.etrag_relation_extractor.retrieval_mix": lam,
                                   "components.etrag_relation_extractor.knn_mix": knn})
        expected = [list(d._.rel_records) for d in again.pipe([d.copy() for d in inputs])]
        assert run["system"] == cell and run["retrieval_mix"] == lam and run["knn_mix"] == knn
        assert run["predictions"] == expected
    knn_runs = [json.loads((runs / f"mydata_0.5_{c}.json").read_text())["predictions"] for c, _, _ in cells]
    assert knn_runs[0] != knn_runs[2] or knn_runs[1] != knn_runs[3]  # the vote changes predictions
    gate = json.loads((runs / "mydata_0.5_etrag_rd_gate.json").read_text())
    assert (gate["retrieval_mix"], gate["knn_mix"]) == best and gate["trained_as"] == "etrag_rd"
    bench.cmd_collect(None)
    res = json.loads((tmp_path / "re.json").read_text())
    assert res["mydata"]["0.5"]["etrag_rd_gate"]["retrieval_mix"] == summary["retrieval_mix"]
    assert "mydata_0.5_etrag_rd_gate" not in res["speed"]  # no training of its own
    # lambda 1 alone (the vote on the model without its prompts): no pass with the neighbours,
    # the same predictions
    before = {c: json.loads((runs / f"mydata_0.5_{c}.json").read_text())["predictions"]
              for c in ("etrag_rd_mix100", "etrag_rd_mix100_knn100")}
    bench.cmd_gate(argparse.Namespace(**dict(vars(args), lambdas="1")))
    for c, preds in before.items():
        assert json.loads((runs / f"mydata_0.5_{c}.json").read_text())["predictions"] == preds
    # infer-speed: the gated cell with its chosen settings and with the vote alone, against a
    # baseline cell (here the same saved run), in docs/s; collect keeps it under speed
    bench.cmd_infer_speed(argparse.Namespace(**dict(vars(args), seed=0, baseline="etrag_rd")))
    timed = json.loads((runs / "infer_speed_mydata_0.5_etrag_rd_s0.json").read_text())
    assert set(timed) >= {"etrag_rd", "etrag_rd_gate", "etrag_rd_vote_only"}
    assert timed["etrag_rd"]["ratio_to_baseline"] == 1.0 and timed["etrag_rd_gate"]["docs"] == len(inputs)
    last = json.loads((runs / "gate_mydata_0.5_etrag_rd.json").read_text())  # (the lambda-1 run's)
    assert timed["gate"] == {"retrieval_mix": last["retrieval_mix"], "knn_mix": last["knn_mix"]}
    bench.cmd_collect(None)
    assert json.loads((tmp_path / "re.json").read_text())["speed"]["infer_speed_mydata_0.5_etrag_rd_s0"] == timed
    from spacy_kbnlp.scorers import rel as rel_scorer

    # the votes of the knn_k nearest rows (--knn-ks, --knn-temperatures): every setting scored
    # and chosen on dev, what the component predicts with those settings; run files only for
    # the soft neighbours' vote and the chosen setting
    bench.cmd_gate(argparse.Namespace(**dict(vars(args), lambdas="1", knn_mixes="0,1", knn_ks="0,2",
                                             knn_temperatures="0.1,1.0")))
    summary = json.loads((runs / "gate_mydata_0.5_etrag_rd.json").read_text())
    dev = {k: v[0] for k, v in summary["dev_f1_by_lambda"].items()}
    assert sorted(dev) == ["1.0", "1.0+knn1.0", "1.0+knn1.0+k2t0.1", "1.0+knn1.0+k2t1.0"]
    assert sorted(summary["vote_accuracy_by_vote"]["test"]) == ["k2t0.1", "k2t1.0", "soft"]
    settings = [(1.0, 0.0, 0, 0.1), (1.0, 1.0, 0, 0.1), (1.0, 1.0, 2, 0.1), (1.0, 1.0, 2, 1.0)]
    best = max(settings, key=lambda st: (dev[bench.gate_key(*st)], -st[1], -st[0], -st[2], st[3]))
    assert (summary["retrieval_mix"], summary["knn_mix"], summary["knn_k"], summary["knn_temperature"]) == best
    assert not list(runs.glob("mydata_0.5_etrag_rd_*_k2_*.json"))
    pipe_cfg = "components.etrag_relation_extractor"
    for st in settings[2:]:
        again = spacy.load(tmp_path / "models" / "mydata_0.5_etrag_rd", config={
            f"{pipe_cfg}.retrieval_mix": 1.0, f"{pipe_cfg}.knn_mix": 1.0, f"{pipe_cfg}.knn_k": 2,
            f"{pipe_cfg}.knn_temperature": st[3]})
        preds = [list(d._.rel_records) for d in again.pipe([d.copy() for d in inputs])]
        assert summary["test_f1_by_lambda"][bench.gate_key(*st)] == [
            bench.score_predictions(rel_scorer, spec["scorer"], bench.load(spec, "test", again), preds)]
        if st == best:
            assert json.loads((runs / "mydata_0.5_etrag_rd_gate.json").read_text())["predictions"] == preds


def test_status_rows_compare_two_stage_etrag_with_the_equal_budget_baseline(bench):
    """The status table's two-stage row pairs ETRAG from the baseline (gate chosen on
    dev) with the baseline trained on as long, and is left out without both cells."""
    cell = lambda f1: {"f1": f1, "f1_seeds": [f1 - 1, f1 + 1], "f1_std": 1.0}
    res = {"semeval": {"0.1": {"etrag_from_base_gate": dict(cell(57.8), retrieval_mix=1.0),
                               "baseline_from_base": cell(55.0)}},
           "speed": {"semeval_0.1_baseline_ckpt": {"steps": 150},
                     "semeval_0.1_etrag_from_base": {"steps": 75, "date": "2026-12-06", "threads": 1}}}
    rows = bench.status_rows(res)
    assert len(rows) == 1 and rows[0]["ours"] == "57.8 ± 1.0 (2 seeds)"
    assert rows[0]["alternative"] == "the baseline trained on as long, no retrieval: 55.0 ± 1.0 (2 seeds)"
    assert rows[0]["task"] == ("SemEval-2010 Task 8 (300 test sentences), 10 % of the training data, "
                               "150 + 75 steps, retrieval_mix 1.0 chosen on dev: official score")
    # all of the training data: its own row, before the 10 % one
    res["semeval"]["1.0"] = {"etrag_from_base_gate": dict(cell(62.0), retrieval_mix=0.5),
                             "baseline_from_base": cell(60.0)}
    res["speed"].update({"semeval_1.0_baseline_ckpt": {"steps": 200}, "semeval_1.0_etrag_from_base": {"steps": 100}})
    rows = bench.status_rows(res)
    assert [r["ours"] for r in rows] == ["62.0 ± 1.0 (2 seeds)", "57.8 ± 1.0 (2 seeds)"]
    assert "all of the training data, 200 + 100 steps, retrieval_mix 0.5 chosen on dev" in rows[0]["task"]
    # the retrieval adapter on the frozen baseline: its own row after the two-stage one
    res["semeval"]["0.1"]["etrag_adapter_gate"] = dict(cell(58.5), retrieval_mix=1.0, knn_mix=0.25)
    res["speed"].update({"semeval_0.1_baseline_from_base": {"steps": 75},
                         "semeval_0.1_etrag_adapter": {"steps": 75, "date": "2026-12-07", "threads": 1}})
    rows = bench.status_rows(res)
    assert [r["ours"] for r in rows] == ["62.0 ± 1.0 (2 seeds)", "57.8 ± 1.0 (2 seeds)", "58.5 ± 1.0 (2 seeds)"]
    assert rows[2]["task"] == ("SemEval-2010 Task 8 (300 test sentences), 10 % of the training data, 150 + 75 "
                               "steps, then 75 steps of the retrieval path alone, retrieval_mix 1.0 and knn_mix "
                               "0.25 chosen on dev: official score")
    assert rows[2]["alternative"] == rows[1]["alternative"] and rows[2]["measured"].startswith("2026-12-07")
    assert "frozen baseline" in rows[2]["component"]
    assert rows[2]["speed"] == ""  # no infer-speed run
    res["speed"]["infer_speed_semeval_0.1_etrag_adapter_s0"] = {
        "baseline_from_base": {"docs_per_s": 24.8}, "etrag_adapter_gate": {"docs_per_s": 9.4, "ratio_to_baseline": 0.379}}
    assert bench.status_rows(res)[2]["speed"] == "0.38x docs/s (9.4 vs 24.8, seed 0)"
    del res["semeval"]["0.1"]["baseline_from_base"], res["semeval"]["1.0"]["etrag_from_base_gate"]
    assert bench.status_rows(res) == []


def test_status_rows_give_conll04_two_stage_cells_with_both_stages_steps(bench):
    cell = lambda f1: {"f1": f1, "f1_seeds": [f1 - 2, f1, f1 + 2], "f1_std": 2.0}
    res = {"conll04": {"0.1": {"etrag_head_from_base_gate": cell(30.0), "baseline_head_from_base": cell(28.0)},
                       "1.0": {"etrag_head_from_base_gate": cell(48.7)}},
           "speed": {"conll04_0.1_baseline_head_ckpt": {"steps": 250},
                     "conll04_0.1_etrag_head_from_base": {"steps": 125, "date": "2026-12-07", "threads": 1}}}
    rows = bench.status_rows(res)
    assert len(rows) == 1  # 100 %: no baseline cell, no row
    assert rows[0]["ours"] == "30.0 ± 2.0 (3 seeds)"
    assert rows[0]["alternative"] == "the baseline trained on as long, no retrieval: 28.0 ± 2.0 (3 seeds)"
    assert rows[0]["task"] == ("CoNLL04 (first 100 test sentences, gold entities), 10 % of the training data, "
                               "250 + 125 steps, retrieval_mix ? chosen on dev: relation micro-F1")
    assert rows[0]["measured"] == "2026-12-07, 2-core CPU, 1 thread"


def test_status_rows_give_the_vote_on_the_baseline_against_that_baseline(bench):
    """The vote row: the gated vote cell on a trained baseline against that same baseline,
    with the steps that trained it, the chosen vote and the infer-speed ratio."""
    cell = lambda f1: {"f1": f1, "f1_seeds": [f1 - 1, f1 + 1], "f1_std": 1.0}
    res = {"semeval": {"0.1": {"etrag_long_pairvote_gate": dict(cell(64.0), retrieval_mix=1.0, knn_mix=0.5,
                                                                knn_k=16, knn_temperature=0.05)}},
           "speed": {"semeval_0.1_baseline_ckpt": {"steps": 150}, "semeval_0.1_baseline_from_base": {"steps": 75},
                     "semeval_0.1_baseline_long": {"steps": 75},
                     "semeval_0.1_etrag_long_pairvote": {"steps": 1, "date": "2026-12-07", "threads": 1}}}
    assert bench.status_rows(res) == []  # no baseline cell
    res["semeval"]["0.1"]["baseline_long"] = cell(58.0)
    rows = bench.status_rows(res)
    assert len(rows) == 1 and rows[0]["ours"] == "64.0 ± 1.0 (2 seeds)"
    assert rows[0]["alternative"] == "the same baseline, no retrieval: 58.0 ± 1.0 (2 seeds)"
    assert rows[0]["task"] == ("SemEval-2010 Task 8 (300 test sentences), 10 % of the training data, the "
                               "baseline's 150 + 75 + 75 steps, retrieval_mix 1.0, knn_mix 0.5, knn_k 16 at "
                               "temperature 0.05 chosen on dev: official score")
    assert rows[0]["measured"] == "2026-12-07, 2-core CPU, 1 thread" and rows[0]["speed"] == ""
    res["speed"]["infer_speed_semeval_0.1_etrag_long_pairvote_s0"] = {
        "baseline_long": {"docs_per_s": 25.0}, "etrag_long_pairvote_gate": {"docs_per_s": 20.0, "ratio_to_baseline": 0.8}}
    assert bench.status_rows(res)[0]["speed"] == "0.80x docs/s (20.0 vs 25.0, seed 0)"
    # seeds run on other days: the first and the last day (not another cell's run)
    res["speed"].update({"semeval_0.1_etrag_long_pairvote_s1": {"date": "2026-12-09"},
                         "semeval_0.1_etrag_long_pairvote_s12x": {"date": "2026-12-01"},
                         "semeval_0.1_etrag_long_pairvote_gate": {"date": "2026-12-01"},
                         "semeval_0.1_etrag_long_pairvote_s2": {"date": "2026-12-08"}})
    assert bench.status_rows(res)[0]["measured"] == "2026-12-07 to 2026-12-09, 2-core CPU, 1 thread"
