"""Coreference benchmarks on OntoGUM test (GUM splits.md) and GAP; writes
``benchmarks/results/coref.json``:

* ``systems`` -> name -> ``muc``, ``b3``, ``ceafe``, ``conll_f1``, ``lea`` (F1),
  ``mention_f``, ``docs_per_s``, ``words_per_s``, ``tokens_per_s`` (decoder tokens),
  ``n_docs``, ``decoding`` and, for subsets, ``subset``;
* ``speculative`` -> ``identical`` (every decoded segment of the whole test set equals
  plain greedy decoding), ``speedup`` (docs/s ratio), forward passes, acceptance;
* ``gap`` -> accuracy and F1 over the A/B pronoun-name pairs, by gender;
* ``training`` -> per trained system: steps, minutes, machine.

Steps (each merges into the JSON)::

    python benchmarks/coref.py eval training/coref_full_copy/model-best --name seq2seq_full_copy --speculative-check
    python benchmarks/coref.py eval training/coref_full_copy/model-best --name seq2seq_full_copy_beam4 --beam 4 --limit 6
    python benchmarks/coref.py eval training/coref_partial/model-best --name seq2seq_partial
    python benchmarks/coref.py gap training/coref_full_copy/model-best --limit 0
    python benchmarks/coref.py peer training/peer_pred/test.spacy training/peer_pred/timing.json
    python benchmarks/coref.py training training/coref_full_copy --name seq2seq_full_copy
    python benchmarks/coref.py training training/peer_cluster --name spacy_experimental_coref_clusterer \
        --spacy-log training/peer_cluster.log --minutes 55.3
    python benchmarks/coref.py table

The peer's predictions come from ``benchmarks/peers/coref_predict.py`` (peer venv): the
assembled pipeline with its span resolver, or ``--expand-heads`` (clusterer alone, head
words widened to their parse subtree) where no span resolver was trained.

Machine: the shared 2-core CPU; runs use one torch thread (``--threads``), as training does.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import merge_json, read_json, write_block  # noqa: E402  (merge by key, never drop others)

RESULT = ROOT / "benchmarks" / "results" / "coref.json"
NOTES = ROOT / "benchmarks" / "README_coref.md"
BUNDLE = ROOT / "spacy_kbnlp" / "assets" / "seq2seq_coref"
TEST = ROOT / "corpus" / "coref" / "ontogum_test.spacy"
# the status table's coreference rows: our best test run and the spacy-experimental peer
STATUS_SYSTEM = "seq2seq_bundled_packed_r3"   # the shipped model with the default decoding (speed)
STATUS_TRAINED = "seq2seq_full_copy_aligned"  # the training run behind it
STATUS_PEERS = ("spacy_experimental_coref", "spacy_experimental_coref_head_subtree")
MASC = {"he", "him", "his", "himself"}
FEM = {"she", "her", "hers", "herself"}


def data_dir() -> Path:
    import os

    return Path(os.environ.get("KBNLP_DATA_DIR", ROOT.parent / "shared" / "data"))


def load_result() -> Dict[str, Any]:
    return read_json(RESULT, {"dataset": "OntoGUM test (GUM splits.md, 30 docs)", "systems": {}})


def save_result(new: Dict[str, Any]) -> None:
    """Merge ``new`` (``{section: {name: entry}}`` or a top-level entry) into
    coref.json by key (``benchmarks/_results.py``): the other entries stay. Each entry
    gets the day it was measured (``date``, UTC)."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for key, value in new.items():  # sections hold {name: entry}; "speculative", "speed": one entry
        for entry in ([value] if key in ("speculative", "speed") else value.values()):
            entry.setdefault("date", today)
    machine = f"shared 2-core CPU ({platform.processor() or platform.machine()}), no GPU"
    merge_json(RESULT, {"dataset": load_result()["dataset"], **new, "machine": machine},
               depth=2, sort_keys=True)


def summary(metrics: Dict[str, Any]) -> Dict[str, Any]:
    return {"muc": metrics["coref_muc_f"], "b3": metrics["coref_b3_f"],
            "ceafe": metrics["coref_ceafe_f"], "conll_f1": metrics["coref_conll_f"],
            "lea": metrics["coref_lea_f"], "mention_f": metrics["coref_mention_f"],
            "docs_per_s": metrics["docs_per_s"], "words_per_s": metrics["words_per_s"],
            "n_docs": metrics["docs"], "seconds": metrics["seconds"],
            "load_avg": metrics.get("load_avg")}


def run_eval(nlp, data: Path, limit: int) -> Dict[str, Any]:
    from spacy_kbnlp.cli.evaluate import evaluate

    comp = nlp.get_pipe("seq2seq_coref")
    comp.stats.clear()
    comp.record = []
    load_before = os.getloadavg()[0]
    metrics = evaluate("coref", nlp, data, "spacy", limit=limit, quiet=True, show_progress=True)
    metrics["load_avg"] = [load_before, os.getloadavg()[0]]
    stats = dict(comp.stats)
    metrics["decoder_tokens"] = stats.get("tokens", 0)
    metrics["forward_passes"] = stats.get("forward", 0)
    metrics["proposed"] = stats.get("proposed", 0)
    metrics["accepted"] = stats.get("accepted", 0)
    metrics["segments"] = stats.get("segments", 0)
    metrics["tokens_per_s"] = stats.get("tokens", 0) / metrics["seconds"] if metrics["seconds"] else 0
    metrics["record"] = comp.record
    comp.record = None
    return metrics


def load_pipeline(path: str):
    """A saved pipeline, or ``bundled``: the demo's compact model shipped with the package."""
    import spacy

    import spacy_kbnlp  # noqa: F401

    if path != "bundled":
        return spacy.load(path)
    nlp = spacy.blank("en")
    nlp.add_pipe("seq2seq_coref", config={"model": {"@misc": "spacy_kbnlp.BundledCorefModel.v1"},
                                          "aligned_input": True})
    nlp.initialize()
    return nlp


# the decoding of 2026-11-26 (issue 15's "today"): Hugging Face's forward pass, one segment at
# a time with 8 copy-speculative tokens, segments every 128 units, clusters joined by union
BEFORE = {"batch_segments": 1, "speculative": 8, "stride": 128, "merge": "union",
          "pronoun_agreement": False, "name_match": False, "relink": False}


def decoding_name(c: Dict[str, Any]) -> str:
    if c["decoding"] == "beam":
        return f"beam{c['beam_size']}"
    name = f"greedy+speculative{c['speculative']}" if c["speculative"] else "greedy"
    return name + (f", batches of {c['batch_segments']} segments" if c["batch_segments"] > 1 else "")


