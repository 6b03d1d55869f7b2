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
    python benchmarks/re.py label-match            # bm25, zero-shot MiniLM (+ ruie if trained)
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
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import merge_json  # noqa: E402  (merge by key, never drop others)

RUNS = ROOT / "benchmarks" / "results" / "re_runs"
RESULT = ROOT / "benchmarks" / "results" / "re.json"
FRACTIONS = ("0.01", "0.05", "0.1", "1.0")
EPOCHS = {"0.01": 30, "0.05": 10, "0.1": 6, "1.0": 1}
STEPS = {"0.01": 30, "0.05": 45, "0.1": 60, "1.0": 100}
# the test sets are cut to their first TEST_LIMIT documents (SemEval ids 8001-8300, the first
# 100 CoNLL04 test sentences) to fit the CPU budget of a shared 2-core machine
TEST_LIMIT = {"semeval": 300, "conll04": 100}


def data_dir() -> Path:
    import os

    return Path(os.environ.get("KBNLP_DATA_DIR", ROOT.parent / "shared" / "data"))


def load(dataset: str, split: str, nlp, full: bool = False):
    """Gold Docs: SemEval train = ids not divisible by 10 (dev = the others), test =
    TEST_FILE_FULL; CoNLL04 = the SpERT splits."""
    from spacy_kbnlp.readers import read_docs

    d = data_dir() / "re"
    if dataset == "semeval":
        if split == "test":
            return list(read_docs(d / "semeval2010_task8/testing_keys/TEST_FILE_FULL.TXT", "semeval2010",
                                  nlp, limit=0 if full else TEST_LIMIT["semeval"]))
        docs = list(read_docs(d / "semeval2010_task8/training/TRAIN_FILE.TXT", "semeval2010", nlp))
        keep = (lambda i: i % 10 != 0) if split == "train" else (lambda i: i % 10 == 0)
        return [doc for doc in docs if keep(int(doc._.source["id"]))]
    limit = TEST_LIMIT["conll04"] if split == "test" and not full else 0
    return list(read_docs(d / f"conll04/spert_format/conll04_{split}.json", "conll04", nlp, limit=limit))


