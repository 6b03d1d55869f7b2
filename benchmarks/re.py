"""Relation-extraction benchmarks: ETRAG vs. the no-retrieval baseline vs. kNN label
voting on SemEval-2010 Task 8 and CoNLL04 (given gold entities) with 1/5/10/100 % of
the training data; demonstration retrieval quality (label match@5); speed.

Steps (each writes JSON under ``benchmarks/results/re_runs/``; ``collect`` scores the
saved predictions with ``spacy_kbnlp.scorers.rel`` and writes ``benchmarks/results/re.json``)::

    python benchmarks/re.py train --dataset semeval --fractions 0.1,0.01,0.05,1.0 --systems baseline,etrag
    python benchmarks/re.py train --dataset conll04 --fractions 0.1,0.01,0.05,1.0 --systems baseline,etrag
    python benchmarks/re.py knn --dataset semeval
    python benchmarks/re.py knn --dataset conll04
    python benchmarks/re.py ruie                   # RUIE retriever, ETRAG preference (needs semeval_0.1_etrag --save)
    python benchmarks/re.py ruie --preference label   # RUIE retriever on the gold labels of the training queries
    python benchmarks/re.py label-match            # bm25, zero-shot MiniLM (+ ruie if trained)
    python benchmarks/re.py gate --system etrag_rd05   # retrieval_mix chosen on dev (needs train --save)
    python benchmarks/re.py gate --system etrag_adapter --knn-mixes 0,0.1,0.25,0.5   # and the label vote
    python benchmarks/re.py collect

Training budget (2-core CPU): ``--steps`` caps the optimizer steps per run
(``min(epochs * batches, cap)``); the defaults are in STEPS / EPOCHS below.
"""
import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import merge_json  # noqa: E402  (merge by key, never drop others)

RUNS = ROOT / "benchmarks" / "results" / "re_runs"
RESULT = ROOT / "benchmarks" / "results" / "re.json"
FRACTIONS = ("0.01", "0.05", "0.1", "1.0")
EPOCHS = {"0.01": 30, "0.05": 10, "0.1": 6, "1.0": 1}
STEPS = {"0.01": 30, "0.05": 45, "0.1": 60, "1.0": 100}
SCORERS = ("micro", "macro", "semeval")
SPLITS = ("train", "dev", "test")
# the named datasets: paths under the shared data folder (data_dir()), the reader format,
# the SemEval id split, the scorer, the docs per batch and the test cut (the test sets are
# cut to their first test_limit documents, SemEval ids 8001-8300 and the first 100
# CoNLL04 test sentences, to fit the CPU budget of a shared 2-core machine)
NAMED: Dict[str, Dict[str, Any]] = {
    "semeval": {"format": "semeval2010", "train": "re/semeval2010_task8/training/TRAIN_FILE.TXT",
                "dev": "re/semeval2010_task8/training/TRAIN_FILE.TXT",
                "test": "re/semeval2010_task8/testing_keys/TEST_FILE_FULL.TXT",
                "id_mod": {"train": "10:!0", "dev": "10:0"}, "scorer": "semeval",
                "batch_docs": 16, "test_limit": 300},
    "conll04": {"format": "conll04", "train": "re/conll04/spert_format/conll04_train.json",
                "dev": "re/conll04/spert_format/conll04_dev.json",
                "test": "re/conll04/spert_format/conll04_test.json", "scorer": "micro",
                "batch_docs": 4, "test_limit": 100},
}
TEST_LIMIT = {name: spec["test_limit"] for name, spec in NAMED.items()}


def data_dir() -> Path:
    import os

    return Path(os.environ.get("KBNLP_DATA_DIR", ROOT.parent / "shared" / "data"))


def _shown(path: Path) -> str:
    """A path as recorded in the run files: relative to the repository when it can be."""
    import os

    return os.path.relpath(path.resolve(), ROOT)