def cmd_speed(args) -> None:
    """Today's decoding and the default decoding of the same model on OntoGUM test, in
    one run (scores, docs/s, identical segments where the decoding is the same), then a
    10,000-token document (consecutive test docs joined) with the default decoding."""
    import torch
    from spacy.tokens import Doc, DocBin

    torch.set_num_threads(args.threads)
    nlp = load_pipeline(args.pipeline)
    comp = nlp.get_pipe("seq2seq_coref")
    defaults = dict(comp.cfg)
    entries: Dict[str, Any] = {}
    runs: Dict[str, Any] = {}
    repeats = max(1, args.repeats)
    rates: Dict[str, List[float]] = defaultdict(list)
    for label, cfg, lean in [x for _ in range(repeats)
                             for x in (("before", BEFORE, False), ("after", {}, True))]:
        comp.cfg.update(defaults)
        comp.cfg.update(cfg)
        comp.coref_model.lean_decoder = lean
        m = run_eval(nlp, Path(args.data), args.limit)
        rates[label].append(m["docs_per_s"])
        if label in runs:  # a repeat: the same output, another timing
            assert m["record"] == runs[label]["record"], "the decoding is not deterministic"
            entry = entries[args.name + ("_before" if label == "before" else "")]
            median = statistics.median(rates[label])
            # every rate of the entry from the median run time (words and docs fixed)
            entry["words_per_s"] *= median / entry["docs_per_s"]
            entry["seconds"] *= entry["docs_per_s"] / median
            runs[label]["docs_per_s"] = entry["docs_per_s"] = median
            continue
        runs[label] = m
        c = comp.cfg
        entry = summary(m)
        entry.update(tokens_per_s=m["tokens_per_s"], decoder_tokens=m["decoder_tokens"],
                     forward_passes=m["forward_passes"], segments=m["segments"],
                     decoding=decoding_name(c), decoder="lean" if lean else "hf",
                     merge=c["merge"], pronoun_agreement=c["pronoun_agreement"],
                     name_match=c["name_match"], relink=c["relink"],
                     link_threshold=c["link_threshold"] if c["relink"] else None,
                     segment_length=c["segment_length"], stride=c["stride"],
                     pipeline=str(args.pipeline), threads=args.threads)
        entries[args.name + ("_before" if label == "before" else "")] = entry
        print(label, json.dumps(entry, indent=1), flush=True)
    comp.cfg.update(defaults)
    comp.coref_model.lean_decoder = True
    speed = {"system": args.name, "before_docs_per_s": runs["before"]["docs_per_s"],
             "after_docs_per_s": runs["after"]["docs_per_s"],
             "ratio": runs["after"]["docs_per_s"] / runs["before"]["docs_per_s"],
             "before": entries[args.name + "_before"]["decoding"] + ", hf decoder, stride 128, union",
             "after": entries[args.name]["decoding"] + f", lean decoder, stride {comp.cfg['stride']}, "
                      f"{comp.cfg['merge']}" + (", name match" if comp.cfg["name_match"] else "")
                      + (", relink" if comp.cfg["relink"] else ""),
             "threads": args.threads, "repeats": repeats,
             "docs_per_s_runs": {k: [round(x, 4) for x in v] for k, v in rates.items()}}
    if args.greedy_docs:
        # plain greedy decoding (one segment at a time, no proposals) against the default
        # decoding on the first docs: same tokens in every segment?
        checks: Dict[str, Any] = {}
        check_rates: Dict[str, List[float]] = defaultdict(list)
        for label, cfg in [x for _ in range(repeats) for x in (
                ("greedy", {"batch_segments": 1, "speculative": 0}), ("default", {}))]:
            comp.cfg.update(defaults)
            comp.cfg.update(cfg)
            m = run_eval(nlp, Path(args.data), args.greedy_docs)
            check_rates[label].append(m["docs_per_s"])
            checks.setdefault(label, m)["docs_per_s"] = statistics.median(check_rates[label])
        comp.cfg.update(defaults)
        speed["vs_plain_greedy"] = {
            "docs": args.greedy_docs, "identical": checks["greedy"]["record"] == checks["default"]["record"],
            "segments_compared": len(checks["default"]["record"]),
            "greedy_docs_per_s": checks["greedy"]["docs_per_s"],
            "default_docs_per_s": checks["default"]["docs_per_s"],
            "speedup": checks["default"]["docs_per_s"] / checks["greedy"]["docs_per_s"],
            "forward_passes": {"greedy": checks["greedy"]["forward_passes"],
                               "default": checks["default"]["forward_passes"]},
            "docs_per_s_runs": {k: [round(x, 4) for x in v] for k, v in check_rates.items()}}
        print(json.dumps(speed["vs_plain_greedy"], indent=1), flush=True)
    if args.tokens:
        gold = list(DocBin().from_disk(args.data).get_docs(nlp.vocab))
        words: List[str] = []
        for d in gold:
            words.extend(t.text for t in d)
            if len(words) >= args.tokens:
                break
        doc = Doc(nlp.vocab, words=words[:args.tokens])
        comp.stats.clear()
        start = time.perf_counter()
        nlp(doc)
        seconds = time.perf_counter() - start
        speed.update(doc_10k_tokens_s=seconds, doc_tokens=len(doc),
                     doc_segments=int(comp.stats.get("segments", 0)))
        print(f"{len(doc)}-token document: {seconds:.1f} s", flush=True)
    # ``speed`` is the latest system's; every system's speed run stays in ``speed_runs``
    runs = {args.name: speed}
    done = load_result()
    old = done.get("speed") or {}
    if old.get("system") and old["system"] not in done.get("speed_runs", {}):
        runs[old["system"]] = old
    save_result({"systems": entries, "speed": speed, "speed_runs": runs})
    print(json.dumps(speed, indent=1))


