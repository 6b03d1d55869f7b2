"""Run the assembled spacy-experimental coref pipeline (peer venv) over gold docs and
write its predictions as a DocBin (clusters in doc.spans["coref_clusters_N"]) plus the
timing, for ``benchmarks/coref.py peer``.

usage: coref_predict.py PIPELINE GOLD.spacy OUT.spacy TIMING.json [--threads 1]
"""
import json
import os
import sys
import time
from pathlib import Path

import spacy
import torch
from spacy.tokens import Doc, DocBin


def main(pipeline, gold_path, out_path, timing_path, threads=1):
    torch.set_num_threads(int(threads))
    nlp = spacy.load(pipeline)
    gold = list(DocBin().from_disk(gold_path).get_docs(nlp.vocab))
    inputs = [Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d])
              for d in gold]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    preds = list(nlp.pipe(inputs, batch_size=1))
    seconds = time.perf_counter() - start
    load_avg = [load_before, os.getloadavg()[0]]
    out = DocBin()
    for doc in preds:
        clean = Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
        keys = sorted((k for k in doc.spans if k.startswith("coref_clusters_")),
                      key=lambda k: int(k.rsplit("_", 1)[1]))
        for i, key in enumerate(keys, start=1):
            clean.spans[f"coref_clusters_{i}"] = [clean[s.start:s.end] for s in doc.spans[key]]
        out.add(clean)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(timing_path).parent.mkdir(parents=True, exist_ok=True)
    out.to_disk(out_path)
    with open(timing_path, "w") as f:
        json.dump({"seconds": seconds, "threads": int(threads), "load_avg": load_avg,
                   "pipeline": str(pipeline),
                   "spacy": spacy.__version__, "pipes": nlp.pipe_names}, f, indent=1)
    print(f"{len(preds)} docs in {seconds:.1f} s")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else 1
    if "--threads" in sys.argv:
        args.remove(str(threads))
    main(*args[:4], threads=threads)
