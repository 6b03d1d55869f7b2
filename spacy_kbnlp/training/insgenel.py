"""INSGENEL training data: gold EL Docs -> markup targets.

The protocol's training docs (ELEVANT gold Docs with ``doc._.el_gold``, annotated
only inside ``doc._.el_eval_span``) are cut into segments over their evaluation
span. A gold mention becomes ``<{> mention <}[> name <]>`` when it is a training
target of :func:`~spacy_kbnlp.training.entqa.gold_links` (a QID, not optional, not
a coreference mention) and its entity has a name: the canonical name of a KB entity,
or, for entities outside the KB, the gold name (the training-only KB extension of
the protocol: name, no description). Mentions without a name (NIL, "Unknown") stay
unmarked, so the model learns to leave such mentions alone. The markup is flat:
of nested gold labels the outermost is kept.
"""
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc

from ..models.insgenel import InsGenELModel, NameTable, name_units, segments, split_words
from .entqa import eval_token_range, extend_records, gold_links


def flat_links(links: Sequence[Tuple[int, int, str]]) -> Tuple[List[Tuple[int, int, str]], int]:
    """Non-overlapping selection of ``(start, end, qid)`` token spans: longest first
    (then leftmost); returns the kept links (by position) and how many were dropped."""
    taken: List[Tuple[int, int]] = []
    kept = []
    for s, e, q in sorted(links, key=lambda x: (-(x[1] - x[0]), x[0], x[2])):
        if any(s < b and a < e for a, b in taken):
            continue
        taken.append((s, e))
        kept.append((s, e, q))
    return sorted(kept), len(links) - len(kept)


def target_names(table: NameTable, docs: Sequence[Doc], tokenizer: Any,
                 splitter: Optional[Callable[[str], Any]] = None) -> Dict[str, Tuple[int, ...]]:
    """Name units the model is trained to write, per entity id: the canonical name
    of KB entities and the gold name of the docs' other entities."""

    class _Id:
        __slots__ = ("id",)

        def __init__(self, i: str):
            self.id = i

    out = {i: u for i, u in zip(table.ids, table.canonical) if u}
    records = extend_records([_Id(i) for i in table.ids], docs)[0][len(table.ids):]
    units = name_units(split_words([r.name for r in records], splitter), tokenizer)
    for r, u in zip(records, units):
        if u:
            out.setdefault(r.id, tuple(u))
    return out


def training_items(model: InsGenELModel, table: NameTable, docs: Sequence[Doc], *,
                   splitter: Optional[Callable[[str], Any]] = None, segment_length: int = 128,
                   stats: Optional[Dict[str, int]] = None) -> List[Dict[str, Any]]:
    """``{"input", "target", "truncated"}`` per segment of the docs' evaluation spans.
    ``stats`` counts ``segments``, ``mentions`` (marked), ``cut`` (crossing a segment
    edge), ``overlap`` (nested, dropped), ``unnamed`` (no name: left unmarked),
    ``lost`` (no subword unit) and ``truncated`` targets."""
    stats = stats if stats is not None else defaultdict(int)
    names = target_names(table, docs, model.tokenizer, splitter)
    items: List[Dict[str, Any]] = []
    for doc in docs:
        if not len(doc):
            continue
        units = model.doc_units(doc)
        lo, hi = eval_token_range(doc)
        links, dropped = flat_links(gold_links(doc))
        stats["overlap"] += dropped
        spans = []
        for s, e, q in links:
            if q not in names:
                stats["unnamed"] += 1
                continue
            span = units.word_span_to_units(s, e)
            if span is None:
                stats["lost"] += 1
                continue
            spans.append((span[0], span[1], names[q]))
        span = units.word_span_to_units(lo, hi) if hi > lo else None
        if span is None:
            continue
        for a, b in segments(units, segment_length, span[0], span[1]):
            inside = [(s - a, e - a, n) for s, e, n in spans if a <= s and e <= b]
            stats["cut"] += sum(1 for s, e, _ in spans if s < b and e > a and not (a <= s and e <= b))
            item = model.training_item(units.ids[a:b], inside)
            stats["segments"] += 1
            stats["mentions"] += len(inside)
            stats["truncated"] += int(item.pop("truncated"))
            items.append(item)
    return items
