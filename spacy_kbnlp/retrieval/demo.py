"""The relation part of the README demo: retrieved demonstrations and extracted
relations for a demo sentence, on CPU, offline, without LLM weights.

The demo sentences (``assets/demo/demo_relations.jsonl``, project JSONL, task ``re``)
form the demonstration store; the chosen sentence is the query and is left out of
the store (leave-one-out). Demonstrations come from the ``demo_retriever`` component
(BM25 or zero-shot MiniLM); relations between the sentence's gold entities come
from kNN label voting over the other sentences' entity pairs (``retrieval.knn``).

    from spacy_kbnlp.retrieval.demo import run_relation_demo, format_relation_demo
    print(format_relation_demo(run_relation_demo("assets/demo")))
"""
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

DEMO_RELATIONS = "demo_relations.jsonl"


def run_relation_demo(assets: Union[str, Path], *, sentence: Optional[str] = None, top_k: int = 3,
                      retriever: str = "dense", encoder=None, k: int = 3) -> Dict[str, Any]:
    """Demonstrations and kNN relations for the demo sentence with id ``sentence``
    (default: the first). ``encoder``: an ``HFEncoder`` (default: bundled MiniLM)."""
    import spacy
    from spacy.tokens import Doc, Span
    from spacy.training import Example

    from ..encoders.hf import HFEncoder
    from ..readers import read_docs
    from .knn import KNNRelationClassifier

    timings: Dict[str, float] = {}
    t = time.perf_counter()
    nlp = spacy.blank("en")
    docs = list(read_docs(Path(assets) / DEMO_RELATIONS, "jsonl", nlp, task="re"))
    ids = [str((d._.source or {}).get("id", i)) for i, d in enumerate(docs)]
    qi = ids.index(sentence) if sentence is not None else 0
    gold = docs[qi]
    encoder = encoder if encoder is not None else HFEncoder().load()
    retr = nlp.add_pipe("demo_retriever", config={"retriever": retriever, "top_k": top_k})
    retr.encoder = encoder
    nlp.initialize(lambda: [Example(d, d) for d in docs])
    timings["store_s"] = time.perf_counter() - t

    # the query: gold tokens and entities, no relations
    query = Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])
    query.ents = [Span(query, e.start, e.end, label=e.label_) for e in gold.ents]
    t = time.perf_counter()
    query = nlp(query)  # leave-one-out: the sentence itself is in the store
    timings["retrieve_s"] = time.perf_counter() - t

    t = time.perf_counter()
    knn = KNNRelationClassifier(encoder, k=k).fit([d for i, d in enumerate(docs) if i != qi])
    query._.rel_records = knn.predict_docs([query])[0]
    timings["extract_s"] = time.perf_counter() - t
    relations: List[Dict[str, Any]] = [
        {"head": h.text, "label": l, "tail": tl.text, "score": round(s, 3)}
        for h, tl, l, s in query._.relations]
    gold_rel = [{"head": h.text, "label": l, "tail": tl.text} for h, tl, l, _ in gold._.relations]
    return {"id": ids[qi], "text": gold.text, "entities": [(e.text, e.label_) for e in gold.ents],
            "demonstrations": query._.demonstrations, "relations": relations, "gold": gold_rel,
            "retriever": retriever, "timings": timings}


def format_relation_demo(result: Dict[str, Any]) -> str:
    """A readable block for the terminal."""
    lines = [f"Sentence {result['id']}: {result['text']}",
             "Entities: " + ", ".join(f"{t} ({l})" for t, l in result["entities"]),
             f"Top demonstrations ({result['retriever']} retrieval, leave-one-out):"]
    for i, d in enumerate(result["demonstrations"], start=1):
        lines.append(f"  {i}. [{d['score']:.3f}] {d['text']}")
        for target in d["target"].splitlines():
            lines.append(f"       -> {target}")
    lines.append("Extracted relations (kNN label voting over the other sentences' entity pairs):")
    for r in result["relations"] or [{"head": "-", "label": "(none)", "tail": "-", "score": 0.0}]:
        lines.append(f"  {r['head']} | {r['label']} | {r['tail']}  ({r['score']:.2f})")
    lines.append("Gold: " + "; ".join(f"{r['head']} | {r['label']} | {r['tail']}" for r in result["gold"]))
    return "\n".join(lines)
