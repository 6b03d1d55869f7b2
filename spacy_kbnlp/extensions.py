"""All Doc/Span extensions of spacy_kbnlp, registered by one idempotent function.

Values are JSON-like (str keys, lists, numbers) so that they survive
``doc.to_bytes()``, ``DocBin(store_user_data=True)`` and ``nlp.pipe(n_process>1)``.
Views with tuple keys or Span objects are read-only getters over those records.
Getters are module-level functions (never lambdas) so that spaCy can pickle the
extension registry into worker processes.
"""
from typing import Any, Dict, List, Optional, Tuple

from spacy.tokens import Doc, Span

from .errors import Errors

DEFAULT_CLUSTER_PREFIX = "coref_clusters"
#: span group of every relation-extraction entity, overlapping ones included (the JSONL
#: reader sets it; ``doc.ents`` can only hold non-overlapping spans)
ENTITIES_KEY = "entities"


def matches_coref_prefix(prefix: str, key: str) -> bool:
    """Whether ``key`` is ``f"{prefix}_{N}"`` for a number N (spacy-experimental convention)."""
    head, sep, tail = key.rpartition("_")
    return sep == "_" and head == prefix and tail.isdigit()


def get_coref_clusters(doc: Doc, prefix: str = DEFAULT_CLUSTER_PREFIX) -> List[List[Span]]:
    """Clusters stored in ``doc.spans[f"{prefix}_N"]`` as lists of Spans, ordered by N."""
    keys = [k for k in doc.spans if matches_coref_prefix(prefix, k)]
    keys.sort(key=lambda k: int(k.rsplit("_", 1)[1]))
    return [list(doc.spans[k]) for k in keys]


def set_coref_clusters(
    doc: Doc, clusters: List[List[Tuple[int, int]]], prefix: str = DEFAULT_CLUSTER_PREFIX
) -> None:
    """Write clusters of token spans ``(start, end)`` (end exclusive) to ``doc.spans``,
    replacing any clusters already stored under ``prefix``."""
    for key in [k for k in doc.spans if matches_coref_prefix(prefix, k)]:
        del doc.spans[key]
    for i, cluster in enumerate(clusters, start=1):
        doc.spans[f"{prefix}_{i}"] = [doc[s:e] for s, e in cluster]


def _coref_clusters_getter(doc: Doc) -> List[List[Span]]:
    return get_coref_clusters(doc)


def _span_coref_cluster_getter(span: Span) -> Optional[int]:
    """The number N of the first ``coref_clusters_N`` group holding a mention with the
    span's boundaries, or None. Reads ``doc.spans`` (the Doc-level store), so spans
    with the same offsets share the value, as spaCy's span extensions do anyway."""
    for n, cluster in enumerate(get_coref_clusters(span.doc), start=1):
        for mention in cluster:
            if mention.start == span.start and mention.end == span.end:
                return n
    return None


PRONOUNS = frozenset(
    "i me my mine myself you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself we us our ours ourselves they them their theirs themselves this "
    "that these those who whom whose which one".split())
POSSESSIVES = frozenset("my your his her its our their whose".split())


def _is_pronoun(span: Span) -> bool:
    if len(span) != 1:
        return False
    tok = span[0]
    return tok.pos_ == "PRON" or tok.lower_ in PRONOUNS


def cluster_representative(cluster: List[Span]) -> Span:
    """A cluster's representative mention: the first one that is not a pronoun, else the first."""
    return next((m for m in cluster if not _is_pronoun(m)), cluster[0])


def resolve_coref_text(doc: Doc, prefix: str = DEFAULT_CLUSTER_PREFIX) -> str:
    """``doc.text`` with each mention replaced by its cluster's representative mention
    (the first one that is not a pronoun, else the first); possessive pronouns become
    ``representative's``. Only outermost mentions are replaced."""
    replace: List[Tuple[int, int, str]] = []
    for cluster in get_coref_clusters(doc, prefix):
        if not cluster:
            continue
        rep = cluster_representative(cluster)
        for m in cluster:
            if m.start == rep.start and m.end == rep.end:
                continue
            text = rep.text
            if len(m) == 1 and m[0].lower_ in POSSESSIVES:
                text += "'s"
            replace.append((m.start, m.end, text))
    replace.sort(key=lambda r: (r[0], -r[1]))
    parts: List[str] = []
    pos = 0
    for start, end, text in replace:
        if start < pos:
            continue  # nested inside a replaced mention
        parts.append(doc[pos:start].text_with_ws)
        parts.append(text + doc[end - 1].whitespace_)
        pos = end
    parts.append(doc[pos:].text_with_ws)
    return "".join(parts)


def _resolved_text_getter(doc: Doc) -> str:
    return resolve_coref_text(doc)