class _Timer:
    """Seconds spent in wrapped callables (not re-entrant: wrap callables that do not
    call each other)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        inner = getattr(owner, attr)

        def timed(*a, **kw):
            start = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, attr, timed)


def cmd_profile(args) -> None:
    """Where the time goes, today's decoding vs the default, on the first docs: the
    encoder, the decoder's forward passes, and the rest (constrained-decoding
    bookkeeping, proposals, merging, Python), plus the work that the segment overlap
    repeats (decoder tokens per document unit); and the floor of the default decoding
    (``floor_pass``): what no exact decoding of the same model can go below."""
    import torch
    from spacy.tokens import DocBin

    from spacy_kbnlp.core.bert_decoder import BertDecoderStepper
    from spacy_kbnlp.core.decoding import HFSeq2SeqStepper

    torch.set_num_threads(args.threads)
    nlp = load_pipeline(args.pipeline)
    comp = nlp.get_pipe("seq2seq_coref")
    model = comp.coref_model
    docs = [nlp.make_doc(d.text) for d in
            list(DocBin().from_disk(args.data).get_docs(nlp.vocab))[: args.docs]]
    units = sum(len(model.doc_units(d).ids) for d in docs)
    timer = _Timer()
    timer.wrap(model.model.get_encoder(), "forward", "encoder")
    for cls in (HFSeq2SeqStepper, BertDecoderStepper):
        timer.wrap(cls, "step", "decoder")
    timer.wrap(BertDecoderStepper, "step_ragged", "decoder")
    defaults = dict(comp.cfg)
    out: Dict[str, Any] = {}
    after = {"stride": args.stride} if args.stride else {}
    for label, cfg, lean in (("before", BEFORE, False), ("after", after, True)):
        comp.cfg.update(defaults)
        comp.cfg.update(cfg)
        model.lean_decoder = lean
        model.pronoun_agreement = comp.cfg["pronoun_agreement"]
        timer.seconds.clear()
        stats: Dict[str, float] = defaultdict(float)
        c = comp.cfg
        record: List[List[int]] = []
        start = time.perf_counter()
        model.predict_docs(docs, stride=c["stride"], batch_segments=c["batch_segments"],
                           n_propose=c["speculative"], merge=c["merge"],
                           name_match=c["name_match"], stats=stats, record=record)
        total = time.perf_counter() - start
        enc, dec = timer.seconds.get("encoder", 0.0), timer.seconds.get("decoder", 0.0)
        out[label] = {"seconds": total, "encoder_s": enc, "decoder_forward_s": dec,
                      "rest_s": total - enc - dec, "forward_passes": stats["forward"],
                      "decoder_tokens": stats["tokens"], "segments": stats["segments"],
                      "decoder_tokens_per_doc_unit": stats["tokens"] / max(1, units),
                      "decoding": decoding_name(c), "decoder": "lean" if lean else "hf"}
        print(label, json.dumps(out[label]), flush=True)
        if label == "after":  # the floor of the default: its recorded tokens in one pass
            timer.seconds.clear()
            start = time.perf_counter()
            fed = floor_pass(model, docs, c["stride"], c["batch_segments"], record)
            total = time.perf_counter() - start
            enc, dec = timer.seconds.get("encoder", 0.0), timer.seconds.get("decoder", 0.0)
            out["floor"] = {"seconds": total, "encoder_s": enc, "decoder_forward_s": dec,
                            "rest_s": total - enc - dec, "decoder_tokens": fed,
                            "what": "the default's encoder and its output tokens fed through the "
                                    "decoder in one pass per batch: the least work of any exact "
                                    "decoding of this output"}
            print("floor", json.dumps(out["floor"]), flush=True)
    comp.cfg.update(defaults)
    save_result({"profile": {args.name: dict(out, docs=len(docs), doc_units=units,
                                             threads=args.threads)}})


def floor_pass(model: Any, docs: List[Any], stride: int, batch_segments: int,
               record: List[List[int]]) -> int:
    """Encode each batch of segments as ``predict_docs`` does and feed the decoder each
    segment's decoded tokens (``record``, in document order) in one pass: a decoding
    that guessed every token right would do this much and no less. Returns the number
    of decoder positions fed."""
    import torch

    from spacy_kbnlp.models.source_units import segment_units

    doc_units = [model.doc_units(doc) for doc in docs]
    jobs = model.segment_jobs(doc_units, stride)
    if len(jobs) != len(record):
        raise ValueError(f"floor_pass: {len(record)} decoded segments recorded for {len(jobs)} segments")
    batch, fed = max(1, int(batch_segments)), 0
    for first in range(0, len(jobs), batch):
        segs = [segment_units(doc_units[d], a, b, model.markers)[0] for d, a, b in jobs[first:first + batch]]
        _, stepper = model._prepare(segs, 0.0)
        # the prompt and every output token but the last (which is produced, never fed)
        feed = [[model.decoder_start] + toks[:-1] for toks in record[first:first + batch]]
        width = max(len(f) for f in feed)
        ids = torch.tensor([f + [0] * (width - len(f)) for f in feed], dtype=torch.long)
        if hasattr(stepper, "step_ragged"):
            stepper.step_ragged(ids, [0] * len(feed), fed=[len(f) for f in feed])
        else:
            stepper.step(ids)
        fed += sum(len(f) for f in feed)
    return fed


def cmd_demo(args) -> None:
    """The demo's coreference (``python -m spacy_kbnlp demo``: the bundled model on the
    demo text, scored against its hand-made clusters) with today's and the default
    decoding."""
    from spacy_kbnlp.cli.coref import load_compact_pipeline
    from spacy_kbnlp.cli.demo import DEMO_TEXT, _demo_coref_gold, find_demo_assets
    from spacy_kbnlp.scorers.coref import score_coref_docs

    assets = find_demo_assets()
    text = (assets / DEMO_TEXT).read_text(encoding="utf-8")
    gold = _demo_coref_gold(assets)
    nlp = load_compact_pipeline(None)
    comp = nlp.get_pipe("seq2seq_coref")
    defaults = dict(comp.cfg)
    entry: Dict[str, Any] = {}
    after = {"stride": args.stride} if args.stride else {}
    for label, cfg, lean in (("before", BEFORE, False), ("after", after, True)):
        comp.cfg.update(defaults)
        comp.cfg.update(cfg)
        comp.coref_model.lean_decoder = lean
        doc = nlp(text)
        m = score_coref_docs([(gold, doc)])
        entry[label] = {"muc": m["coref_muc_f"], "b3": m["coref_b3_f"], "ceafe": m["coref_ceafe_f"],
                        "conll_f1": m["coref_conll_f"], "lea": m["coref_lea_f"],
                        "mention_f": m["coref_mention_f"], "clusters": len(doc._.coref_clusters),
                        "decoding": decoding_name(comp.cfg), "merge": comp.cfg["merge"],
                        "name_match": comp.cfg["name_match"],
                        "pronoun_agreement": comp.cfg["pronoun_agreement"]}
        print(label, json.dumps(entry[label]), flush=True)
    entry["gold_clusters"] = len(gold._.coref_clusters)
    save_result({"demo": {args.name: entry}})


# merge rule, pronoun agreement, name match, pair linker: the ablation's variants by name
ABLATIONS = {"union_no_pronouns": ("union", False, False, False),
             "union_pronouns": ("union", True, False, False),
             "agreement_no_pronouns": ("agreement", False, False, False),
             "agreement_pronouns": ("agreement", True, False, False),
             "agreement_pronouns_names": ("agreement", True, True, False),
             "agreement_pronouns_names_relink": ("agreement", True, True, True)}


def cmd_ablate(args) -> None:
    """Merge rule x pronoun agreement x name match on the same decoding (dev docs by
    default; ``--variants``: names of :data:`ABLATIONS`): scores and what the clusters
    look like (how many, the largest, mean size), so that a gain on one metric is
    seen against the others."""
    import torch
    from spacy.tokens import DocBin

    from spacy_kbnlp.scorers.coref import doc_clusters, score_coref_clusters

    torch.set_num_threads(args.threads)
    nlp = load_pipeline(args.pipeline)
    comp = nlp.get_pipe("seq2seq_coref")
    c = comp.cfg
    docs = list(DocBin().from_disk(args.data).get_docs(nlp.vocab))[: args.limit or None]
    gold = [doc_clusters(d) for d in docs]
    sizes = [len(cl) for g in gold for cl in g]
    stride = args.stride or c["stride"]
    entries: Dict[str, Any] = {}
    for variant in args.variants.split(","):
        if variant not in ABLATIONS:
            raise SystemExit(f"unknown variant {variant!r}: one of {', '.join(ABLATIONS)}")
        merge, pron, names, relink = ABLATIONS[variant]
        comp.coref_model.pronoun_agreement = pron
        start = time.perf_counter()
        pred = comp.coref_model.predict_docs(
            docs, stride=stride, batch_segments=c["batch_segments"],
            n_propose=c["speculative"], merge=merge, name_match=names,
            linker=comp.pair_linker() if relink else None, link_threshold=c["link_threshold"])
        seconds = time.perf_counter() - start
        pred = [[cl for cl in p if len(cl) > 1] for p in pred]
        m = score_coref_clusters(zip(gold, pred))
        ps = [len(cl) for p in pred for cl in p]
        # the default stride: the names of the first runs; another: its own key
        name = f"{args.name}_{variant}" + (f"_stride{stride}" if stride != c["stride"] else "")
        entries[name] = dict(
            summary(dict(m, docs_per_s=len(docs) / seconds,
                         words_per_s=sum(len(d) for d in docs) / seconds, docs=len(docs),
                         seconds=seconds)),
            merge=merge, pronoun_agreement=pron, name_match=names, relink=relink,
            link_threshold=c["link_threshold"] if relink else None, decoding=decoding_name(c),
            stride=stride, segment_length=c["segment_length"],
            clusters=len(ps), max_cluster=max(ps, default=0),
            mean_cluster=sum(ps) / max(1, len(ps)), gold_clusters=len(sizes),
            gold_max_cluster=max(sizes, default=0), gold_mean_cluster=sum(sizes) / max(1, len(sizes)),
            subset=f"{'first ' + str(args.limit) if args.limit else 'all'} docs of {Path(args.data).name}",
            pipeline=str(args.pipeline))
        print(name, {k: round(v, 4) if isinstance(v, float) else v
                     for k, v in entries[name].items()}, flush=True)
    save_result({"ablation": entries})


def cmd_fit_linker(args) -> None:
    """Fit the pair linker of ``relink`` on a model's dev output (``python -m
    spacy_kbnlp coref fit-linker``; the bundled linker: the bundled model on OntoGUM
    dev, written to the package's assets) and record the cross-validation curve."""
    import torch

    from spacy_kbnlp.cli.coref import fit_linker

    torch.set_num_threads(args.threads)
    nlp = load_pipeline(args.pipeline)
    start = time.perf_counter()
    res = fit_linker(nlp, args.data, args.output, hidden=args.hidden, epochs=args.epochs,
                     limit=args.limit)
    out = Path(args.output).resolve()
    where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out.name
    entry = dict(res, seconds=time.perf_counter() - start, threads=args.threads,
                 pipeline=str(args.pipeline), data=Path(args.data).name, output=str(where))
    print(json.dumps({k: v for k, v in entry.items() if k != "curve"}), flush=True)
    save_result({"linker": {args.name: entry}})


