"""Build ``elevant_cases.json`` from ELEVANT's published evaluation results.

ELEVANT (github.com/ad-freiburg/elevant, Apache-2.0, commit 8df933f) ships, per
linker and benchmark, the linked articles (``evaluation-results/<system>/
<system>.<benchmark>.linked_articles.jsonl``) and its own scores
(``...eval_results.json``). This script keeps what our scorer needs and no text:
per article the evaluation span, the gold labels (with the span expanded to word
boundaries as ELEVANT's ``word_boundary`` does) and the predicted mentions (their
span replaced by the word-boundary span where only that one is a gold span, which
is how ELEVANT matches), plus ELEVANT's InKB ("IGNORED") TP/FP/FN counts.

    python tests/scorers/data/make_elevant_cases.py ELEVANT_REPO_DIR OUTPUT_JSON
"""
import json
import sys
from pathlib import Path

SYSTEMS = ("ambiverse", "baseline", "neural_el", "oracle", "wat")
BENCHMARKS = ("kore50", "derczynski", "oke-2016-eval")
# larger ones for one system each: news-fair-v2 has nested labels, DATETIME/QUANTITY
# labels linked by the baseline and malformed gold ids; msnbc-updated longer articles
EXTRA = (("baseline", "news-fair-v2"), ("wat", "msnbc-updated"))
LABEL_KEYS = ("id", "entity_id", "type", "parent", "children", "optional", "desc")


def word_boundary(span, text):
    """ELEVANT's ``case_generator.word_boundary``."""
    start, end = span
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "'\"_"):
        start -= 1
    while end < len(text) - 1 and (text[end].isalnum() or text[end] in "'\"_"):
        end += 1
    if text[start] == '"' and '"' not in text[start + 1:end]:
        start += 1
    return [start, end]


def convert(articles_file):
    docs = []
    for line in open(articles_file, encoding="utf-8"):
        art = json.loads(line)
        text = art["text"]
        labels = []
        for lab in art["labels"]:
            rec = {k: lab[k] for k in LABEL_KEYS if k in lab}
            rec["span"] = list(lab["span"])
            wide = word_boundary(lab["span"], text)
            if wide != rec["span"]:
                rec["spans"] = [wide]
            labels.append(rec)
        gold_spans = {tuple(lab["span"]) for lab in labels}
        gold_spans |= {tuple(s) for lab in labels for s in lab.get("spans", ())}
        preds = []
        for men in art.get("entity_mentions") or ():
            span = list(men["span"])
            if tuple(span) not in gold_spans:
                wide = word_boundary(span, text)
                span = wide if tuple(wide) in gold_spans else span
            preds.append([span[0], span[1], men.get("id")])
        docs.append({"eval_span": art["evaluation_span"], "labels": labels, "preds": preds})
    return docs


def main(repo, output):
    out = []
    pairs = [(s, b) for s in SYSTEMS for b in BENCHMARKS] + list(EXTRA)
    for system, bench in pairs:
        base = Path(repo) / "evaluation-results" / system / f"{system}.{bench}"
        articles = Path(str(base) + ".linked_articles.jsonl")
        if not articles.exists():
            continue
        res = json.load(open(str(base) + ".eval_results.json"))
        counts = res["IGNORED"]["mention_types"]["all"]
        out.append({"system": system, "benchmark": bench,
                    "expected": [counts["true_positives"], counts["false_positives"],
                                 counts["false_negatives"]],
                    "docs": convert(articles)})
    with open(output, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
