"""INSGENEL / INSGENEL-R benchmark (not a test), on the entity-linking protocol of
``benchmarks/el.py`` (issue 4): the 14,515-entity FB15k-237 Wikidata KB, InKB micro
P/R/F1 with strong matching on the seven test sets, docs/s, words/s, peak RSS.

Each run scores a pipeline with an ``insgenel_linker`` through ``el.py``'s helpers and
writes ``benchmarks/results/el_runs/<name>.json``; ``python benchmarks/el.py collect``
merges every run (EntQA's, spaCy's and these) into ``benchmarks/results/el.json``
without touching the others. The work of the generative model is recorded in the
run's ``speed`` block (kept by ``collect``): decoder forward passes (*generative
calls*) per document, output tokens per document (= the calls of plain greedy
decoding, one per token), segments decoded and skipped. ``table`` prints the
INSGENEL vs INSGENEL-R comparison (calls saved, speed-up) from the two runs::

    python benchmarks/insgenel.py run --name insgenel --pipeline training/insgenel/model-best
    python benchmarks/insgenel.py run --name insgenel_r --pipeline training/insgenel_r
    python benchmarks/insgenel.py table
    python benchmarks/el.py collect

``--sample N`` keeps every N-th document of each set (as ``el.py`` does), ``--threads``
torch threads (default 1: on the shared 2-core machine two threads spin-wait).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import el  # noqa: E402  (the shared EL benchmark helpers)
from _results import merge_json  # noqa: E402  (merge by key, never drop others)

GENERATIVE_KEYS = ("docs", "segments", "segments_decoded", "segments_skipped", "forward",
                   "tokens", "decision_spans", "below_threshold", "unfinished")


def run(args) -> None:
    import spacy

    import spacy_kbnlp  # noqa: F401

    el.set_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    linker = nlp.get_pipe(args.component)
    for item in args.set or ():
        key, value = item.split("=", 1)
        linker.cfg[key] = json.loads(value)
    linker.check_settings()
    gold = el.load_test_sets(Path(args.data_dir), nlp, args.sample)
    kb_ids = el.kb_ids_of(Path(args.kb)) if args.kb else set(linker.kb.ids)
    linker.stats.clear()
    pred, speed = el.timed_pipe(nlp, gold, args.batch_size)
    st = {k: float(linker.stats.get(k, 0.0)) for k in GENERATIVE_KEYS}
    docs = max(1.0, st["docs"])
    speed.update(
        generative_calls_per_doc=st["forward"] / docs,
        output_tokens_per_doc=st["tokens"] / docs,
        decision_spans_per_doc=st["decision_spans"] / docs,
        segments_per_doc=st["segments"] / docs,
        segments_decoded=st["segments_decoded"], segments_skipped=st["segments_skipped"],
        links_below_threshold=st["below_threshold"], unfinished_segments=st["unfinished"])
    settings = {k: v for k, v in linker.cfg.items()}
    result = {"system": args.name, "pipeline": args.pipeline, "sample": args.sample,
              "overrides": args.set or [], "threads": args.threads, "settings": settings,
              "threshold": linker.cfg["threshold"], "generative": st,
              "scores": el.score_sets(gold, pred, kb_ids, linker.cfg["spans_key"]),
              "scores_ents": el.score_sets(gold, pred, kb_ids, None), "speed": speed}
    el.write_run(args.name, result)


def comparison(full: Dict[str, Any], retr: Dict[str, Any]) -> Dict[str, Any]:
    """Generative calls and speed of INSGENEL-R relative to INSGENEL (same docs)."""
    f, r = full["speed"], retr["speed"]
    return {
        "insgenel_calls_per_doc": f["generative_calls_per_doc"],
        "insgenel_plain_greedy_calls_per_doc": f["output_tokens_per_doc"],
        "insgenel_r_calls_per_doc": r["generative_calls_per_doc"],
        "calls_saved_vs_speculative": 1 - r["generative_calls_per_doc"] / f["generative_calls_per_doc"],
        "calls_saved_vs_plain_greedy": 1 - r["generative_calls_per_doc"] / f["output_tokens_per_doc"],
        "speedup_docs_per_s": r["docs_per_s"] / f["docs_per_s"],
        "segments_skipped_share": r["segments_skipped"] / max(1.0, r["segments_skipped"] + r["segments_decoded"]),
        "micro_f1": {"insgenel": full["scores"]["micro"]["f1"], "insgenel_r": retr["scores"]["micro"]["f1"]},
        "load_avg": {"insgenel": [f["load_avg_before"], f["load_avg_after"]],
                     "insgenel_r": [r["load_avg_before"], r["load_avg_after"]]},
    }


def table(args) -> None:
    runs = {n: json.loads((el.RUNS / f"{n}.json").read_text()) for n in (args.full, args.retrieval)
            if (el.RUNS / f"{n}.json").exists()}
    lines = ["| system | micro P | micro R | micro F1 | docs/s | words/s | peak RSS GiB | "
             "generative calls/doc | output tokens/doc | segments decoded / skipped |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, run_ in runs.items():
        m, s = run_["scores"]["micro"], run_["speed"]
        lines.append(f"| {name} | {100 * m['precision']:.1f} | {100 * m['recall']:.1f} | "
                     f"{100 * m['f1']:.1f} | {s['docs_per_s']:.2f} | {s['words_per_s']:.0f} | "
                     f"{run_['peak_rss_gib']:.2f} | {s['generative_calls_per_doc']:.1f} | "
                     f"{s['output_tokens_per_doc']:.1f} | {s['segments_decoded']:.0f} / "
                     f"{s['segments_skipped']:.0f} |")
    text = "\n".join(lines) + "\n"
    if len(runs) == 2:
        cmp_ = comparison(runs[args.full], runs[args.retrieval])
        cmp_["date"] = max(r.get("date", "") for r in runs.values()) or None
        merge_json(el.RUNS.parent / "insgenel_calls.json", cmp_, depth=2)
        text += (f"\nINSGENEL-R vs INSGENEL: {100 * cmp_['calls_saved_vs_speculative']:.1f} % fewer "
                 f"generative calls than copy-speculative INSGENEL, "
                 f"{100 * cmp_['calls_saved_vs_plain_greedy']:.1f} % fewer than plain greedy "
                 f"INSGENEL (one call per output token); {cmp_['speedup_docs_per_s']:.2f}x docs/s.\n")
    print(text)


def status_rows(calls: Dict[str, Any], el_out: Dict[str, Any]) -> List[Dict[str, str]]:
    """The status table's INSGENEL rows (``benchmarks/status.py``): INSGENEL-R against
    the default mode of ``entqa_linker`` on the EL protocol (``el.json``), and its model
    calls per document against plain greedy decoding (``insgenel_calls.json``)."""
    systems = el_out.get("systems", {})
    ours, alt = systems.get("insgenel_r"), systems.get("entqa_default")
    rows = []
    if ours and alt:
        rows.append({"component": "`insgenel_linker` (INSGENEL-R)",
                     "task": "EL, 7 ELEVANT test sets, FB15k-237 KB: InKB micro F1",
                     "ours": el._f(ours["micro"]),
                     "alternative": f"`entqa_linker` (default mode): {el._f(alt['micro'])}",
                     "speed": f"{ours['words_per_s'] / alt['words_per_s']:.2f}x words/s "
                              f"({ours['words_per_s']:,.0f}, {ours.get('threads')} thread vs "
                              f"{alt['words_per_s']:,.0f}, {alt.get('threads')})",
                     "measured": el.measured(ours)})
    if "insgenel_r_calls_per_doc" in calls:
        rows.append({"component": "`insgenel_linker` (INSGENEL-R decision spans)",
                     "task": "same protocol: generative model calls per document",
                     "ours": f"{calls['insgenel_r_calls_per_doc']:.1f}",
                     "alternative": f"plain greedy decoding: {calls['insgenel_plain_greedy_calls_per_doc']:.1f}",
                     "speed": f"{calls['speedup_docs_per_s']:.2f}x docs/s of INSGENEL",
                     "measured": el.measured(ours) if ours else calls.get("date", "?")})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--name", required=True)
    p.add_argument("--pipeline", required=True)
    p.add_argument("--component", default="insgenel_linker")
    p.add_argument("--data-dir", default=str(el.REPO.parent / "shared" / "data"))
    p.add_argument("--kb", default=str(el.REPO / "kb" / "fb15k237_el"))
    p.add_argument("--sample", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--set", action="append", help="component setting KEY=JSON, e.g. top_k=32")
    p = sub.add_parser("table")
    p.add_argument("--full", default="insgenel")
    p.add_argument("--retrieval", default="insgenel_r")
    args = parser.parse_args(argv)
    {"run": run, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