def _split_file(folder: Path, split: str) -> Optional[Path]:
    for pattern in (f"{split}.jsonl", f"{split}.spacy", f"*{split}*.jsonl", f"*{split}*.spacy"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def dataset_spec(dataset: str, *, train: Optional[str] = None, dev: Optional[str] = None,
                 test: Optional[str] = None, name: Optional[str] = None, fmt: str = "auto",
                 scorer: Optional[str] = None, test_limit: Optional[int] = None,
                 batch_docs: Optional[int] = None) -> Dict[str, Any]:
    """The dataset a command works on: a named shortcut (``semeval``, ``conll04``) or
    any corpus by path, a folder with ``train``/``dev``/``test`` files (``train.jsonl``
    or ``*train*.spacy`` ...) or explicit split paths. Paths are kept relative to the
    repository (they are written into the run files, which ``collect`` reads back)."""
    from spacy_kbnlp.errors import Errors

    if dataset in NAMED and not (train or dev or test):
        spec = dict(NAMED[dataset], name=name or dataset)
        for split in SPLITS:
            spec[split] = _shown(data_dir() / spec[split])
    else:
        folder = Path(dataset) if dataset else None
        paths = {"train": train, "dev": dev, "test": test}
        for split in SPLITS:
            if paths[split] is None and folder is not None and folder.is_dir():
                found = _split_file(folder, split)
                paths[split] = str(found) if found else None
        missing = [s for s in ("train", "test") if not paths[s] or not Path(paths[s]).exists()]
        if missing:
            raise SystemExit(Errors.KBE321.format(path=dataset or "(none)", missing=", ".join(missing)))
        spec = {"name": name or (folder.name if folder is not None and folder.is_dir()
                                 else Path(paths["train"]).parent.name),
                "format": fmt, "scorer": "micro", "batch_docs": 16, "test_limit": 0}
        for split in SPLITS:
            spec[split] = _shown(Path(paths[split])) if paths[split] else None
    if scorer:
        spec["scorer"] = scorer
    if test_limit is not None:
        spec["test_limit"] = test_limit
    if batch_docs:
        spec["batch_docs"] = batch_docs
    if spec["scorer"] not in SCORERS:
        raise SystemExit(f"--scorer: one of {', '.join(SCORERS)}")
    if "_" in spec["name"]:
        raise SystemExit(f"dataset name {spec['name']!r}: no '_' (run files are named name_fraction_system)")
    return spec


def load(spec: Dict[str, Any], split: str, nlp, full: bool = False):
    """Gold Docs of ``split`` (SemEval: train = ids not divisible by 10, dev = the
    others, test = TEST_FILE_FULL; CoNLL04 = the SpERT splits; a path dataset: its
    files); the test split cut to ``test_limit`` docs unless ``full``."""
    from spacy_kbnlp.readers import read_docs
    from spacy_kbnlp.readers.select import select_docs

    path = spec.get(split)
    if path is None:
        return []
    path = ROOT / path
    fmt = spec["format"]
    if fmt == "auto":
        fmt = "jsonl" if path.suffix == ".jsonl" or (path.is_dir() and any(path.glob("*.jsonl"))) else "spacy"
    limit = spec.get("test_limit", 0) if split == "test" and not full else 0
    id_mod = spec.get("id_mod", {}).get(split)
    docs = read_docs(path, fmt, nlp, limit=0 if id_mod else limit)
    if id_mod:
        docs = select_docs(docs, id_mod=id_mod)
    return list(docs)


def subset(docs: List, fraction: str, seed: int = 0) -> List:
    """Deterministic nested subsets: the first round(f * n) docs of one shuffle
    (``spacy_kbnlp.readers.select.fraction_subset``, shared with the SubsetCorpus
    reader of configs/etrag.cfg and ``build-demo-store --fraction``)."""
    from spacy_kbnlp.readers.select import fraction_subset

    return fraction_subset(docs, float(fraction), seed)


def with_gold_entities(nlp, gold_docs):
    """Prediction inputs: the gold tokens and entities, no relations."""
    from spacy_kbnlp.pipeline.etrag_relation_extractor import gold_entities_augmenter
    from spacy_kbnlp.readers.spans import make_example

    return [next(gold_entities_augmenter(nlp, make_example(nlp, d))) for d in gold_docs]


def write(name: str, data: Dict[str, Any]) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    data.setdefault("date", time.strftime("%Y-%m-%d", time.gmtime()))
    (RUNS / f"{name}.json").write_text(json.dumps(data, indent=1))


def step_budget(n_docs: int, batch_docs: int, epochs: int, steps: int) -> int:
    """The number of optimizer steps of a run: ``min(epochs x batches per epoch, steps)``
    (``steps`` 0 = no cap); configs/etrag.cfg applies the same rule (``max_epochs`` and
    ``max_steps``). The learning-rate schedule spans ``steps`` (10 % warmup, linear
    decay), so a run stopped by the epoch cap ends before the rate reaches 0."""
    by_epochs = epochs * ((n_docs + batch_docs - 1) // batch_docs)
    return min(by_epochs, steps) if steps else by_epochs


def run_name(dataset: str, fraction: str, system: str, seed: int = 0) -> str:
    """``dataset_fraction_system`` (seed 0, the runs before seeds) or ``..._s<seed>``."""
    return f"{dataset}_{fraction}_{system}" + (f"_s{seed}" if seed else "")


def train_one(spec: Dict[str, Any], fraction: str, system: str, *, batch_docs: int, lr: float,
              steps_cap: int, epochs: int, seed: int = 0, save_dir: Optional[Path] = None,
              n_neighbors: int = 4, threads: int = 1, token_loss_weight: float = 0.5,
              fresh_lr_scale: float = 10.0, model: Optional[Dict[str, Any]] = None,
              component: Optional[Dict[str, Any]] = None, init_from: Optional[Path] = None) -> Dict[str, Any]:
    import torch
    from spacy.lang.en import English
    from thinc.api import Adam

    from spacy_kbnlp.core.torch_io import set_seed
    from spacy_kbnlp.pipeline.etrag_relation_extractor import warmup_linear_ratio

    set_seed(seed)
    torch.set_num_threads(threads)
    nlp = English()
    train = subset(load(spec, "train", nlp), fraction, seed)
    test = load(spec, "test", nlp)
    egs = with_gold_entities(nlp, train)
    k = n_neighbors if system == "etrag" else 0
    pipe = nlp.add_pipe("etrag_relation_extractor", config=dict({
        "scorer": None, "model": dict({"n_neighbors": k}, **(model or {})),
        "token_loss_weight": token_loss_weight, "fresh_lr_scale": fresh_lr_scale}, **(component or {})))
    t0 = time.perf_counter()
    if init_from is not None:  # stage 2: start from a saved pipeline's weights ([initialize])
        nlp.config["initialize"]["components"][pipe.name] = {"init_from": str(init_from)}
    nlp.initialize(lambda: egs)
    if init_from is not None:  # the saved config names the source relative to the repository
        nlp.config["initialize"]["components"][pipe.name]["init_from"] = _shown(init_from)
    total = step_budget(len(egs), batch_docs, epochs, steps_cap)
    opt = Adam(warmup_linear_ratio(lr, steps_cap or total, 0.1))
    rng = random.Random(seed)
    step, losses = 0, []
    while step < total:
        rng.shuffle(egs)
        for b in range(0, len(egs), batch_docs):
            if step >= total:
                break
            l = nlp.update(egs[b: b + batch_docs], sgd=opt, losses={})
            opt.step_schedules()  # advance the warmup/decay schedule (spacy train does this)
            losses.append(l[pipe.name])
            step += 1
            if step % 10 == 0:
                print(f"  {spec['name']} {fraction} {system} s{seed} step {step}/{total} loss "
                      f"{sum(losses[-10:]) / len(losses[-10:]):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    pipe.refresh_bank()
    train_s = time.perf_counter() - t0
    inputs = [eg.predicted for eg in with_gold_entities(nlp, test)]
    t1 = time.perf_counter()
    preds = [list(doc._.rel_records or []) for doc in nlp.pipe(inputs, batch_size=64)]
    infer_s = time.perf_counter() - t1
    predicted = Counter(r["label"] for recs in preds for r in recs)
    print(f"  predicted labels: {dict(predicted.most_common())}", flush=True)
    if save_dir is not None:
        save_dir.parent.mkdir(parents=True, exist_ok=True)
        nlp.to_disk(save_dir)
    return {"dataset": spec["name"], "data": spec, "fraction": fraction, "system": system,
            "seed": seed, "train_docs": len(train),
            "train_instances": len(pipe._bank), "steps": total,
            "steps_cap": steps_cap, "epochs": epochs, "batch_docs": batch_docs,
            "lr": lr, "fresh_lr_scale": fresh_lr_scale, "token_loss_weight": token_loss_weight,
            "threads": threads, "n_neighbors": k, "train_s": round(train_s, 1),
            "negative_ratio": pipe.cfg["negative_ratio"], "label_scoring": pipe.module.label_scoring,
            "neighbour_label_noise": pipe.module.neighbour_label_noise,
            "retrieval_dropout": pipe.module.retrieval_dropout, "pooling": pipe.module.pooling,
            "warm_lr_scale": pipe.cfg["warm_lr_scale"],
            "init_from": _shown(init_from) if init_from is not None else None,
            "test_docs": len(test), "infer_s": round(infer_s, 1),
            "docs_per_s": round(len(test) / infer_s, 2), "final_loss": losses[-1] if losses else None,
            "losses": [round(float(x), 4) for x in losses],
            "predictions": preds}


def spec_from_args(args) -> Dict[str, Any]:
    return dataset_spec(args.dataset, train=args.train, dev=args.dev, test=args.test, name=args.name,
                        fmt=args.format, scorer=args.scorer, test_limit=args.test_limit,
                        batch_docs=getattr(args, "batch_docs", 0))


def _given(**settings: Any) -> Dict[str, Any]:
    """The settings given on the command line; the others keep the component's
    defaults (its ``default_config``, the one source of the recipe)."""
    return {k: v for k, v in settings.items() if v is not None}


def cmd_train(args) -> None:
    spec = spec_from_args(args)
    seeds = [int(x) for x in str(args.seeds).split(",")]
    for fraction in args.fractions.split(","):
        for system in args.systems.split(","):
            for seed in seeds:
                # a run with other settings gets its own cell (--tag), never an earlier run's file
                tagged = f"{system}_{args.tag}" if args.tag else system
                name = run_name(spec["name"], fraction, tagged, seed)
                if (RUNS / f"{name}.json").exists() and not args.force:
                    print("skip", name)
                    continue
                print("==", name, time.strftime("%H:%M:%S"), flush=True)
                save = ROOT / "training" / "re_bench" / name if args.save else None
                source = init_source(args.init_from, spec["name"], fraction, seed) if args.init_from else None
                res = train_one(spec, fraction, system, batch_docs=spec["batch_docs"], lr=args.lr,
                                steps_cap=args.steps or STEPS.get(fraction, 150),
                                epochs=args.epochs or EPOCHS.get(fraction, 6), seed=seed,
                                save_dir=save, threads=args.threads, init_from=source,
                                token_loss_weight=args.token_loss_weight,
                                fresh_lr_scale=args.fresh_lr_scale,
                                component=_given(negative_ratio=args.negative_ratio,
                                                 warm_lr_scale=args.warm_lr_scale),
                                model=_given(label_scoring=args.label_scoring,
                                             neighbour_label_noise=args.neighbour_label_noise,
                                             retrieval_dropout=args.retrieval_dropout,
                                             pooling=args.pooling))
                res["system"] = tagged
                write(name, res)
                print("   done", name, res["train_s"], "s train,", res["docs_per_s"], "docs/s", flush=True)


def init_source(given: str, dataset: str, fraction: str, seed: int) -> Path:
    """``--init-from``: a saved pipeline folder, or the name of a cell whose runs were
    saved (``train --save``): ``training/re_bench/<dataset>_<fraction>_<cell>[_s<seed>]``,
    the run of the same seed."""
    path = Path(given)
    if not path.is_dir():
        path = ROOT / "training" / "re_bench" / run_name(dataset, fraction, given, seed)
    if not (path / "config.cfg").is_file():
        raise SystemExit(f"--init-from {given}: no saved pipeline at {_shown(path)} (train it with --save)")
    return path


def cmd_knn(args) -> None:
    from spacy.lang.en import English

    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.retrieval.knn import KNNRelationClassifier

    spec = spec_from_args(args)
    nlp = English()
    full = load(spec, "train", nlp)
    test = load(spec, "test", nlp)
    inputs = [eg.predicted for eg in with_gold_entities(nlp, test)]
    encoder = HFEncoder().load()
    for fraction in args.fractions.split(","):
        name = run_name(spec["name"], fraction, "knn")
        t0 = time.perf_counter()
        knn = KNNRelationClassifier(encoder, k=args.k).fit(subset(full, fraction))
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        preds = [[dict(r) for r in recs] for recs in knn.predict_docs(inputs)]
        infer_s = time.perf_counter() - t1
        write(name, {"dataset": spec["name"], "data": spec, "fraction": fraction, "system": "knn",
                     "seed": 0, "k": args.k, "train_s": round(train_s, 1), "infer_s": round(infer_s, 1),
                     "docs_per_s": round(len(inputs) / infer_s, 2), "predictions": preds})
        print(name, round(train_s, 1), round(infer_s, 1))


def ruie_name(preference: str, tag: str = "") -> str:
    """The retriever's name in the results and its folder under ``training/``:
    ``ruie`` (the ETRAG-model preference, the earlier runs), ``ruie_label``,
    ``ruie_mixed``; ``_<tag>`` added for runs with other settings."""
    return ("ruie" if preference == "model" else f"ruie_{preference}") + (f"_{tag}" if tag else "")


def cmd_ruie(args) -> None:
    """Train the RUIE retriever on the ``--train-fraction`` subset of the training split
    (default: ``--fraction``; queries = ``--queries`` docs of that subset, never test or
    dev docs; the candidate store = the whole subset) with the preference
    ``--preference``: ``model`` (the ETRAG model trained on that subset,
    ``train --save``), ``label`` (the gold labels of the training queries) or
    ``mixed`` (label + ``--weight`` x the standardised model preference). Writes
    ``training/<ruie_name>/encoder`` and ``re_runs/<ruie_name>.json``. A retriever is
    universal: trained on more labelled queries than the demonstration store it then
    serves (``--train-fraction 1.0``), while ``--fraction`` names the store that
    ``label-match --fraction`` measures it with (recorded as ``label_match_store``)."""
    import spacy
    import torch

    from spacy_kbnlp.cli.retrieval import etrag_preference
    from spacy_kbnlp.retrieval.ruie import LabelPreference, MixedPreference, train_ruie
    from spacy_kbnlp.retrieval.store import DemoStore

    spec = spec_from_args(args)
    torch.set_num_threads(args.threads)
    nlp = spacy.blank("en")
    train_fraction = args.train_fraction or args.fraction
    train = subset(load(spec, "train", nlp), train_fraction)
    model = args.model or ROOT / "training" / "re_bench" / run_name(spec["name"], args.fraction, "etrag",
                                                                     args.model_seed)
    pref = LabelPreference() if args.preference == "label" else etrag_preference(model)
    if args.preference == "mixed":
        pref = MixedPreference(pref, weight=args.weight)
    store = DemoStore.from_docs(train)
    rng = random.Random(0)
    queries = rng.sample(train, min(args.queries or len(train), len(train)))
    name = ruie_name(args.preference, args.tag)
    meta = train_ruie(store, queries, pref, ROOT / "training" / name, n_candidates=args.candidates,
                      reward_steps=args.reward_steps, bi_steps=args.bi_steps, batch_size=args.batch_size,
                      lr=args.lr, encoder=args.init_encoder, max_minutes=args.max_minutes,
                      negatives=args.negatives, show_progress=False, log=lambda m: print(" ", m, flush=True))
    meta.update(store_docs=len(train), fraction=args.fraction, train_fraction=train_fraction,
                dataset=spec["name"], label_match_store=args.fraction,
                train_data=(f"{spec['name']} training split {spec.get('train')}"
                            + (f" ids {spec['id_mod']['train']} (the dev ids excluded)" if spec.get("id_mod") else "")
                            + f", fraction {train_fraction}: {len(train)} docs; test never"),
                total_s=round(sum(meta.get(k) or 0 for k in ("preference_s", "reward_s", "bi_encoder_s")), 1))
    if args.preference != "label":
        meta["preference_model"] = (f"etrag_relation_extractor trained on {spec['name']} {args.fraction} "
                                    f"(benchmarks/re.py train --save, seed {args.model_seed})")
    if args.preference == "mixed":
        meta["weight"] = args.weight
    if args.init_encoder:  # continued training: the schedule restarts (warmup, decay over --bi-steps)
        meta["init_encoder"] = _shown(Path(args.init_encoder))
    write(name, meta)
    print(meta)


def label_match_file(dataset: str, fraction: str) -> Path:
    """``label_match.json`` (SemEval, the full training store: the file of the earlier
    runs) or ``label_match_<dataset>_<fraction>.json``."""
    if dataset == "semeval" and float(fraction) == 1.0:
        return RUNS / "label_match.json"
    return RUNS / f"label_match_{dataset}_{fraction}.json"


def cmd_label_match(args) -> None:
    """Label match@5 of the demonstration retrievers: for every test query with a
    relation, the share of its 5 retrieved demonstrations (the training subset of
    ``--fraction`` as the store, the query's own sentence excluded) that carry one of
    the query's labels, **directed** (``share``: ``Cause-Effect(e2,e1)`` only matches
    the same direction, the direction read from the text order of the arguments) and
    **undirected** (``share_undirected``: the relation type only); plus the retrieval
    latency per query."""
    import numpy
    from spacy.lang.en import English

    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.retrieval.render import doc_key, doc_labels, label_match, render_input, undirected
    from spacy_kbnlp.retrieval.store import DemoStore

    def undirected_labels(labels):
        return sorted({undirected(label)[0] for label in labels})

    spec = spec_from_args(args)
    nlp = English()
    train = subset(load(spec, "train", nlp), args.fraction, args.seed)
    test = load(spec, "test", nlp, full=True)  # every test sentence (SemEval: all 2,717)
    queries = [render_input(d) for d in test]
    excl = [doc_key(d) for d in test]
    done = label_match_file(spec["name"], args.fraction)
    out = json.loads(done.read_text()) if done.exists() else {}
    retrievers = [("bm25", None), ("zero_shot_minilm", HFEncoder())]
    ruie = Path(args.ruie_encoder)
    if ruie.exists():
        retrievers.append(("ruie", HFEncoder(str(ruie))))
    # the retrievers trained with the task signal (re.py ruie --preference label|mixed [--tag])
    for trained in sorted((ROOT / "training").glob("ruie_*/encoder")):
        retrievers.append((trained.parent.name, HFEncoder(str(trained))))
    for name, encoder in retrievers:
        if "share_undirected" in out.get(name, {}) and not args.force:
            continue
        store = DemoStore.from_docs(train, encoder=encoder)
        t = time.perf_counter()
        hits = store.search(queries, 5, retriever="bm25" if encoder is None else "dense",
                            encoder=encoder, exclude_keys=excl)
        latency = (time.perf_counter() - t) / len(queries) * 1000
        out[name] = {"ms_per_doc": round(latency, 2), "store_docs": len(train),
                     "fraction": args.fraction, "seed": args.seed}
        for key, view in (("share", lambda ls: ls), ("share_undirected", undirected_labels)):
            shares = [label_match(view(doc_labels(d)), [view(store.records[r]["labels"]) for r, _ in h])
                      for d, h in zip(test, hits)]
            out[name][key] = round(float(numpy.mean([x for x in shares if x is not None])), 4)
        print(name, out[name], flush=True)
        out["date"] = time.strftime("%Y-%m-%d", time.gmtime())
        write(done.stem, out)  # re_runs/label_match[_<dataset>_<fraction>].json


# 16 relation types (a Wikidata-like set): with both directions and no_relation, 33 labels
STEP_COST_TYPES = ("country", "located in", "part of", "instance of", "member of", "employer",
                   "founded by", "capital of", "headquarters location", "educated at",
                   "place of birth", "spouse", "author", "genre", "owned by", "subsidiary")


def cmd_step_cost(args) -> None:
    """Seconds per training step (forward + backward + optimizer step of ``--batch-docs``
    SemEval training sentences, one entity pair each) with 3 labels (one relation type:
    both directions + no_relation) and with 33 (16 types), the same sentences relabelled,
    in one process, interleaved, one torch thread; for ``label_scoring`` ``head`` (the
    default: one decoder pass scores every label) and ``sequence`` (the decoder scores
    each label's token sequence). Merged into re.json ``step_cost``."""
    import statistics

    import torch
    from spacy.lang.en import English
    from thinc.api import Adam

    from spacy_kbnlp.core.torch_io import set_seed
    from spacy_kbnlp.retrieval.render import directed

    torch.set_num_threads(args.threads)
    nlp = English()
    docs = subset(load(dataset_spec("semeval"), "train", nlp), "0.1")[: args.batch_docs * 4]
    egs = with_gold_entities(nlp, docs)

    def labelled(n_types: int):
        out, names = [], STEP_COST_TYPES[:n_types] if n_types > 1 else ("related to",)
        for i, eg in enumerate(egs):
            ref = eg.reference.copy()
            ref._.rel_records = [dict(r, label=names[i % len(names)]) for r in eg.reference._.rel_records or ()]
            out.append(type(eg)(eg.predicted, ref))
        labels = sorted({directed(n, (0, 1), (2, 3)) for n in names} | {directed(n, (2, 3), (0, 1)) for n in names})
        return out, labels + ["no_relation"]

    pipes = {}
    for scoring in args.scoring.split(","):
        for n_types in (1, 16):
            set_seed(0)
            p = English()
            pipe = p.add_pipe("etrag_relation_extractor", config={
                "scorer": None, "model": {"n_neighbors": args.n_neighbors, "label_scoring": scoring}})
            data, labels = labelled(n_types)
            pipe.initialize(lambda: data, nlp=p, labels=labels)
            pipes[(scoring, len(labels))] = (p, data, Adam(1e-5))
    times: Dict[tuple, List[float]] = {k: [] for k in pipes}
    for step in range(args.warmup + args.steps):
        for key, (p, data, opt) in pipes.items():  # interleaved: the same load on every cell
            batch = data[(step % 4) * args.batch_docs: (step % 4 + 1) * args.batch_docs]
            t = time.perf_counter()
            p.update(batch, sgd=opt, losses={})
            if step >= args.warmup:
                times[key].append(time.perf_counter() - t)
    out: Dict[str, Any] = {}
    for scoring in args.scoring.split(","):
        cell = {f"labels_{n}_s": round(statistics.median(times[(scoring, n)]), 3) for n in (3, 33)}
        cell["ratio_33_to_3"] = round(cell["labels_33_s"] / cell["labels_3_s"], 2)
        out[scoring] = cell
        print(scoring, cell, flush=True)
    default = "head" if "head" in out else next(iter(out))
    result = dict(out[default], label_scoring=default, by_scoring=out,
                  instances_per_step=args.batch_docs, n_neighbors=args.n_neighbors,
                  threads=args.threads, timed_steps=args.steps, statistic="median",
                  machine="shared 2-core CPU (no GPU), other jobs running",
                  date=time.strftime("%Y-%m-%d", time.gmtime()))
    merge_json(RESULT, {"step_cost": result}, depth=1)


def cmd_analyse(args) -> None:
    """Why retrieval helps or hurts: for a saved ETRAG pipeline (``train --save``) and
    its dataset's test instances, the soft neighbours' labels (the retrieval weights
    summed over the ``n_neighbors`` slots, over each candidate's label), against the
    gold and the predicted labels, and the size of the soft prompt next to the token
    embeddings. ``--split train``: the same on the run's training instances, each
    retrieving without its own sentence (leave-one-out, as in training), to compare how
    reliable the neighbours are in training and on unseen text. Written to
    ``re_runs/analysis_<run>[_train].json``."""
    from collections import defaultdict

    import numpy
    import spacy
    import torch

    from spacy_kbnlp.retrieval.render import NO_RELATION

    torch.set_num_threads(args.threads)
    spec = spec_from_args(args)
    name = run_name(spec["name"], args.fraction, "etrag", args.seed)
    nlp = spacy.load(args.model or ROOT / "training" / "re_bench" / name)
    pipe = nlp.get_pipe("etrag_relation_extractor")
    module = pipe.module
    module.eval()
    labels = list(pipe.labels)
    docs = load(spec, args.split, nlp)
    if args.split == "train":
        docs = subset(docs, args.fraction, args.seed)
    test = [eg.reference for eg in with_gold_entities(nlp, docs)]
    insts = [i for d in test for i in pipe.instances(d, gold=True)]
    gold = pipe._gold_rows(insts)
    mass = numpy.zeros((len(insts), len(labels)))
    prompt_norm, token_norm, preds = [], [], []
    with torch.no_grad():
        for b in range(0, len(insts), 32):
            chunk = insts[b: b + 32]
            ids, mask = module.tokenize([i["text"] for i in chunk])
            keys = [i["key"] for i in chunk]  # a sentence never retrieves itself (test: not in the bank)
            prompts, weights, cand = module.soft_prompts([i["text"] for i in chunk], ids, mask, keys)
            w = weights.sum(1)  # (B, C): weight of each candidate over the slots
            cand_labels = module.bank_labels[cand]  # (B, C)
            for r in range(len(chunk)):
                numpy.add.at(mass[b + r], cand_labels[r].cpu().numpy(), w[r].cpu().numpy())
            prompt_norm += prompts.norm(dim=-1).mean(-1).tolist()
            tok = module.seq2seq.get_input_embeddings()(ids)
            token_norm += ((tok.norm(dim=-1) * mask).sum(-1) / mask.sum(-1)).tolist()
            preds += module([i["text"] for i in chunk], keys).argmax(-1).tolist()
    mass /= mass.sum(1, keepdims=True)
    top = mass.argmax(1)
    gold_a, pred_a = numpy.array(gold), numpy.array(preds)
    neg = labels.index(NO_RELATION)
    by_label: Dict[str, Dict[str, Any]] = defaultdict(dict)
    for j, lab in enumerate(labels):
        by_label[lab] = {"gold": int((gold_a == j).sum()), "predicted": int((pred_a == j).sum()),
                         "neighbour_top": int((top == j).sum()),
                         "neighbour_mass": round(float(mass[:, j].mean()), 4)}
    out = {"run": name, "split": args.split, "instances": len(insts),
           "neighbour_mass_on_gold": round(float(mass[numpy.arange(len(insts)), gold_a].mean()), 4),
           "neighbour_top_is_gold": round(float((top == gold_a).mean()), 4),
           "prediction_is_gold": round(float((pred_a == gold_a).mean()), 4),
           "prediction_follows_neighbour_top": round(float((pred_a == top).mean()), 4),
           "when_neighbour_top_wrong": {
               "instances": int((top != gold_a).sum()),
               "prediction_is_gold": round(float((pred_a == gold_a)[top != gold_a].mean()), 4),
               "prediction_follows_neighbours": round(float((pred_a == top)[top != gold_a].mean()), 4)},
           "no_relation_gold_share": round(float((gold_a == neg).mean()), 4),
           "soft_prompt_norm": round(float(numpy.mean(prompt_norm)), 3),
           "token_embedding_norm": round(float(numpy.mean(token_norm)), 3),
           "by_label": dict(by_label)}
    write(f"analysis_{name}" + ("_train" if args.split == "train" else ""), out)
    print(json.dumps({k: v for k, v in out.items() if k != "by_label"}, indent=1))
    for lab, row in sorted(by_label.items(), key=lambda kv: -kv[1]["gold"]):
        print(f"  {lab:32s} {row}")


def mix_name(system: str, mix: float, knn: float = 0.0, k: int = 0, temperature: float = 0.05) -> str:
    """The cell of a saved run's test predictions at ``retrieval_mix = mix`` (and
    ``knn_mix = knn``, ``knn_k = k``, ``knn_temperature``): ``<system>_mix025`` for 0.25,
    ``<system>_mix100_knn025`` for lambda 1 with the neighbours' label vote at 0.25,
    ``<system>_mix100_knn050_k16_t030`` for the vote of the 16 nearest rows at temperature 0.03."""
    cell = f"{system}_mix{int(round(mix * 100)):03d}"
    if knn and k:
        cell += f"_knn{int(round(knn * 100)):03d}_k{k}_t{int(round(temperature * 1000)):03d}"
    elif knn:
        cell += f"_knn{int(round(knn * 100)):03d}"
    return cell


def gate_key(mix: float, knn: float = 0.0, k: int = 0, temperature: float = 0.05) -> str:
    """The key of a (retrieval_mix, knn_mix[, knn_k, knn_temperature]) setting in a gate
    summary: the lambda alone (``"0.25"``) without the vote, as before the vote existed;
    ``"0.25+knn0.1"`` (the soft neighbours' vote); ``"1.0+knn0.5+k16t0.03"``."""
    key = f"{mix}" + (f"+knn{knn}" if knn else "")
    return key + (f"+k{k}t{temperature}" if knn and k else "")


def vote_key(k: int, temperature: float) -> str:
    """A vote setting in a gate summary: ``"soft"`` (the soft neighbours, ``knn_k`` 0) or
    ``"k16t0.03"``."""
    return f"k{k}t{temperature}" if k else "soft"


def cmd_gate(args) -> None:
    """The trust gate chosen on the dev split: for every seed's saved pipeline of
    ``--system`` (``train --save``), the label scores with and without the neighbours
    (``score_instances``, ``no_prompts``) and, with ``--knn-mixes`` above 0, the
    neighbours' label vote (``neighbour_votes``) of the dev and the test instances,
    once; for each setting of ``--lambdas`` x ``--knn-mixes`` the predictions
    (``mix_scores``, then ``knn_mix_scores``: what ``retrieval_mix`` and ``knn_mix``
    predict) and their F1. ``--knn-ks`` above 0 (with ``--knn-temperatures``) add the votes of
    the ``knn_k`` nearest bank rows (``knn_k``, ``knn_temperature``; the queries are embedded
    once). The setting with the best mean dev F1 over the seeds is chosen (ties: less vote,
    then less mixing, then the soft neighbours' vote, fewer rows, a higher temperature; the
    test split never chooses); test predictions are written as the run files of the cells
    ``<system>_mix<lambda>[_knn<mu>]`` (every setting with the soft neighbours' vote,
    ``knn_k`` 0) and ``<system>_gate`` (the chosen one), the dev and test F1 of every
    setting to ``re_runs/gate_<dataset>_<fraction>_<system>.json``, with the vote's own
    accuracy (its top label against the gold label of each instance) by vote setting."""
    import statistics

    import numpy
    import spacy
    import torch

    from spacy_kbnlp.pipeline.etrag_relation_extractor import knn_mix_scores, mix_scores
    from spacy_kbnlp.scorers import rel as rel_scorer

    torch.set_num_threads(args.threads)
    spec = spec_from_args(args)
    lambdas = [float(x) for x in args.lambdas.split(",")]
    knns = [float(x) for x in args.knn_mixes.split(",")]
    ks = [int(x) for x in str(args.knn_ks).split(",")]
    temps = [float(x) for x in str(args.knn_temperatures).split(",")]
    votes_by = [(k, t) for k in ks for t in (temps if k else temps[:1])]  # (knn_k, knn_temperature)
    settings = [(lam, knn) + (vt if knn else (0, temps[0]))
                for knn in knns for vt in (votes_by if knn else votes_by[:1]) for lam in lambdas]
    seeds = [int(x) for x in str(args.seeds).split(",")]
    f1: Dict[str, Dict[str, Dict[int, float]]] = {"dev": {}, "test": {}}
    vote_acc: Dict[str, Dict[str, Dict[int, float]]] = {"dev": {}, "test": {}}
    test_preds: Dict[int, Dict[tuple, List]] = {}
    runs: Dict[int, Dict[str, Any]] = {}
    for seed in seeds:
        name = run_name(spec["name"], args.fraction, args.system, seed)
        nlp = spacy.load(Path(args.models or ROOT / "training" / "re_bench") / name)
        pipe = nlp.get_pipe("etrag_relation_extractor")
        runs[seed] = json.loads((RUNS / f"{name}.json").read_text())
        for split in ("dev", "test"):
            gold = load(spec, split, nlp)
            docs = [eg.predicted for eg in with_gold_entities(nlp, gold)]
            per_doc = [pipe.instances(d, gold=False) for d in docs]
            flat = [i for insts in per_doc for i in insts]
            t = time.perf_counter()
            # (with lambda 1 alone, the pass with the neighbours is not needed)
            with_n = pipe.score_instances(flat) if any(lam < 1 for lam in lambdas) else None
            # as predict does: with a vote, the pass with the prompts hidden also gives the queries
            # (lambda > 0); at lambda 0 the vote embeds its own
            queries = {}
            if any(knns):
                without, queries[True] = pipe.scores_without_prompts(flat)
                if 0 in lambdas:
                    queries[False] = pipe.vote_queries(flat)
            else:
                without = pipe.score_instances(flat, no_prompts=True)
            votes = {(vt, shared): pipe.neighbour_votes(flat, queries=q, knn_k=vt[0], knn_temperature=vt[1])
                     for vt in votes_by for shared, q in queries.items()}
            print(f"  {name} {split}: {len(docs)} docs, passes {time.perf_counter() - t:.0f} s", flush=True)
            truth = [i["label"] for d in gold for i in pipe.instances(d, gold=True)]
            for (vt, shared), v in votes.items():
                if len(truth) == len(flat) and shared == max(queries):
                    top = [pipe.labels[j] for j in v.argmax(1)]
                    vote_acc[split].setdefault(vote_key(*vt), {})[seed] = round(
                        100 * float(numpy.mean([a == b for a, b in zip(top, truth)])), 2)
            for lam, knn, k, temp in settings:
                scores, preds, pos = mix_scores(with_n, without, lam), [], 0
                if knn:
                    scores = knn_mix_scores(scores, votes[((k, temp), lam > 0)], knn)
                for doc, insts in zip(docs, per_doc):
                    pipe.set_annotations([doc], [(insts, scores[pos: pos + len(insts)])])
                    preds.append(list(doc._.rel_records or []))
                    pos += len(insts)
                f1[split].setdefault(gate_key(lam, knn, k, temp), {})[seed] = score_predictions(
                    rel_scorer, spec["scorer"], gold, preds)
                if split == "test":
                    test_preds.setdefault(seed, {})[(lam, knn, k, temp)] = preds
            print(f"  {name} {split} F1 by setting: " +
                  ", ".join(f"{gate_key(*st)}: {f1[split][gate_key(*st)][seed]}" for st in settings), flush=True)
    dev_mean = {st: statistics.mean(f1["dev"][gate_key(*st)].values()) for st in settings}
    # ties: less vote, less mixing, the soft neighbours' vote, fewer rows, a higher temperature
    chosen = max(settings, key=lambda st: (dev_mean[st], -st[1], -st[0], -st[2], st[3]))
    written = [(st, mix_name(args.system, *st)) for st in settings if not st[2]]
    for seed in seeds:
        for st, cell in written + [(chosen, f"{args.system}_gate")]:
            run = {k: v for k, v in runs[seed].items() if k not in ("predictions", "losses", "date")}
            run.update(system=cell, retrieval_mix=st[0], knn_mix=st[1], trained_as=args.system,
                       predictions=test_preds[seed][st])
            if st[1] and st[2]:
                run.update(knn_k=st[2], knn_temperature=st[3])
            write(run_name(spec["name"], args.fraction, cell, seed), run)
    summary = {"dataset": spec["name"], "fraction": args.fraction, "system": args.system, "seeds": seeds,
               "lambdas": lambdas, "knn_mixes": knns, "chosen_on": "dev", "retrieval_mix": chosen[0],
               "knn_mix": chosen[1],
               **({"knn_ks": ks, "knn_temperatures": temps, "knn_k": chosen[2], "knn_temperature": chosen[3]}
                  if any(ks) else {}),
               "dev_split": spec.get("dev"), "dev_id_mod": spec.get("id_mod", {}).get("dev"),
               "dev_f1_by_lambda": {k: [v[s] for s in seeds] for k, v in f1["dev"].items()},
               "dev_f1_mean_by_lambda": {gate_key(*st): round(v, 2) for st, v in dev_mean.items()},
               "test_f1_by_lambda": {k: [v[s] for s in seeds] for k, v in f1["test"].items()},
               "test_f1_mean_by_lambda": {k: round(statistics.mean(v.values()), 2) for k, v in f1["test"].items()}}
    if vote_acc["dev"] or vote_acc["test"]:
        shown = vote_key(*chosen[2:]) if chosen[1] else vote_key(0, temps[0])
        summary["vote_accuracy"] = {split: [v.get(shown, {}).get(s) for s in seeds] for split, v in vote_acc.items()}
        if any(ks):
            summary["vote_accuracy_by_vote"] = {split: {key: [by.get(s) for s in seeds] for key, by in v.items()}
                                                for split, v in vote_acc.items()}
    write(f"gate_{spec['name']}_{args.fraction}_{args.system}", summary)
    print(json.dumps(summary, indent=1))


def cmd_infer_speed(args) -> None:
    """Test docs/s of a gated cell's saved run (``--system``, with the ``retrieval_mix`` and
    ``knn_mix`` its gate chose on dev, and with the vote alone: lambda 1, the same
    ``knn_mix``) against the baseline it was trained from (``--baseline``), one seed, in one
    process on the same machine (one warm-up batch each); written to
    ``re_runs/infer_speed_<dataset>_<fraction>_<system>_s<seed>.json`` (``collect``:
    re.json ``speed``)."""
    import spacy
    import torch

    torch.set_num_threads(args.threads)
    spec = spec_from_args(args)
    gate = json.loads((RUNS / f"gate_{spec['name']}_{args.fraction}_{args.system}.json").read_text())
    models = Path(args.models or ROOT / "training" / "re_bench")
    pipe_name = "components.etrag_relation_extractor"
    vote = {f"{pipe_name}.knn_mix": gate.get("knn_mix", 0.0)}
    vote.update({f"{pipe_name}.{k}": gate[k] for k in ("knn_k", "knn_temperature") if k in gate})
    settings = {
        args.baseline: (args.baseline, {}),
        f"{args.system}_gate": (args.system, dict(vote, **{f"{pipe_name}.retrieval_mix": gate["retrieval_mix"]})),
        f"{args.system}_vote_only": (args.system, dict(vote, **{f"{pipe_name}.retrieval_mix": 1.0}))}
    out: Dict[str, Any] = {"dataset": spec["name"], "fraction": args.fraction, "seed": args.seed,
                           "threads": args.threads,
                           "gate": {k: gate[k] for k in ("retrieval_mix", "knn_mix", "knn_k", "knn_temperature")
                                    if k in gate}}
    for label, (cell, config) in settings.items():
        nlp = spacy.load(models / run_name(spec["name"], args.fraction, cell, args.seed), config=config)
        docs = [eg.predicted for eg in with_gold_entities(nlp, load(spec, "test", nlp))]
        list(nlp.pipe([d.copy() for d in docs[:16]]))  # warm-up (and the bank's first refresh)
        t = time.perf_counter()
        list(nlp.pipe([d.copy() for d in docs], batch_size=64))
        sec = time.perf_counter() - t
        out[label] = {"docs": len(docs), "s": round(sec, 2), "docs_per_s": round(len(docs) / sec, 2)}
        print(label, out[label], flush=True)
    base = out[args.baseline]["docs_per_s"]
    for label in settings:
        out[label]["ratio_to_baseline"] = round(out[label]["docs_per_s"] / base, 3)
    write(f"infer_speed_{spec['name']}_{args.fraction}_{args.system}_s{args.seed}", out)


def cmd_collect(args) -> None:
    """Score every saved run (``re_runs/<dataset>_<fraction>_<system>[_s<seed>].json``)
    against its dataset's test docs and merge ``benchmarks/results/re.json``: per cell
    ``f1`` = the mean over the seeds, ``f1_seeds`` = the scores by seed (in seed order),
    ``f1_std`` = their standard deviation (population; 0 for one seed)."""
    import statistics

    from spacy.lang.en import English

    from spacy_kbnlp.scorers import rel as rel_scorer

    nlp = English()
    result: Dict[str, Any] = {}
    speed: Dict[str, Any] = {}
    cells: Dict[tuple, Dict[int, float]] = {}
    gold_cache: Dict[str, List] = {}
    for path in sorted(RUNS.glob("*.json")):
        run = json.loads(path.read_text())
        if "predictions" not in run or "dataset" not in run:
            continue
        dataset = run["dataset"]
        spec = run.get("data") or dataset_spec(dataset)
        if dataset not in gold_cache:
            gold_cache[dataset] = load(dict(spec, name=dataset), "test", nlp)
        gold = gold_cache[dataset]
        if len(run["predictions"]) < len(gold):
            print("skip (fewer test docs than the test cut):", path.name)
            continue
        # every run predicted the test docs in file order: score the first test_limit
        f1 = score_predictions(rel_scorer, spec["scorer"], gold, run["predictions"][:len(gold)])
        cells.setdefault((dataset, run["fraction"], run["system"]), {})[int(run.get("seed", 0))] = f1
        if "trained_as" in run:  # re.py gate: another mix of a trained run's scores, no training
            continue
        speed[path.stem] = {k: run[k] for k in ("train_s", "infer_s", "docs_per_s", "steps",
                                                "train_docs", "train_instances", "lr",
                                                "fresh_lr_scale", "token_loss_weight",
                                                "negative_ratio", "label_scoring", "batch_docs",
                                                "neighbour_label_noise", "retrieval_dropout",
                                                "retrieval_mix", "warm_lr_scale", "pooling",
                                                "threads", "seed", "date") if k in run}
    for (dataset, fraction, system), by_seed in cells.items():
        scores = [by_seed[s] for s in sorted(by_seed)]
        result.setdefault(dataset, {}).setdefault(fraction, {})[system] = {
            "f1": round(statistics.mean(scores), 2), "f1_seeds": scores,
            "seeds": sorted(by_seed), "f1_std": round(statistics.pstdev(scores), 2)}
    lm = label_match_file("semeval", "1.0")
    if lm.exists():
        data = {k: v for k, v in json.loads(lm.read_text()).items() if isinstance(v, dict)}
        # label_match_at_5: directed (the direction counts), as in the earlier runs
        result["label_match_at_5"] = {k: v["share"] for k, v in data.items()}
        undirected = {k: v["share_undirected"] for k, v in data.items() if "share_undirected" in v}
        if undirected:  # the same store, a demonstration counts with the relation type alone
            result["label_match_at_5_undirected"] = undirected
        # timings are dated: a later label-match run adds its own key, the earlier one stays
        date = json.loads(lm.read_text()).get("date")
        key = "retrieval_ms_per_doc" + (f"_{date.replace('-', '_')}" if date else "")
        speed[key] = {k: v["ms_per_doc"] for k, v in data.items()}
    for path in sorted(RUNS.glob("label_match_*_*.json")):
        data = {k: v for k, v in json.loads(path.read_text()).items() if isinstance(v, dict)}
        store = path.stem[len("label_match_"):]
        result.setdefault("label_match_at_5_by_store", {})[store] = {
            "directed": {k: v["share"] for k, v in data.items()},
            "undirected": {k: v.get("share_undirected") for k, v in data.items()}}
    for gate in sorted(RUNS.glob("gate_*.json")):  # re.py gate: lambda chosen on dev, F1 by lambda
        g = json.loads(gate.read_text())
        cell = result.get(g["dataset"], {}).get(g["fraction"], {}).get(f"{g['system']}_gate")
        if cell is not None:
            cell.update({k: g[k] for k in ("retrieval_mix", "knn_mix", "knn_k", "knn_temperature", "chosen_on",
                                            "dev_f1_mean_by_lambda", "test_f1_mean_by_lambda", "vote_accuracy")
                         if k in g})
    for path in sorted(RUNS.glob("infer_speed_*.json")):  # re.py infer-speed
        speed[path.stem] = json.loads(path.read_text())
    for ruie in sorted(RUNS.glob("ruie*.json")):  # ruie (model preference), ruie_label, ruie_mixed
        speed[ruie.stem] = json.loads(ruie.read_text())
    speed["machine"] = ("shared 2-core CPU (no GPU); torch threads per run: `threads` in "
                        "re_runs/<run>.json (absent = 2, the runs before the sequence-level loss)")
    result["speed"] = speed
    # dataset -> fraction -> system: results of runs whose file is gone stay
    result = merge_json(RESULT, result, depth=3)
    print(json.dumps({k: v for k, v in result.items() if k != "speed"}, indent=1))


def score_predictions(rel_scorer, scorer: str, gold: List, predictions: List[List[Dict]]) -> float:
    """``semeval``: the official SemEval-2010 Task 8 score (macro-F1 over the 9
    relations, direction counted, Other excluded); ``micro``: given-entity relation
    micro-F1; ``macro``: the mean per-label F1 over the gold relation labels. All x100.
    (The scorer names of the earlier runs, ``semeval`` and ``conll04``, still work.)"""
    pairs = []
    for doc, recs in zip(gold, predictions):
        pred = doc.copy()
        pred._.rel_records = [dict(r) for r in recs]
        pairs.append((doc, pred))
    if scorer == "semeval":
        return round(100 * rel_scorer.score_relation_docs(pairs, semeval=True)["rel_semeval_f"], 2)
    if scorer == "macro":
        per = rel_scorer.score_relation_docs(pairs, per_label=True)["rel_per_label"]
        gold_labels = [lab for lab, c in per.items() if c["tp"] + c["fn"] > 0]
        return round(100 * sum(per[lab]["f"] for lab in gold_labels) / max(1, len(gold_labels)), 2)
    return round(100 * rel_scorer.score_relation_docs(pairs)["rel_micro_f"], 2)


def status_rows(res: Dict[str, Any]) -> List[Dict[str, str]]:
    """The status table's relation-extraction rows (``benchmarks/status.py``): ETRAG
    against the same backbone without retrieval, on SemEval with 10 % and all of the
    training data, with the test docs/s ratio of the two runs."""
    rows = []
    for frac, share in (("1.0", "all"), ("0.1", "10 %")):
        runs = res.get("semeval", {}).get(frac, {})
        if "etrag" not in runs or "baseline" not in runs:
            continue
        ours, alt = (res.get("speed", {}).get(f"semeval_{frac}_{s}", {}) for s in ("etrag", "baseline"))
        speed = (f"{ours['docs_per_s'] / alt['docs_per_s']:.2f}x docs/s ({ours['docs_per_s']:.1f} vs "
                 f"{alt['docs_per_s']:.1f})" if "docs_per_s" in ours and "docs_per_s" in alt else "")
        rows.append({"component": "`etrag_relation_extractor`",
                     "task": f"SemEval-2010 Task 8 ({NAMED['semeval']['test_limit']} test sentences), {share} of the "
                             f"training data, {ours.get('steps', '?')} steps: official score",
                     "ours": _cell(runs, "etrag"),
                     "alternative": f"same backbone, no retrieval: {_cell(runs, 'baseline')}",
                     "speed": speed,
                     "measured": f"{ours.get('date', '?')}, 2-core CPU, {ours.get('threads', 2)} thread"})
    # two stages: ETRAG started from the trained baseline, against the baseline trained as long
    # (SemEval: sequence scoring; CoNLL04: head scoring, negative_ratio 1, cells tagged "head")
    for dataset, tag, task, metric in (
            ("semeval", "", f"SemEval-2010 Task 8 ({NAMED['semeval']['test_limit']} test sentences)", "official score"),
            ("conll04", "_head", f"CoNLL04 (first {NAMED['conll04']['test_limit']} test sentences, gold entities)",
             "relation micro-F1")):
        for frac, share in (("1.0", "all"), ("0.1", "10 %")):
            for adapter in (False, True):
                row = _two_stage_row(res, dataset, frac, tag, f"{task}, {share} of the training data", metric,
                                     adapter=adapter)
                if row is not None:
                    rows.append(row)
    # the label vote of the nearest training instances on the trained baseline (no training):
    # against that same baseline
    for dataset, frac, share, ours, alt, chain in VOTE_ROWS:
        task = {"semeval": (f"SemEval-2010 Task 8 ({NAMED['semeval']['test_limit']} test sentences)", "official score"),
                "conll04": (f"CoNLL04 (first {NAMED['conll04']['test_limit']} test sentences, gold entities)",
                            "relation micro-F1")}[dataset]
        row = _vote_row(res, dataset, frac, ours, alt, chain, f"{task[0]}, {share} of the training data", task[1])
        if row is not None:
            rows.append(row)
    return rows


#: (dataset, fraction, share, the vote's gated cell, the baseline it votes on, the runs whose
#: steps trained that baseline)
VOTE_ROWS = (("semeval", "1.0", "all", "etrag_pairvote_gate", "baseline_from_base",
              ("baseline_ckpt", "baseline_from_base")),
             ("semeval", "0.1", "10 %", "etrag_long_pairvote_gate", "baseline_long",
              ("baseline_ckpt", "baseline_from_base", "baseline_long")),
             ("conll04", "0.1", "10 %", "etrag_head_pairvote_gate", "baseline_head_from_base",
              ("baseline_head_ckpt", "baseline_head_from_base")))


def _vote_row(res: Dict[str, Any], dataset: str, frac: str, ours: str, alt: str, chain: Sequence[str],
              task: str, metric: str) -> Optional[Dict[str, str]]:
    """A status row for the vote on a trained baseline (``re.py gate`` of a one-step frozen
    adapter with ``pooling`` pair): the gated cell ``ours`` against the baseline ``alt`` it
    votes on, trained for the steps of the runs ``chain``; None without both cells."""
    runs = res.get(dataset, {}).get(frac, {})
    if ours not in runs or alt not in runs:
        return None
    speed = res.get("speed", {})
    steps = " + ".join(str(speed.get(f"{dataset}_{frac}_{c}", {}).get("steps", "?")) for c in chain)
    cell = runs[ours]
    vote = (f"retrieval_mix {cell.get('retrieval_mix', '?')}, knn_mix {cell.get('knn_mix', '?')}, "
            f"knn_k {cell.get('knn_k', 0)}" + (f" at temperature {cell['knn_temperature']}" if cell.get("knn_k") else ""))
    system = ours[: -len("_gate")]
    measured = speed.get(f"infer_speed_{dataset}_{frac}_{system}_s0", {})
    timed = measured.get(ours, {})
    return _etrag_row("`etrag_relation_extractor`, the nearest training instances' label vote on the trained "
                      "baseline (`pooling` pair, no training)",
                      f"{task}, the baseline's {steps} steps, {vote} chosen on dev: {metric}", runs, ours,
                      "the same baseline, no retrieval: ", alt, measured, timed, speed, f"{dataset}_{frac}_{system}")


def _etrag_row(component: str, task: str, runs: Dict[str, Any], ours: str, alternative: str, alt: str,
               measured: Dict[str, Any], timed: Dict[str, Any], speed: Dict[str, Any], run: str) -> Dict[str, str]:
    """One ETRAG status row: the cells ``ours`` and ``alt`` of ``runs``, the speed ratio of an
    ``infer-speed`` run (``measured``, ``timed``: ours in it), and the days (first to last,
    over the seeds: ``<run>`` and ``<run>_s<n>`` in ``speed``) and threads of the run ``run``."""
    days = sorted({v["date"] for k, v in speed.items() if isinstance(v, dict) and "date" in v
                   and (k == run or (k.startswith(run + "_s") and k[len(run) + 2:].isdigit()))})
    first = speed.get(run, {})
    return {"component": component, "task": task, "ours": _cell(runs, ours),
            "alternative": alternative + _cell(runs, alt),
            "speed": (f"{timed['ratio_to_baseline']:.2f}x docs/s ({timed['docs_per_s']:.1f} vs "
                      f"{measured[alt]['docs_per_s']:.1f}, seed 0)" if timed and alt in measured else ""),
            "measured": f"{' to '.join(sorted({days[0], days[-1]})) if days else '?'}, 2-core CPU, "
                        f"{first.get('threads', 2)} thread"}


def _two_stage_row(res: Dict[str, Any], dataset: str, frac: str, tag: str, task: str,
                   metric: str, adapter: bool = False) -> Optional[Dict[str, str]]:
    """A status row for the two-stage cells of one dataset and fraction: ETRAG started from
    the saved baseline (``baseline<tag>_ckpt``) with the gate chosen on dev
    (``etrag<tag>_from_base_gate``) against the baseline trained on as long without
    retrieval (``baseline<tag>_from_base``); None without both cells. The row's task is
    ``task``, the steps of both stages, the chosen ``retrieval_mix`` and ``metric``.
    ``adapter``: instead, the retrieval path trained on the frozen baseline trained as long
    (``etrag<tag>_adapter_gate``, ``warm_lr_scale`` 0), with its steps and ``knn_mix``."""
    runs = res.get(dataset, {}).get(frac, {})
    ours = f"etrag{tag}_adapter_gate" if adapter else f"etrag{tag}_from_base_gate"
    alt = f"baseline{tag}_from_base"
    if ours not in runs or alt not in runs:
        return None
    speed = res.get("speed", {})
    stage1 = speed.get(f"{dataset}_{frac}_baseline{tag}_ckpt", {})
    run = f"{dataset}_{frac}_{'baseline' if adapter else 'etrag'}{tag}_from_base"
    stage2 = speed.get(run, {})
    steps = f"{stage1.get('steps', '?')} + {stage2.get('steps', '?')} steps"
    gate = f"retrieval_mix {runs[ours].get('retrieval_mix', '?')}"
    component = "`etrag_relation_extractor` started from the trained baseline (`init_from`)"
    if adapter:
        run = f"{dataset}_{frac}_etrag{tag}_adapter"
        stage2 = speed.get(run, {})
        steps += f", then {stage2.get('steps', '?')} steps of the retrieval path alone"
        gate += f" and knn_mix {runs[ours].get('knn_mix', '?')}"
        component = "`etrag_relation_extractor`, retrieval adapter on the frozen baseline (`warm_lr_scale` 0)"
    measured = speed.get(f"infer_speed_{dataset}_{frac}_etrag{tag}_adapter_s0", {}) if adapter else {}
    timed = measured.get(f"etrag{tag}_adapter_gate", {})
    return _etrag_row(component, f"{task}, {steps}, {gate} chosen on dev: {metric}", runs, ours,
                      "the baseline trained on as long, no retrieval: ", alt, measured, timed, speed, run)


TITLES = {"semeval": "SemEval-2010 Task 8, official score (macro-F1 x100)",
          "conll04": "CoNLL04, given gold entities, relation micro-F1 (x100)"}
SYSTEMS = ("baseline", "etrag", "knn")


def _cell(row: Dict[str, Any], system: str) -> str:
    if system not in row:
        return "not run"
    cell = row[system]
    seeds = cell.get("f1_seeds") or [cell["f1"]]
    if len(seeds) > 1:
        return f"{cell['f1']:.1f} ± {cell.get('f1_std', 0):.1f} ({len(seeds)} seeds)"
    return f"{cell['f1']:.1f}"


def cmd_table(args) -> None:
    """Print the Markdown tables of benchmarks/results/re.json (every dataset in it;
    a cell: mean ± standard deviation over the seeds)."""
    res = json.loads(RESULT.read_text())
    skip = {"speed", "label_match_at_5", "label_match_at_5_undirected", "label_match_at_5_by_store",
            "step_cost"}
    for dataset in [d for d in res if d not in skip and isinstance(res[d], dict)]:
        title = TITLES.get(dataset, f"{dataset}, relation F1 (x100; scorer as recorded in re_runs)")
        print(f"\n{title}\n\n| train fraction | baseline | ETRAG | kNN |\n|---|---|---|---|")
        fracs = sorted(res[dataset], key=float)
        speed = res.get("speed", {})
        for frac in fracs:
            row = res[dataset][frac]
            # † = a run of this code (head label scoring, negative sampling as recorded)
            marks = {s: " †" if speed.get(run_name(dataset, frac, s), {}).get("label_scoring") == "head"
                     else "" for s in SYSTEMS}
            print(f"| {frac} | " + " | ".join(_cell(row, s) + marks[s] for s in SYSTEMS) + " |")
        extra = sorted({s for frac in fracs for s in res[dataset][frac] if s not in SYSTEMS})
        for frac in fracs:
            for s in extra:
                if s in res[dataset][frac]:
                    print(f"\n{dataset} {frac} {s}: {_cell(res[dataset][frac], s)}")
    runs = [(k, v) for k, v in res.get("speed", {}).items() if isinstance(v, dict) and "steps" in v]
    if runs:
        print("\nTrained runs (train seconds include initialize and the final bank refresh)\n\n"
              "| run | train docs | steps | lr (fresh x) | threads | train s | test docs/s |\n"
              "|---|---|---|---|---|---|---|")
        for k, v in runs:
            lr = f"{v['lr']:g} (x{v.get('fresh_lr_scale', 1):g})" if "lr" in v else "?"
            print(f"| {k} | {v.get('train_docs', '?')} | {v['steps']} | {lr} | {v.get('threads', 2)} | "
                  f"{v['train_s']:.0f} | {v['docs_per_s']:.1f} |")
    if "label_match_at_5" in res:
        und = res.get("label_match_at_5_undirected", {})
        print("\nLabel match@5 (SemEval test queries, full training store; directed = the same "
              "relation and direction, undirected = the same relation type)\n\n"
              "| retriever | directed | undirected |\n|---|---|---|")
        for k, v in res["label_match_at_5"].items():
            u = f"{und[k]:.3f}" if k in und else "not run"
            print(f"| {k} | {v:.3f} | {u} |")
    for store, by in res.get("label_match_at_5_by_store", {}).items():
        print(f"\nLabel match@5, store {store} (test queries; directed / undirected)\n\n"
              "| retriever | directed | undirected |\n|---|---|---|")
        for k, v in by.get("directed", {}).items():  # 4 decimals: 0.5995 is not 0.600
            u = by.get("undirected", {}).get(k)
            print(f"| {k} | {v:.4f} | {'not run' if u is None else f'{u:.4f}'} |")
    if "step_cost" in res:
        print("\nSeconds per training step (16 instances)\n")
        print(json.dumps(res["step_cost"], indent=1))


def _dataset_args(p, default: Optional[str] = None) -> None:
    p.add_argument("--dataset", default=default, required=default is None,
                   help="semeval, conll04 or a folder with train/dev/test files (.jsonl or .spacy)")
    p.add_argument("--train", default=None, help="training file/folder (instead of a dataset folder)")
    p.add_argument("--dev", default=None)
    p.add_argument("--test", default=None)
    p.add_argument("--name", default=None, help="dataset name in the run files (default: folder name)")
    p.add_argument("--format", default="auto", help="reader format of a path dataset (auto: by suffix)")
    p.add_argument("--scorer", default=None, choices=SCORERS,
                   help="semeval (official), micro or macro relation F1 (default: semeval for SemEval, else micro)")
    p.add_argument("--test-limit", type=int, default=None, help="cut the test set (0 = all)")


def main() -> None:
    from spacy_kbnlp.retrieval.ruie import NEGATIVES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    _dataset_args(t)
    t.add_argument("--fractions", default="0.1,0.01,0.05,1.0")
    t.add_argument("--systems", default="baseline,etrag")
    t.add_argument("--seeds", default="0", help="comma-separated seeds: subset, initialisation, order")
    t.add_argument("--batch-docs", type=int, default=0, help="docs per batch (0 = the dataset's: 16, CoNLL04 4)")
    t.add_argument("--lr", type=float, default=1e-4, help="learning rate of the pretrained weights")
    t.add_argument("--fresh-lr-scale", type=float, default=10.0,
                   help="lr multiplier of the untrained parameters (cross-attention, label embeddings, value)")
    t.add_argument("--token-loss-weight", type=float, default=0.5,
                   help="weight of the token-level NLL next to the sequence-level cross-entropy")
    t.add_argument("--negative-ratio", type=float, default=None,
                   help="no_relation instances per relation instance in a batch (0 = all; default: the "
                        "component's, 1)")
    t.add_argument("--label-scoring", default=None, choices=("head", "sequence"),
                   help="default: the component's (sequence)")
    t.add_argument("--neighbour-label-noise", type=float, default=None,
                   help="share of retrieved neighbours whose label is replaced in training (default: "
                        "the architecture's, 0)")
    t.add_argument("--retrieval-dropout", type=float, default=None,
                   help="probability that a training instance's soft prompts are hidden (default: the "
                        "architecture's, 0)")
    t.add_argument("--pooling", default=None, choices=("text", "pair"),
                   help="tokens of the retrieval embedding: all, or the marked pair and the words "
                        "between them (default: the architecture's, text)")
    t.add_argument("--threads", type=int, default=1, help="torch threads")
    t.add_argument("--warm-lr-scale", type=float, default=None,
                   help="lr multiplier of the weights copied by --init-from (0 = frozen: only the "
                        "retrieval path trains; default: the component's, 1)")
    t.add_argument("--init-from", default=None,
                   help="start from the weights of a saved pipeline: a folder, or a saved cell's name "
                        "(e.g. baseline_ckpt: its run of the same seed under training/re_bench); the "
                        "component's [initialize] init_from")
    t.add_argument("--steps", type=int, default=0,
                   help="optimizer steps (0 = STEPS table); the run stops at min(epochs x batches, steps)")
    t.add_argument("--epochs", type=int, default=0, help="epoch cap (0 = EPOCHS table, e.g. 6 at 10 %%)")
    t.add_argument("--save", action="store_true", help="keep the pipelines under training/re_bench")
    t.add_argument("--force", action="store_true")
    t.add_argument("--tag", default="",
                   help="suffix of the system name for runs with other settings (cell SYSTEM_TAG)")
    t.add_argument("--runs", default=None,
                   help="folder of the run files (default: benchmarks/results/re_runs); another folder, "
                        "e.g. to rebuild the saved pipelines (--save) of committed runs without "
                        "rewriting their files (compare the two to check the rebuild)")
    k = sub.add_parser("knn")
    _dataset_args(k)
    k.add_argument("--fractions", default="0.01,0.05,0.1,1.0")
    k.add_argument("--k", type=int, default=5)
    r = sub.add_parser("ruie")
    _dataset_args(r, "semeval")
    r.add_argument("--fraction", default="0.1", help="the demonstration store (of label-match) and, unless "
                   "--train-fraction, the training data")
    r.add_argument("--train-fraction", default=None,
                   help="share of the training split that trains the retriever (queries and candidate store; "
                        "default: --fraction), e.g. 1.0 while the store stays at --fraction")
    r.add_argument("--queries", type=int, default=300, help="training docs used as queries (0 = all)")
    r.add_argument("--candidates", type=int, default=12)
    r.add_argument("--reward-steps", type=int, default=100, help="0 = no reward model, no KL term")
    r.add_argument("--bi-steps", type=int, default=150)
    r.add_argument("--batch-size", type=int, default=8, help="queries per step")
    r.add_argument("--preference", default="model", choices=("model", "label", "mixed"),
                   help="model: the saved ETRAG model's log-likelihood (retriever 'ruie'); label: the "
                        "gold labels of the training queries ('ruie_label'); mixed: label + --weight x "
                        "the standardised model preference ('ruie_mixed')")
    r.add_argument("--weight", type=float, default=0.1, help="mixed: weight of the model preference")
    r.add_argument("--lr", type=float, default=2e-5, help="learning rate of the reward model and the bi-encoder")
    r.add_argument("--tag", default="", help="suffix of the retriever name for runs with other settings")
    r.add_argument("--model", default=None, help="ETRAG pipeline (default: training/re_bench/<run>)")
    r.add_argument("--model-seed", type=int, default=0, help="seed of the saved ETRAG run (model, mixed)")
    r.add_argument("--threads", type=int, default=1, help="torch threads")
    r.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop the bi-encoder cleanly after this many minutes (0 = none; the steps run: "
                        "bi_steps_done)")
    r.add_argument("--init-encoder", default=None,
                   help="start the bi-encoder (and reward model) from this encoder folder, e.g. "
                        "training/ruie_label_full/encoder, instead of the bundled MiniLM")
    r.add_argument("--negatives", default="least", choices=NEGATIVES,
                   help="each query's negatives: the least preferred candidates, or the most preferred "
                        "ones below the positive (label preference: the opposite direction first)")
    m = sub.add_parser("label-match")
    _dataset_args(m, "semeval")
    m.add_argument("--fraction", default="1.0", help="share of the training docs in the store")
    m.add_argument("--seed", type=int, default=0, help="seed of the store subset")
    m.add_argument("--ruie-encoder", default=str(ROOT / "training" / "ruie" / "encoder"))
    m.add_argument("--force", action="store_true")
    a = sub.add_parser("analyse")
    _dataset_args(a, "semeval")
    a.add_argument("--fraction", default="0.1")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--model", default=None, help="pipeline folder (default: training/re_bench/<run>)")
    a.add_argument("--split", default="test", choices=("test", "train"),
                   help="train: the run's training instances, leave-one-out retrieval")
    c = sub.add_parser("step-cost")
    c.add_argument("--scoring", default="head,sequence", help="label_scoring settings to time")
    c.add_argument("--batch-docs", type=int, default=16)
    c.add_argument("--n-neighbors", type=int, default=4)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--warmup", type=int, default=2)
    c.add_argument("--steps", type=int, default=6)
    g = sub.add_parser("gate")
    _dataset_args(g, "semeval")
    g.add_argument("--fraction", default="0.1")
    g.add_argument("--system", default="etrag", help="the cell of the saved runs (e.g. etrag_rd05)")
    g.add_argument("--seeds", default="0,1,2")
    g.add_argument("--lambdas", default="0,0.25,0.5,0.75", help="retrieval_mix values to score on dev")
    g.add_argument("--knn-mixes", default="0",
                   help="knn_mix values to score on dev, each with every lambda (0 = no label vote)")
    g.add_argument("--knn-ks", default="0",
                   help="knn_k values of the vote (0 = the soft neighbours; k > 0: the k nearest bank rows)")
    g.add_argument("--knn-temperatures", default="0.05", help="knn_temperature values of the votes with knn_k > 0")
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--models", default=None, help="folder of the saved runs (default: training/re_bench)")
    g.add_argument("--runs", default=None, help="folder of the run files (default: benchmarks/results/re_runs)")
    v = sub.add_parser("infer-speed")
    _dataset_args(v, "semeval")
    v.add_argument("--fraction", default="0.1")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--system", default="etrag_adapter", help="the gated cell (re.py gate --system)")
    v.add_argument("--baseline", default="baseline_from_base", help="the saved cell it was trained from")
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--models", default=None, help="folder of the saved runs (default: training/re_bench)")
    sub.add_parser("collect")
    sub.add_parser("table")
    args = ap.parse_args()
    if getattr(args, "runs", None):
        global RUNS
        RUNS = Path(args.runs)
    {"train": cmd_train, "knn": cmd_knn, "ruie": cmd_ruie, "label-match": cmd_label_match,
     "collect": cmd_collect, "table": cmd_table, "step-cost": cmd_step_cost,
     "analyse": cmd_analyse, "gate": cmd_gate, "infer-speed": cmd_infer_speed}[args.cmd](args)


if __name__ == "__main__":
    main()
