"""Text renderings of annotated Docs shared by the demonstration store, the prompts,
the RUIE reward model and the ETRAG relation instances.

**Input format** (``render_input``): the text with every entity marked as
``[E0 Peop: Alan Turing]`` (index in ``doc.ents`` order, then the label, then the
entity text). ``input_format="text"`` gives the plain text. Entities that overlap an
earlier one are not marked (they cannot be bracketed) and are counted by the caller.

**Target formats** (``render_target``), one item per line, ``none`` when empty:

* ``re``:  ``head text | label | tail text`` per relation of ``doc._.rel_records``
  (in record order), e.g. ``Alan Turing | Live_In | London``;
* ``ner``: ``entity text | label`` per entity of ``doc.ents``.

**Keyword-enhanced text** (``keyword_text``, RUIE §3.3): the marked input followed by
`` => `` and the target, so that the annotated spans and labels of a demonstration
are explicit keywords for the reward model's cross-encoder.

**Relation instances** (``pair_instances``): one instance per unordered pair of
entities (A before B in the text; the entities are ``doc.spans["entities"]``, which may
hold overlapping ones, else ``doc.ents``, see ``entity_spans``), labelled with a *directed* label: ``Label(e1,e2)``
when the gold relation goes from A to B, ``Label(e2,e1)`` when it goes from B to A,
and ``no_relation`` when the pair has none. ``instance_text`` marks A as
``[E1 type: ...]`` and B as ``[E2 type: ...]``; ``pair_region`` finds the marked pair
and the words between them again in such a text.
"""
import hashlib
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc, Span

from ..extensions import ENTITIES_KEY

NO_RELATION = "no_relation"
TASKS = ("re", "ner")
INPUT_FORMATS = ("marked", "text")
NONE_TARGET = "none"
FORWARD, BACKWARD = "(e1,e2)", "(e2,e1)"


def doc_key(doc: Doc) -> str:
    """The leave-one-out key of a Doc: a hash of its text (whitespace-normalized).

    Two docs with the same text count as the same document, so a query never
    retrieves a duplicate of itself either."""
    norm = " ".join(doc.text.split())
    return hashlib.sha1(norm.encode("utf8")).hexdigest()[:16]


def entity_spans(doc: Doc, spans_key: Optional[str] = ENTITIES_KEY, *,
                 with_relations: bool = True) -> List[Span]:
    """The spans that relation instances pair, sorted by position, without duplicates:
    the span group ``doc.spans[spans_key]`` when the doc has a non-empty one (it may
    hold overlapping entities), else ``doc.ents``; with ``with_relations`` also the
    relation arguments that are in neither (gold docs). Training and prediction pair
    the same spans."""
    group = doc.spans.get(spans_key) if spans_key else None
    spans = {(e.start, e.end): e for e in (group if group else doc.ents)}
    for rec in (doc._.rel_records or ()) if with_relations else ():
        for key in ("head", "tail"):
            s, e = int(rec[key][0]), int(rec[key][1])
            if (s, e) not in spans and 0 <= s < e <= len(doc):
                spans[(s, e)] = doc[s:e]
    return [spans[k] for k in sorted(spans)]


def non_overlapping(spans: Sequence[Span]) -> Tuple[List[Span], int]:
    """Spans that do not overlap an earlier (sorted) one, and how many were left out."""
    kept: List[Span] = []
    end = -1
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if span.start >= end:
            kept.append(span)
            end = span.end
    return kept, len(spans) - len(kept)


def _mark(doc: Doc, marks: Sequence[Tuple[Span, str]]) -> str:
    """Text with ``[tag: span text]`` around each (non-overlapping) span."""
    parts: List[str] = []
    pos = 0
    for span, tag in sorted(marks, key=lambda m: m[0].start):
        parts.append(doc.text[pos:span.start_char])
        parts.append(f"[{tag}: {span.text}]")
        pos = span.end_char
    parts.append(doc.text[pos:])
    return "".join(parts)


def _label(span: Span) -> str:
    return span.label_ or "ENT"


def render_input(doc: Doc, input_format: str = "marked") -> str:
    """The doc as a model input: plain text or text with ``[E0 label: text]`` marks."""
    if input_format == "text":
        return doc.text
    ents, _ = non_overlapping(list(doc.ents))
    return _mark(doc, [(e, f"E{i} {_label(e)}") for i, e in enumerate(ents)])


def render_target(doc: Doc, task: str = "re") -> str:
    """The gold annotation of ``doc`` in the target format of ``task`` (see module doc)."""
    if task == "ner":
        lines = [f"{e.text} | {_label(e)}" for e in doc.ents]
    else:
        lines = []
        for rec in doc._.rel_records or ():
            head = doc[int(rec["head"][0]): int(rec["head"][1])]
            tail = doc[int(rec["tail"][0]): int(rec["tail"][1])]
            lines.append(f"{head.text} | {rec['label']} | {tail.text}")
    return "\n".join(lines) if lines else NONE_TARGET