def subset(docs: List, fraction: str, seed: int = 0) -> List:
    """Deterministic nested subsets: the first round(f * n) docs of one shuffle."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n = max(1, round(float(fraction) * len(docs)))
    return [docs[i] for i in sorted(order[:n])]


def with_gold_entities(nlp, gold_docs):
    """Prediction inputs: the gold tokens and entities, no relations."""
    from spacy_kbnlp.pipeline.etrag_relation_extractor import gold_entities_augmenter
    from spacy_kbnlp.readers.spans import make_example

    return [next(gold_entities_augmenter(nlp, make_example(nlp, d))) for d in gold_docs]


def write(name: str, data: Dict[str, Any]) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    data.setdefault("date", time.strftime("%Y-%m-%d", time.gmtime()))
    (RUNS / f"{name}.json").write_text(json.dumps(data, indent=1))


def train_one(dataset: str, fraction: str, system: str, *, batch_docs: int, lr: float,
              steps_cap: Optional[int], seed: int = 0, save_dir: Optional[Path] = None,
              n_neighbors: int = 4, threads: int = 1, token_loss_weight: float = 0.5,
              fresh_lr_scale: float = 10.0) -> Dict[str, Any]:
    import torch
    from spacy.lang.en import English
    from thinc.api import Adam, warmup_linear

    from spacy_kbnlp.core.torch_io import set_seed

    set_seed(seed)
    torch.set_num_threads(threads)
    nlp = English()
    train = subset(load(dataset, "train", nlp), fraction, seed)
    test = load(dataset, "test", nlp)
    egs = with_gold_entities(nlp, train)
    k = n_neighbors if system == "etrag" else 0
    pipe = nlp.add_pipe("etrag_relation_extractor", config={
        "scorer": None, "model": {"n_neighbors": k}, "token_loss_weight": token_loss_weight,
        "fresh_lr_scale": fresh_lr_scale})
    t0 = time.perf_counter()
    nlp.initialize(lambda: egs)
    n_batches = (len(egs) + batch_docs - 1) // batch_docs
    total = EPOCHS[fraction] * n_batches
    if steps_cap:
        total = min(total, steps_cap)
    opt = Adam(warmup_linear(lr, max(1, total // 10), total))
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
                print(f"  {dataset} {fraction} {system} step {step}/{total} loss "
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
    return {"dataset": dataset, "fraction": fraction, "system": system, "train_docs": len(train),
            "train_instances": len(pipe._bank), "steps": total, "batch_docs": batch_docs,
            "lr": lr, "fresh_lr_scale": fresh_lr_scale, "token_loss_weight": token_loss_weight,
            "threads": threads, "n_neighbors": k, "train_s": round(train_s, 1),
            "test_docs": len(test), "infer_s": round(infer_s, 1),
            "docs_per_s": round(len(test) / infer_s, 2), "final_loss": losses[-1] if losses else None,
            "predictions": preds}


def cmd_train(args) -> None:
    for fraction in args.fractions.split(","):
        for system in args.systems.split(","):
            name = f"{args.dataset}_{fraction}_{system}"
            if (RUNS / f"{name}.json").exists() and not args.force:
                print("skip", name)
                continue
            print("==", name, time.strftime("%H:%M:%S"), flush=True)
            save = ROOT / "training" / "re_bench" / name if args.save else None
            res = train_one(args.dataset, fraction, system, batch_docs=args.batch_docs
                            or (4 if args.dataset == "conll04" else 16), lr=args.lr,
                            steps_cap=args.steps or STEPS[fraction], save_dir=save,
                            threads=args.threads, token_loss_weight=args.token_loss_weight,
                            fresh_lr_scale=args.fresh_lr_scale)
            write(name, res)
            print("   done", name, res["train_s"], "s train,", res["docs_per_s"], "docs/s", flush=True)


def cmd_knn(args) -> None:
    from spacy.lang.en import English

    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.retrieval.knn import KNNRelationClassifier

    nlp = English()
    full = load(args.dataset, "train", nlp)
    test = load(args.dataset, "test", nlp)
    inputs = [eg.predicted for eg in with_gold_entities(nlp, test)]
    encoder = HFEncoder().load()
    for fraction in args.fractions.split(","):
        name = f"{args.dataset}_{fraction}_knn"
        t0 = time.perf_counter()
        knn = KNNRelationClassifier(encoder, k=args.k).fit(subset(full, fraction))
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        preds = [[dict(r) for r in recs] for recs in knn.predict_docs(inputs)]
        infer_s = time.perf_counter() - t1
        write(name, {"dataset": args.dataset, "fraction": fraction, "system": "knn", "k": args.k,
                     "train_s": round(train_s, 1), "infer_s": round(infer_s, 1),
                     "docs_per_s": round(len(inputs) / infer_s, 2), "predictions": preds})
        print(name, round(train_s, 1), round(infer_s, 1))


def cmd_ruie(args) -> None:
    """Train the RUIE retriever on the SemEval 10 % subset with the preference of the
    ETRAG model trained on that subset (``train --save``); queries = the first
    ``--queries`` docs of the subset, the store = the whole subset."""
    import spacy
    import torch

    from spacy_kbnlp.retrieval.ruie import RelationModelPreference, train_ruie
    from spacy_kbnlp.retrieval.store import DemoStore

    torch.set_num_threads(1)
    nlp = spacy.blank("en")
    train = subset(load("semeval", "train", nlp), args.fraction)
    etrag = spacy.load(ROOT / "training" / "re_bench" / f"semeval_{args.fraction}_etrag")
    pref = RelationModelPreference(etrag.get_pipe("etrag_relation_extractor"))
    store = DemoStore.from_docs(train)
    rng = random.Random(0)
    queries = rng.sample(train, min(args.queries, len(train)))
    meta = train_ruie(store, queries, pref, ROOT / "training" / "ruie", n_candidates=args.candidates,
                      reward_steps=args.reward_steps, bi_steps=args.bi_steps, batch_size=8,
                      show_progress=False, log=lambda m: print(" ", m, flush=True))
    meta["preference_model"] = f"etrag_relation_extractor trained on SemEval {args.fraction} (benchmarks/re.py train --save)"
    write("ruie", meta)
    print(meta)


def cmd_label_match(args) -> None:
    """Share of the top-5 demonstrations (SemEval train store) carrying the query's
    directed label, for SemEval test queries; plus the retrieval latency per doc."""
    import numpy
    from spacy.lang.en import English

    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.retrieval.render import doc_key, doc_labels, label_match, render_input
    from spacy_kbnlp.retrieval.store import DemoStore

    nlp = English()
    train = load("semeval", "train", nlp)
    test = load("semeval", "test", nlp, full=True)  # all 2,717 test sentences
    queries = [render_input(d) for d in test]
    excl = [doc_key(d) for d in test]
    done = RUNS / "label_match.json"
    out = json.loads(done.read_text()) if done.exists() else {}
    retrievers = [("bm25", None), ("zero_shot_minilm", HFEncoder())]
    ruie = ROOT / "training" / "ruie" / "encoder"
    if ruie.exists():
        retrievers.append(("ruie", HFEncoder(str(ruie))))
    for name, encoder in retrievers:
        if name in out:
            continue
        store = DemoStore.from_docs(train, encoder=encoder)
        t = time.perf_counter()
        hits = store.search(queries, 5, retriever="bm25" if encoder is None else "dense",
                            encoder=encoder, exclude_keys=excl)
        latency = (time.perf_counter() - t) / len(queries) * 1000
        shares = [label_match(doc_labels(d), [store.records[r]["labels"] for r, _ in h])
                  for d, h in zip(test, hits)]
        out[name] = {"share": round(float(numpy.mean([s for s in shares if s is not None])), 4),
                     "ms_per_doc": round(latency, 2)}
        print(name, out[name], flush=True)
        write("label_match", out)


def cmd_collect(args) -> None:
    from spacy.lang.en import English

    from spacy_kbnlp.scorers import rel as rel_scorer

    nlp = English()
    result: Dict[str, Any] = {}
    speed: Dict[str, Any] = {}
    for dataset in ("semeval", "conll04"):
        gold = load(dataset, "test", nlp)
        for path in sorted(RUNS.glob(f"{dataset}_*.json")):
            run = json.loads(path.read_text())
            if len(run["predictions"]) < len(gold):
                print("skip (fewer test docs than TEST_LIMIT):", path.name)
                continue
            # every run predicted the test docs in file order: score the first TEST_LIMIT
            f1 = score_predictions(rel_scorer, dataset, gold, run["predictions"][:len(gold)])
            result.setdefault(dataset, {}).setdefault(run["fraction"], {})[run["system"]] = {"f1": f1}
            speed[path.stem] = {k: run[k] for k in ("train_s", "infer_s", "docs_per_s", "steps",
                                                    "train_docs", "train_instances", "lr",
                                                    "fresh_lr_scale", "token_loss_weight",
                                                    "threads", "date") if k in run}
    lm = RUNS / "label_match.json"
    if lm.exists():
        data = json.loads(lm.read_text())
        result["label_match_at_5"] = {k: v["share"] for k, v in data.items()}
        speed["retrieval_ms_per_doc"] = {k: v["ms_per_doc"] for k, v in data.items()}
    ruie = RUNS / "ruie.json"
    if ruie.exists():
        speed["ruie"] = json.loads(ruie.read_text())
    speed["machine"] = ("shared 2-core CPU (no GPU); torch threads per run: `threads` in "
                        "re_runs/<run>.json (absent = 2, the runs before the sequence-level loss)")
    result["speed"] = speed
    # dataset -> fraction -> system: results of runs whose file is gone stay
    result = merge_json(RESULT, result, depth=3)
    print(json.dumps({k: v for k, v in result.items() if k != "speed"}, indent=1))


def score_predictions(rel_scorer, dataset: str, gold: List, predictions: List[List[Dict]]) -> float:
    """SemEval: the official score (macro-F1 over the 9 relations, direction
    counted, Other excluded); CoNLL04: given-entity relation micro-F1. Both x100."""
    pairs = []
    for doc, recs in zip(gold, predictions):
        pred = doc.copy()
        pred._.rel_records = [dict(r) for r in recs]
        pairs.append((doc, pred))
    if dataset == "semeval":
        return round(100 * rel_scorer.score_relation_docs(pairs, semeval=True)["rel_semeval_f"], 2)
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
                     "task": f"SemEval-2010 Task 8 ({TEST_LIMIT['semeval']} test sentences), {share} of the "
                             f"training data, {ours.get('steps', '?')} steps: official score",
                     "ours": f"{runs['etrag']['f1']:.1f}",
                     "alternative": f"same backbone, no retrieval: {runs['baseline']['f1']:.1f}",
                     "speed": speed,
                     "measured": f"{ours.get('date', '?')}, 2-core CPU, {ours.get('threads', 2)} thread"})
    return rows


def cmd_table(args) -> None:
    """Print the Markdown tables of benchmarks/results/re.json."""
    res = json.loads(RESULT.read_text())
    for dataset, title in (("semeval", "SemEval-2010 Task 8, official score (macro-F1 x100)"),
                           ("conll04", "CoNLL04, given gold entities, relation micro-F1 (x100)")):
        if dataset not in res:
            continue
        print(f"\n{title}\n\n| train fraction | baseline | ETRAG | kNN |\n|---|---|---|---|")
        for frac in FRACTIONS:
            row = res[dataset].get(frac, {})
            cells = [f"{row[s]['f1']:.1f}" if s in row else "not run" for s in ("baseline", "etrag", "knn")]
            print(f"| {frac} | " + " | ".join(cells) + " |")
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
        print("\nLabel match@5 (SemEval test queries, full training store)\n\n| retriever | share |\n|---|---|")
        for k, v in res["label_match_at_5"].items():
            print(f"| {k} | {v:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--dataset", choices=("semeval", "conll04"), required=True)
    t.add_argument("--fractions", default="0.1,0.01,0.05,1.0")
    t.add_argument("--systems", default="baseline,etrag")
    t.add_argument("--batch-docs", type=int, default=0)
    t.add_argument("--lr", type=float, default=1e-4, help="learning rate of the pretrained weights")
    t.add_argument("--fresh-lr-scale", type=float, default=10.0,
                   help="lr multiplier of the untrained parameters (cross-attention, label embeddings, value)")
    t.add_argument("--token-loss-weight", type=float, default=0.5,
                   help="weight of the token-level NLL next to the sequence-level cross-entropy")
    t.add_argument("--threads", type=int, default=1, help="torch threads")
    t.add_argument("--steps", type=int, default=0, help="cap on optimizer steps (0 = STEPS table)")
    t.add_argument("--save", action="store_true", help="keep the pipelines under training/re_bench")
    t.add_argument("--force", action="store_true")
    k = sub.add_parser("knn")
    k.add_argument("--dataset", choices=("semeval", "conll04"), required=True)
    k.add_argument("--fractions", default="0.01,0.05,0.1,1.0")
    k.add_argument("--k", type=int, default=5)
    r = sub.add_parser("ruie")
    r.add_argument("--fraction", default="0.1")
    r.add_argument("--queries", type=int, default=300)
    r.add_argument("--candidates", type=int, default=12)
    r.add_argument("--reward-steps", type=int, default=100)
    r.add_argument("--bi-steps", type=int, default=150)
    sub.add_parser("label-match")
    sub.add_parser("collect")
    sub.add_parser("table")
    args = ap.parse_args()
    {"train": cmd_train, "knn": cmd_knn, "ruie": cmd_ruie, "label-match": cmd_label_match,
     "collect": cmd_collect, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