def cmd_eval(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    nlp = load_pipeline(args.pipeline)
    comp = nlp.get_pipe("seq2seq_coref")
    if args.beam:
        comp.cfg.update(decoding="beam", beam_size=args.beam)
    if args.speculative is not None or args.speculative_check:
        # copy-speculative decoding runs one segment at a time
        comp.cfg.update(batch_segments=1)
    if args.speculative is not None:
        comp.cfg["speculative"] = args.speculative
    m = run_eval(nlp, Path(args.data), args.limit)
    entry = summary(m)
    c = comp.cfg
    entry.update(tokens_per_s=m["tokens_per_s"], decoder_tokens=m["decoder_tokens"],
                 forward_passes=m["forward_passes"], segments=m["segments"],
                 representation=c["representation"], action=c["action"],
                 decoding=decoding_name(c), segment_length=c["segment_length"], stride=c["stride"], pipeline=str(args.pipeline))
    if args.limit:
        entry["subset"] = f"first {args.limit} {'test' if args.section == 'systems' else 'dev'} docs"
    systems = {args.name: entry}
    speculative = None
    print(json.dumps(entry, indent=1))
    if args.speculative_check:
        comp.cfg["speculative"] = 0
        naive = run_eval(nlp, Path(args.data), args.limit)
        identical = naive["record"] == m["record"]
        speculative = {
            "system": args.name, "identical": identical,
            "segments_compared": len(m["record"]),
            "speedup": m["docs_per_s"] / naive["docs_per_s"],
            "docs_per_s": {"greedy": naive["docs_per_s"], "speculative": m["docs_per_s"]},
            "tokens_per_s": {"greedy": naive["tokens_per_s"], "speculative": m["tokens_per_s"]},
            "forward_passes": {"greedy": naive["forward_passes"], "speculative": m["forward_passes"]},
            "acceptance": m["accepted"] / m["proposed"] if m["proposed"] else 0.0,
            "n_propose": c["speculative"] or 8,
            "same_scores": summary(naive)["conll_f1"] == entry["conll_f1"],
        }
        systems[args.name + "_naive_greedy"] = dict(
            summary(naive), tokens_per_s=naive["tokens_per_s"], decoding="greedy",
            representation=c["representation"], action=c["action"], pipeline=str(args.pipeline))
        print(json.dumps(speculative, indent=1))
    new: Dict[str, Any] = {args.section: systems}
    if speculative is not None and args.section == "systems":  # the check is over test docs
        new["speculative"] = speculative
    save_result(new)


def load_gap(path: Path) -> List[Dict[str, Any]]:
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for r in rows:
        for k in ("Pronoun-offset", "A-offset", "B-offset"):
            r[k] = int(r[k])
        r["A-coref"], r["B-coref"] = r["A-coref"] == "TRUE", r["B-coref"] == "TRUE"
    return rows


def gap_decisions(doc, row) -> Dict[str, bool]:
    """Whether the prediction puts the pronoun in one cluster with A and with B (a
    mention overlapping each character span counts)."""
    def overlaps(span, start, end):
        return span.start_char < end and start < span.end_char

    p0 = row["Pronoun-offset"]
    p1 = p0 + len(row["Pronoun"])
    out = {"A": False, "B": False}
    for cluster in doc._.coref_clusters:
        if not any(overlaps(m, p0, p1) for m in cluster):
            continue
        for key in ("A", "B"):
            s = row[f"{key}-offset"]
            if any(overlaps(m, s, s + len(row[key])) and not overlaps(m, p0, p1) for m in cluster):
                out[key] = True
    return out


def prf(pairs) -> Dict[str, float]:
    tp = sum(1 for g, p in pairs if g and p)
    fp = sum(1 for g, p in pairs if p and not g)
    fn = sum(1 for g, p in pairs if g and not p)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    acc = sum(1 for g, pr in pairs if g == pr) / len(pairs) if pairs else 0.0
    return {"p": p, "r": r, "f1": f, "accuracy": acc, "pairs": len(pairs)}


def cmd_gap(args) -> None:
    import spacy
    import torch

    import spacy_kbnlp  # noqa: F401

    torch.set_num_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    rows = load_gap(data_dir() / "coref" / "gap" / "gap-test.tsv")
    if args.limit:
        rows = rows[: args.limit]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    pairs = {"all": [], "masculine": [], "feminine": []}
    for row, doc in zip(rows, nlp.pipe(r["Text"] for r in rows)):
        pred = gap_decisions(doc, row)
        gender = "masculine" if row["Pronoun"].lower() in MASC else "feminine"
        for key in ("A", "B"):
            pair = (row[f"{key}-coref"], pred[key])
            pairs["all"].append(pair)
            pairs[gender].append(pair)
    seconds = time.perf_counter() - start
    out = {k: prf(v) for k, v in pairs.items()}
    out["bias_f1_fem_over_masc"] = (out["feminine"]["f1"] / out["masculine"]["f1"]
                                    if out["masculine"]["f1"] else None)
    out.update(system=args.name, rows=len(rows), docs_per_s=len(rows) / seconds,
               load_avg=[load_before, os.getloadavg()[0]],
               split="gap-test" + (f" (first {args.limit} rows)" if args.limit else ""),
               pipeline=str(args.pipeline))
    save_result({"gap": {args.name: out}})
    print(json.dumps(out, indent=1))


def cmd_peer(args) -> None:
    """Score the peer's predictions (a DocBin written by benchmarks/peers/coref_predict.py)."""
    from spacy.lang.en import English
    from spacy.tokens import DocBin

    from spacy_kbnlp.cli.score import pair_docs, score_task, task_options

    nlp = English()
    gold = list(DocBin().from_disk(args.gold).get_docs(nlp.vocab))
    pred = list(DocBin().from_disk(args.pred).get_docs(nlp.vocab))
    metrics = score_task("coref", pair_docs(gold, pred, "order"), **task_options("coref"))
    timing = json.loads(Path(args.timing).read_text())
    metrics.update(docs=len(gold), seconds=timing["seconds"],
                   docs_per_s=len(gold) / timing["seconds"],
                   words_per_s=sum(len(d) for d in gold) / timing["seconds"])
    entry = summary(metrics)
    entry.update(system="spacy-experimental 0.6.4 experimental_coref (MiniLM transformer), mentions from "
                 + timing.get("mentions", "span_resolver"), decoding="-",
                 **{k: v for k, v in timing.items() if k != "seconds"})
    save_result({"systems": {args.name: entry}})
    print(json.dumps(entry, indent=1))


def spacy_log_curve(text: str) -> List[List[float]]:
    """``[step, SCORE]`` rows of a ``spacy train`` console log (ConsoleLogger table:
    epoch, step, losses..., scores..., SCORE as the last column)."""
    import re

    rows = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 3 and all(re.fullmatch(r"[\d.]+", c) for c in cols) and "." not in cols[0] + cols[1]:
            rows.append([int(cols[1]), float(cols[-1])])
    return rows


def spacy_log_last_step(text: str) -> Optional[int]:
    """The last step that ``peer_step_clock.v1`` (benchmarks/peers/peer_functions.py) logged
    in a ``spacy train`` console log: a run ended by its wall-clock bound trains on past
    its last evaluation. None without clock lines."""
    import re

    steps = [int(m.group(1)) for m in re.finditer(r"^\[clock\] .*?step (\d+)", text, re.M)]
    return max(steps) if steps else None


def cmd_training(args) -> None:
    """Training time and steps from a run's train_log.jsonl and checkpoint, or, for a
    ``spacy train`` run (the peer), from its console log and the wall-clock ``--minutes``."""
    run = Path(args.run)
    if args.spacy_log:
        if args.minutes is None:
            sys.exit("--spacy-log needs --minutes (spacy train logs no time)")
        text = Path(args.spacy_log).read_text(encoding="utf-8")
        curve = spacy_log_curve(text)
        best = max(curve, key=lambda r: (r[1], -r[0]))
        entry = {"steps": max(curve[-1][0], spacy_log_last_step(text) or 0), "minutes": args.minutes, "best_dev_score": best[1],
                 "best_step": best[0], "dev_curve": curve,
                 "dev_metric": "SCORE column of spacy train (the component's own dev score)"}
    else:
        log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
        state = json.loads((run / "checkpoint" / "trainer.json").read_text())
        # the dev CoNLL F1 itself (a run's "score" may weigh other components' scores in)
        curve = [[r["step"], r.get("scores", {}).get("coref_conll_f", r["score"])]
                 for r in log if r.get("eval")]
        best = max(curve, key=lambda r: (r[1], -r[0])) if curve else [state["best_step"], None]
        entry = {"steps": state["step"], "minutes": state["seconds"] / 60,
                 "items": state["n_items"], "best_dev_score": best[1],
                 "best_step": best[0], "model_best_step": state["best_step"], "dev_curve": curve,
                 "dev_metric": "CoNLL F1",
                 "config": {k: state["config"][k] for k in ("learning_rate", "batch_size", "accumulate",
                                                             "max_epochs", "threads")}}
    entry["machine"] = args.machine
    if args.note:
        entry["note"] = args.note
    if args.continues:
        entry["continues"] = args.continues  # the training run whose model this one started from
    save_result({"training": {args.name: entry}})
    print(json.dumps(entry, indent=1))


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _load(entry: Dict[str, Any]) -> str:
    load = entry.get("load_avg")
    return "-" if not load else " / ".join(f"{x:.1f}" for x in load)


def cmd_compact(args) -> None:
    """What the compact form costs: export the pipeline at each rank (``coref
    export-compact``), score it on the first dev docs and on the demo text's
    hand-made gold; the uncompressed pipeline is the first row."""
    import tempfile

    import spacy
    import torch

    import spacy_kbnlp  # noqa: F401
    from spacy_kbnlp.cli.coref import export_compact, load_compact_pipeline
    from spacy_kbnlp.cli.demo import _demo_coref_gold, find_demo_assets, report_coref_scores
    from spacy_kbnlp.cli.evaluate import evaluate

    torch.set_num_threads(args.threads)
    gold = _demo_coref_gold(find_demo_assets())
    rows = {}

    def score(nlp, size: float) -> Dict[str, Any]:
        m = evaluate("coref", nlp, Path(args.data), "spacy", limit=args.limit, quiet=True,
                     show_progress=False)
        demo = report_coref_scores(nlp(gold.text), gold, printer=lambda *a, **k: None)
        return {"mib": size, "dev_conll_f1": m["coref_conll_f"], "dev_lea": m["coref_lea_f"],
                "dev_docs": m["docs"], "demo_conll_f1": demo["conll_f"], "demo_lea": demo["lea_f"]}

    full = Path(args.pipeline) / "seq2seq_coref" / "model"
    size = sum(f.stat().st_size for f in full.iterdir() if f.is_file()) / 2**20
    rows["full"] = score(spacy.load(args.pipeline), size)
    print(json.dumps({"full": rows["full"]}))
    with tempfile.TemporaryDirectory() as tmp:
        for rank in args.ranks:
            out = Path(tmp) / f"rank{rank}"
            info = export_compact(args.pipeline, out, rank=rank)
            rows[f"rank {rank}"] = score(load_compact_pipeline(out), info["bytes"] / 2**20)
            print(json.dumps({f"rank {rank}": rows[f"rank {rank}"]}))
    save_result({"compact": {args.name: {"pipeline": str(args.pipeline), "rows": rows}}})


def status_rows(res: Dict[str, Any]) -> List[Dict[str, str]]:
    """The status table's coreference rows (``benchmarks/status.py``): our best test run
    against the spacy-experimental peer, and copy-speculative against naive greedy
    decoding of the same model."""
    rows = []
    systems = res.get("systems", {})
    ours = systems.get(STATUS_SYSTEM)
    peer_name = next((p for p in STATUS_PEERS if p in systems), None)
    peer = systems.get(peer_name) if peer_name else None
    machine = res.get("machine", "?").split(" (")[0]
    if ours and peer:
        trained = res.get("training", {}).get(STATUS_TRAINED, {}).get("minutes")
        what = ("span resolver trained" if peer_name == "spacy_experimental_coref"
                else "heads widened to subtrees")
        rows.append({"component": "`seq2seq_coref`, bundled model" + (
                         f" (trained {trained:.0f} min on 1 core)" if trained else ""),
                     "task": f"coreference, {res['dataset'].split(' (')[0]} ({ours['n_docs']} docs): "
                             "CoNLL F1 / LEA",
                     "ours": f"{_pct(ours['conll_f1'])} / {_pct(ours['lea'])}",
                     "alternative": f"spacy-experimental coref ({what}): {_pct(peer['conll_f1'])} / "
                                    f"{_pct(peer['lea'])}",
                     "speed": f"{ours['words_per_s'] / peer['words_per_s']:.2f}x words/s "
                              f"({ours['words_per_s']:.0f} vs {peer['words_per_s']:.0f})",
                     "measured": f"{ours.get('date', '?')}, {machine}"})
    speed = res.get("speed")
    runs = (f", median of {speed['repeats']} alternating runs"
            if speed and speed.get("repeats", 1) > 1 else "")
    if speed and speed.get("system") == STATUS_SYSTEM:
        rows.append({"component": "`seq2seq_coref` default decoding",
                     "task": f"same model and docs as the decoding of 2026-11-26 ({speed['before']})"
                             + runs,
                     "ours": f"{speed['after_docs_per_s']:.3f} docs/s; 10k-token doc "
                             f"{speed['doc_10k_tokens_s']:.0f} s",
                     "alternative": f"{speed['before_docs_per_s']:.3f} docs/s",
                     "speed": f"{speed['ratio']:.2f}x docs/s",
                     "measured": f"{speed.get('date', '?')}, {machine}"})
    compact = res.get("compact", {}).get(STATUS_TRAINED)
    rank = json.loads((BUNDLE / "compact.json").read_text(encoding="utf-8"))["rank"]
    if compact and f"rank {rank}" in compact["rows"] and "full" in compact["rows"]:
        small, full = compact["rows"][f"rank {rank}"], compact["rows"]["full"]
        rows.append({"component": f"`seq2seq_coref` as shipped (rank-{rank} difference, {small['mib']:.1f} MiB)",
                     "task": f"same model, OntoGUM dev (first {small['dev_docs']} docs): CoNLL F1",
                     "ours": _pct(small["dev_conll_f1"]),
                     "alternative": f"the full model ({full['mib']:.0f} MiB): {_pct(full['dev_conll_f1'])}",
                     "speed": "", "measured": f"{compact.get('date', '?')}, {machine}"})
    spec = res.get("speculative")
    greedy = (speed or {}).get("vs_plain_greedy") if (speed or {}).get("system") == STATUS_SYSTEM else None
    if greedy:
        rows.append({"component": "`seq2seq_coref` default decoding (batched copy-speculative)",
                     "task": f"first {greedy['docs']} docs: output identical to plain greedy decoding: "
                             + ("yes" if greedy["identical"] else "no") + runs,
                     "ours": f"{greedy['default_docs_per_s']:.3f} docs/s",
                     "alternative": f"plain greedy, one segment at a time: {greedy['greedy_docs_per_s']:.3f} docs/s",
                     "speed": f"{greedy['speedup']:.2f}x docs/s",
                     "measured": f"{speed.get('date', '?')}, {machine}"})
    elif spec and spec.get("system") == STATUS_TRAINED:
        rows.append({"component": "`seq2seq_coref` copy-speculative decoding",
                     "task": "same model and docs: output identical to greedy decoding: "
                             + ("yes" if spec["identical"] else "no"),
                     "ours": f"{spec['docs_per_s']['speculative']:.3f} docs/s",
                     "alternative": f"greedy decoding: {spec['docs_per_s']['greedy']:.3f} docs/s",
                     "speed": f"{spec['speedup']:.2f}x docs/s",
                     "measured": f"{spec.get('date', '?')}, {machine}"})
    return rows


def bundle_note(bundle: Path = BUNDLE) -> str:
    """What the shipped compact model is, read from its ``compact.json`` and files (the
    ``coref-bundle`` block of README_coref.md; never typed by hand)."""
    info = json.loads((bundle / "compact.json").read_text(encoding="utf-8"))
    mib = sum(f.stat().st_size for f in bundle.iterdir() if f.is_file()) / 2**20
    s = info["settings"]
    return (f"The bundled model `spacy_kbnlp/assets/seq2seq_coref` ({mib:.1f} MiB) stores every weight as its "
            f"rank-{info['rank']} difference (int8 factors) from the MiniLM warm start drawn again with seed "
            f"{info['seed']}, {info['decoder_layers']} decoder layers; {s['representation']} linearization, "
            f"{s['action']} action, aligned decoder input: {str(s['aligned_input']).lower()}. Rebuilt by "
            f"`python -m spacy project run coref-bundle benchmarks` (`coref export-compact --rank {info['rank']}`; "
            f"figures from `spacy_kbnlp/assets/seq2seq_coref/compact.json`).\n")


def cmd_table(args) -> None:
    """Print the Markdown tables of benchmarks/results/coref.json."""
    write_block(NOTES, "coref-bundle", bundle_note())
    res = load_result()
    lines = ["| system | decoding | test docs | MUC | B³ | CEAFe | CoNLL F1 | LEA | mention F "
             "| docs/s | words/s | decoder tokens/s | load avg before / after |", "|---" * 13 + "|"]
    for name, e in res["systems"].items():
        docs = str(e["n_docs"]) + (f" ({e['subset']})" if e.get("subset") else "")
        scores = " | ".join(_pct(e[k]) for k in ("muc", "b3", "ceafe", "conll_f1", "lea", "mention_f"))
        tok = f"{e['tokens_per_s']:.0f}" if "tokens_per_s" in e else "-"
        lines.append(f"| {name} | {e.get('decoding', '-')} | {docs} | {scores} | {e['docs_per_s']:.3f} "
                     f"| {e['words_per_s']:.0f} | {tok} | {_load(e)} |")
    if res.get("dev"):
        lines += ["", "Model selection on dev docs (`eval --section dev`):", "",
                  "| system | decoding | dev docs | CoNLL F1 | LEA | mention F | docs/s | load avg before / after |",
                  "|---" * 8 + "|"]
        for name, e in res["dev"].items():
            lines.append(f"| {name} | {e.get('decoding', '-')} | {e['n_docs']} | {_pct(e['conll_f1'])} "
                         f"| {_pct(e['lea'])} | {_pct(e['mention_f'])} | {e['docs_per_s']:.3f} | {_load(e)} |")
    if res.get("ablation"):
        lines += ["", "Merge rule x pronoun agreement x name match, same model and decoding (`ablate`; "
                  "runs without `names` in their name had no name match):", "",
                  "| run | docs | stride | MUC | B³ | CEAFe | CoNLL F1 | LEA | mention F | docs/s | clusters | "
                  "largest | mean size | gold clusters / largest / mean |", "|---" * 14 + "|"]
        for name, e in res["ablation"].items():
            scores = " | ".join(_pct(e[k]) for k in ("muc", "b3", "ceafe", "conll_f1", "lea", "mention_f"))
            lines.append(f"| {name} | {e['subset']} | {e.get('stride', 128)} | {scores} | {e['docs_per_s']:.3f} "
                         f"| {e['clusters']} | {e['max_cluster']} "
                         f"| {e['mean_cluster']:.1f} | {e['gold_clusters']} / {e['gold_max_cluster']} / "
                         f"{e['gold_mean_cluster']:.1f} |")
    for name, d in res.get("demo", {}).items():
        lines += ["", f"Demo text ({name}, {d.get('date', '?')}; hand-made gold, {d['gold_clusters']} clusters): "
                  + "; ".join(f"{d[k]['decoding']}, {d[k]['merge']}"
                              f"{', pronoun agreement' if d[k]['pronoun_agreement'] else ''}"
                              f"{', name match' if d[k].get('name_match') else ''}: CoNLL F1 "
                              f"{_pct(d[k]['conll_f1'])}, LEA {_pct(d[k]['lea'])}, MUC {_pct(d[k]['muc'])}, "
                              f"CEAFe {_pct(d[k]['ceafe'])}, {d[k]['clusters']} clusters"
                              for k in ("before", "after")) + "."]
    speed = res.get("speed")
    if speed:
        lines += ["", f"Speed ({speed['system']}, {speed.get('date', '?')}, {speed.get('threads', 1)} thread): "
                  f"{speed['before']}: {speed['before_docs_per_s']:.3f} docs/s; {speed['after']}: "
                  f"{speed['after_docs_per_s']:.3f} docs/s ({speed['ratio']:.2f}x); a "
                  f"{speed.get('doc_tokens', 10000)}-token document ({speed.get('doc_segments', '?')} segments): "
                  f"{speed['doc_10k_tokens_s']:.1f} s."]
        g = speed.get("vs_plain_greedy")
        if g:
            lines[-1] += (f" Against plain greedy decoding (one segment at a time, first {g['docs']} docs, "
                          f"{g['segments_compared']} segments): identical output {g['identical']}, "
                          f"{g['speedup']:.2f}x docs/s, decoder forward passes "
                          f"{g['forward_passes']['greedy']:.0f} -> {g['forward_passes']['default']:.0f}.")
    spec = res.get("speculative")
    if spec:
        lines += ["", f"Copy-speculative vs plain greedy ({spec['system']}, {spec['segments_compared']} "
                  f"segments): identical output {spec['identical']}, speed-up {spec['speedup']:.2f}x docs/s, "
                  f"decoder forward passes {spec['forward_passes']['greedy']:.0f} -> "
                  f"{spec['forward_passes']['speculative']:.0f}, acceptance {spec['acceptance']:.3f}."]
    for name, c in res.get("compact", {}).items():
        lines += ["", f"Compact form of {name} ({c['pipeline']}): size, dev CoNLL F1 / LEA (first dev docs), "
                  "demo text CoNLL F1 / LEA (hand-made gold):", "",
                  "| stored as | MiB | dev docs | dev CoNLL F1 | dev LEA | demo CoNLL F1 | demo LEA |",
                  "|---" * 7 + "|"]
        for row, r in c["rows"].items():
            lines.append(f"| {row} | {r['mib']:.1f} | {r['dev_docs']} | {_pct(r['dev_conll_f1'])} "
                         f"| {_pct(r['dev_lea'])} | {_pct(r['demo_conll_f1'])} | {_pct(r['demo_lea'])} |")
    if res.get("gap"):
        lines += ["", "| GAP system | rows | acc | P | R | F1 | F1 masc. | F1 fem. | fem./masc. | docs/s |",
                  "|---" * 10 + "|"]
        for name, g in res["gap"].items():
            a = g["all"]
            bias = "-" if g["bias_f1_fem_over_masc"] is None else f"{g['bias_f1_fem_over_masc']:.2f}"
            lines.append(f"| {name} | {g['split']} | {_pct(a['accuracy'])} | {_pct(a['p'])} | {_pct(a['r'])} "
                         f"| {_pct(a['f1'])} | {_pct(g['masculine']['f1'])} | {_pct(g['feminine']['f1'])} "
                         f"| {bias} | {g['docs_per_s']:.2f} |")
    if res.get("training"):
        lines += ["", "| trained system | steps | minutes | best dev score (step) | dev metric | note |",
                  "|---" * 6 + "|"]
        for name, t in res["training"].items():
            lines.append(f"| {name} | {t['steps']} | {t['minutes']:.0f} | {_pct(t['best_dev_score'])} "
                         f"({t['best_step']}) | {t.get('dev_metric', 'CoNLL F1')} | {t.get('note', '')} |")
    write_block(NOTES, "coref", "\n".join(lines) + "\n", opening="begin")
    print("\n".join(lines))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="score a pipeline on OntoGUM test")
    e.add_argument("pipeline")
    e.add_argument("--name", required=True)
    e.add_argument("--data", default=str(TEST))
    e.add_argument("--limit", type=int, default=0)
    e.add_argument("--beam", type=int, default=0)
    e.add_argument("--speculative", type=int, default=None)
    e.add_argument("--speculative-check", action="store_true")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--section", choices=("systems", "dev"), default="systems",
                   help="where the entry goes in coref.json: test results (systems) or model "
                        "selection on dev docs (dev; give --data)")
    g = sub.add_parser("gap", help="GAP test pronoun-name pairs")
    g.add_argument("pipeline")
    g.add_argument("--name", default="seq2seq_full_copy")
    g.add_argument("--limit", type=int, default=0)
    g.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("peer", help="score the spacy-experimental peer's predictions")
    p.add_argument("pred")
    p.add_argument("timing")
    p.add_argument("--gold", default=str(TEST))
    p.add_argument("--name", default="spacy_experimental_coref")
    t = sub.add_parser("training", help="record a training run")
    t.add_argument("run")
    t.add_argument("--name", required=True)
    t.add_argument("--note", default="")
    t.add_argument("--continues", default="", help="the recorded training run this one started from")
    t.add_argument("--spacy-log", default="", help="console log of a spacy train run (the peer)")
    t.add_argument("--minutes", type=float, default=None, help="wall-clock minutes of that run")
    t.add_argument("--machine", default="shared 2-core CPU, 1 torch thread, nice 10 (other jobs running)",
                   help="where and how it ran")
    c = sub.add_parser("compact", help="size and scores of the compact form at several ranks")
    c.add_argument("pipeline")
    c.add_argument("--name", required=True)
    c.add_argument("--ranks", type=lambda v: [int(x) for x in v.split(",")], default=[16, 32, 64])
    c.add_argument("--data", default="corpus/coref/ontogum_dev.spacy")
    c.add_argument("--limit", type=int, default=10)
    c.add_argument("--threads", type=int, default=1)
    sp = sub.add_parser("speed", help="today's decoding vs the default one (same run), and a 10k-token doc")
    sp.add_argument("pipeline", help="a saved pipeline, or 'bundled'")
    sp.add_argument("--name", required=True)
    sp.add_argument("--data", default=str(TEST))
    sp.add_argument("--limit", type=int, default=0)
    sp.add_argument("--tokens", type=int, default=10000, help="long-document size (0: skip)")
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--greedy-docs", type=int, default=6,
                    help="also compare with plain greedy decoding on the first N docs (0: skip)")
    sp.add_argument("--repeats", type=int, default=1,
                    help="time each decoding N times, alternating with the one it is compared with "
                         "(docs/s: the median; a busy machine drifts less into the ratio)")
    pr = sub.add_parser("profile", help="encoder / decoder / rest seconds, today's vs the default decoding")
    pr.add_argument("pipeline", help="a saved pipeline, or 'bundled'")
    pr.add_argument("--name", required=True)
    pr.add_argument("--data", default=str(TEST))
    pr.add_argument("--docs", type=int, default=4)
    pr.add_argument("--threads", type=int, default=1)
    pr.add_argument("--stride", type=int, default=0,
                    help="the default decoding (and its floor) with this stride (0: the component's)")
    dm = sub.add_parser("demo", help="the demo text's coreference, today's vs the default decoding")
    dm.add_argument("--name", default="seq2seq_bundled")
    ab = sub.add_parser("ablate", help="merge rule x pronoun agreement x name match, with cluster sizes (dev docs)")
    ab.add_argument("pipeline", help="a saved pipeline, or 'bundled'")
    ab.add_argument("--name", required=True)
    ab.add_argument("--data", default=str(ROOT / "corpus" / "coref" / "ontogum_dev.spacy"))
    ab.add_argument("--limit", type=int, default=0)
    ab.add_argument("--threads", type=int, default=1)
    ab.add_argument("--stride", type=int, default=0, help="segment stride (0: the component's)")
    ab.add_argument("--variants", default=",".join(ABLATIONS),
                    help="comma-separated names: " + ", ".join(ABLATIONS))
    fl = sub.add_parser("fit-linker", help="fit relink's pair linker on dev output (cross-validated threshold)")
    fl.add_argument("pipeline", help="a saved pipeline, or 'bundled'")
    fl.add_argument("--name", required=True)
    fl.add_argument("--data", default=str(ROOT / "corpus" / "coref" / "ontogum_dev.spacy"))
    fl.add_argument("--output", default=str(ROOT / "spacy_kbnlp" / "assets" / "seq2seq_coref_linker"))
    fl.add_argument("--limit", type=int, default=0)
    fl.add_argument("--hidden", type=int, default=32, help="hidden units of the pair scorer (0: logistic)")
    fl.add_argument("--epochs", type=int, default=16)
    fl.add_argument("--threads", type=int, default=1)
    sub.add_parser("table", help="print the Markdown tables of the JSON")
    args = parser.parse_args(argv)
    {"eval": cmd_eval, "gap": cmd_gap, "peer": cmd_peer, "training": cmd_training,
     "compact": cmd_compact, "speed": cmd_speed, "ablate": cmd_ablate, "profile": cmd_profile,
     "demo": cmd_demo, "fit-linker": cmd_fit_linker,
     "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