def keyword_text(input_text: str, target: str) -> str:
    """RUIE's keyword-enhanced demonstration text: marked input => target."""
    return f"{input_text} => {target.replace(chr(10), ' ; ')}"


def directed(label: str, head: Tuple[int, int], tail: Tuple[int, int]) -> str:
    """``label(e1,e2)`` if the head comes first in the text, else ``label(e2,e1)``."""
    return label + (FORWARD if tuple(head) <= tuple(tail) else BACKWARD)


def undirected(label: str) -> Tuple[str, bool]:
    """``(label, forward)`` for a directed label (``no_relation`` -> forward)."""
    if label.endswith(BACKWARD):
        return label[: -len(BACKWARD)], False
    if label.endswith(FORWARD):
        return label[: -len(FORWARD)], True
    return label, True


def doc_labels(doc: Doc, task: str = "re", directed_labels: bool = True) -> List[str]:
    """The gold labels a demonstration carries (sorted, unique): relation labels
    (directed by text order unless ``directed_labels`` is false) or entity labels."""
    labels: Set[str] = set()
    if task == "ner":
        labels.update(_label(e) for e in doc.ents)
    else:
        for rec in doc._.rel_records or ():
            h, t = tuple(rec["head"]), tuple(rec["tail"])
            labels.add(directed(rec["label"], h, t) if directed_labels else rec["label"])
    return sorted(labels)


def instance_text(doc: Doc, a: Span, b: Span) -> str:
    """The sentence with the pair marked: ``[E1 type: a]`` ... ``[E2 type: b]``."""
    if a.start < b.end and b.start < a.end:  # overlapping pair: mark the first, name the second
        return f"{_mark(doc, [(a, 'E1 ' + _label(a))])} [E2 {_label(b)}: {b.text}]"
    return _mark(doc, [(a, f"E1 {_label(a)}"), (b, f"E2 {_label(b)}")])


def pair_region(text: str) -> Optional[Tuple[int, int]]:
    """The characters of an :func:`instance_text` from the start of the first pair mark
    to the end of the second (``[E1 ...] ... [E2 ...]``, both entities and the words
    between them), or None when the text has no ``[E1 `` and ``[E2 `` mark."""
    starts = [text.find("[E1 "), text.find("[E2 ")]
    if min(starts) < 0:
        return None
    last = max(starts)
    close = text.find("]", last)
    return min(starts), (close + 1 if close >= 0 else len(text))


def pair_instances(doc: Doc, *, with_labels: bool = True,
                   spans_key: Optional[str] = ENTITIES_KEY) -> List[Dict[str, Any]]:
    """One record per unordered pair of :func:`entity_spans` (``doc.spans[spans_key]``,
    else ``doc.ents``; with ``with_labels`` plus the gold relation arguments):
    ``{"a": [s, e], "b": [s, e], "text", "label"}`` (``label`` only with
    ``with_labels``; see module doc). Pairs of identical spans are skipped;
    overlapping pairs are kept (marked as far as possible)."""
    ents = entity_spans(doc, spans_key, with_relations=with_labels)
    gold: Dict[Tuple[Tuple[int, int], Tuple[int, int]], str] = {}
    if with_labels:
        for rec in doc._.rel_records or ():
            h = (int(rec["head"][0]), int(rec["head"][1]))
            t = (int(rec["tail"][0]), int(rec["tail"][1]))
            key = (min(h, t), max(h, t))
            gold.setdefault(key, directed(rec["label"], h, t))
    out = []
    for i, a in enumerate(ents):
        for b in ents[i + 1:]:
            ka, kb = (a.start, a.end), (b.start, b.end)
            if ka == kb:
                continue
            rec: Dict[str, Any] = {"a": list(ka), "b": list(kb), "text": instance_text(doc, a, b)}
            if with_labels:
                rec["label"] = gold.get((ka, kb), NO_RELATION)
            out.append(rec)
    return out


def relation_from_instance(inst: Dict[str, Any], label: str) -> Optional[Dict[str, Any]]:
    """The relation record ``{"head", "tail", "label"}`` a directed label predicts for
    a pair instance, or None for ``no_relation``."""
    if label == NO_RELATION:
        return None
    base, forward = undirected(label)
    head, tail = (inst["a"], inst["b"]) if forward else (inst["b"], inst["a"])
    return {"head": list(head), "tail": list(tail), "label": base}


def label_match(query_labels: Iterable[str], demo_labels: Iterable[Iterable[str]]) -> Optional[float]:
    """Share of demonstrations that carry at least one of the query's labels (None
    when the query has no label)."""
    q = set(query_labels)
    demos = [set(d) for d in demo_labels]
    if not q or not demos:
        return None
    return sum(1 for d in demos if d & q) / len(demos)