def _kb_rels_getter(doc: Doc) -> Dict[Tuple[int, int], Dict[str, float]]:
    """``{(head.start, tail.start): {label: score}}``, the spaCy rel_component format."""
    out: Dict[Tuple[int, int], Dict[str, float]] = {}
    for rec in doc._.rel_records or ():
        key = (int(rec["head"][0]), int(rec["tail"][0]))
        out.setdefault(key, {})[rec["label"]] = float(rec.get("score", 1.0))
    return out


def _relations_getter(doc: Doc) -> List[Tuple[Span, Span, str, float]]:
    """``[(head Span, tail Span, label, score)]`` over ``doc._.rel_records``."""
    return [
        (doc[rec["head"][0]: rec["head"][1]], doc[rec["tail"][0]: rec["tail"][1]],
         rec["label"], float(rec.get("score", 1.0)))
        for rec in doc._.rel_records or ()
    ]


def add_relation(doc: Doc, head: Span, tail: Span, label: str, score: float = 1.0) -> None:
    """Append one relation record ``{"head": [s, e], "tail": [s, e], "label", "score"}``."""
    records = list(doc._.rel_records or ())
    records.append({"head": [head.start, head.end], "tail": [tail.start, tail.end],
                    "label": label, "score": float(score)})
    doc._.rel_records = records


def find_link(span: Span) -> Optional[Dict[str, Any]]:
    """The ``doc._.kb_links`` record with the span's boundaries and ``kb_id_`` (or,
    for a span without kb_id, the best-scoring record with its boundaries)."""
    best = None
    for rec in span.doc._.kb_links or ():
        if rec["start"] != span.start or rec["end"] != span.end:
            continue
        if span.kb_id_ and rec["kb_id"] == span.kb_id_:
            return rec
        if not span.kb_id_ and (best is None or rec["score"] > best["score"]):
            best = rec
    return best


def _link_score_getter(span: Span) -> Optional[float]:
    rec = find_link(span)
    return None if rec is None else float(rec["score"])


def _kb_candidates_getter(span: Span) -> List[Tuple[str, float]]:
    rec = find_link(span)
    return [] if rec is None else [(str(k), float(s)) for k, s in rec.get("candidates") or ()]


# name -> set_extension kwargs
DOC_EXTENSIONS: Dict[str, Dict[str, Any]] = {
    # relations: list of {"head": [start, end], "tail": [start, end], "label": str, "score": float}
    "rel_records": {"default": None},
    "kb_rels": {"getter": _kb_rels_getter},
    "relations": {"getter": _relations_getter},
    # entity linking gold (ELEVANT): list of label records, and the [start, end) char span scored
    "el_gold": {"default": None},
    "el_eval_span": {"default": None},
    # coreference view over doc.spans["coref_clusters_N"]
    "coref_clusters": {"getter": _coref_clusters_getter},
    # the text with every mention replaced by its cluster's representative mention
    "resolved_text": {"getter": _resolved_text_getter},
    # provenance of a converted document (file, line or document id)
    "source": {"default": None},
    # retrieved demonstrations: list of {"id", "text", "input", "target", "labels", "score"}
    # (best first; written by demo_retriever)
    "demonstrations": {"default": None},
    # LLM answer problems: list of {"kind", "detail"} (written by icl_relation_extractor)
    "llm_errors": {"default": None},
    # entity links: list of {"start", "end", "kb_id", "label", "score", "candidates":
    # [[kb_id, score], ...] (ranked alternatives), "key": span group} (written by entqa_linker)
    "kb_links": {"default": None},
    # EntQA retrieval per passage: list of {"start", "end", "candidates": [[kb_id, score], ...]}
    "entqa_candidates": {"default": None},
}
SPAN_EXTENSIONS: Dict[str, Dict[str, Any]] = {
    # number N of the coref_clusters_N group holding this mention (getter over doc.spans)
    "coref_cluster": {"getter": _span_coref_cluster_getter},
    # score and ranked (kb_id, score) alternatives of a linked span (getters over doc._.kb_links)
    "link_score": {"getter": _link_score_getter},
    "kb_candidates": {"getter": _kb_candidates_getter},
}


def _as_tuple(spec: Dict[str, Any]) -> Tuple[Any, Any, Any, Any]:
    return (spec.get("default"), spec.get("method"), spec.get("getter"), spec.get("setter"))


def _install(cls: Any, specs: Dict[str, Dict[str, Any]]) -> None:
    for name, spec in specs.items():
        if not cls.has_extension(name):
            cls.set_extension(name, **spec)
        elif cls.get_extension(name) != _as_tuple(spec):
            raise ValueError(Errors.KBE154.format(name=name, obj=cls.__name__))


def install_extensions() -> None:
    """Register every extension once; safe to call many times."""
    _install(Doc, DOC_EXTENSIONS)
    _install(Span, SPAN_EXTENSIONS)
