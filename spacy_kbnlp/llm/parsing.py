"""Robust parsing of LLM answers in the target format, as far as possible.

Accepted per item: ``head | label | tail`` (also ``;``, tab or ``,``-separated
triples, ``(head; label; tail)``, bullets and numbering), a JSON list of objects with
``head``/``label``/``tail`` (or ``dep``/``dest``/``relation``, spacy-llm's names),
and entity references by text (exact, then case- and punctuation-insensitive), by
marker (``E0``) or as the marked form ``[E0 type: text]``. Labels match exactly, then
ignoring case, spaces, ``-`` and ``_``. What cannot be used is returned as errors
``{"kind", "detail"}`` with kinds ``unparsable``, ``unknown_entity``,
``unknown_label``, ``self_relation``, ``duplicate`` and ``empty_answer``.
"""
import json
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span

Error = Dict[str, str]
MARK_RE = re.compile(r"^\[?\s*E(\d+)\b[^:\]]*:?\s*(.*?)\]?$")
BULLET_RE = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)]|\(\d+\))\s*")
NONE_RE = re.compile(r"^\W*(none|no relations?|no entities|n/a|nothing)\W*$", re.I)


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def _err(kind: str, detail: str) -> Error:
    return {"kind": kind, "detail": detail[:200]}


class EntityResolver:
    """Map an answer's entity reference to one of ``ents`` (None if unknown)."""

    def __init__(self, ents: Sequence[Span]):
        self.ents = list(ents)
        self.exact: Dict[str, Span] = {}
        self.loose: Dict[str, Span] = {}
        for e in self.ents:  # first occurrence wins for repeated texts
            self.exact.setdefault(e.text, e)
            self.loose.setdefault(_norm(e.text), e)

    def __call__(self, ref: str) -> Optional[Span]:
        ref = ref.strip().strip("\"'`")
        if ref in self.exact:
            return self.exact[ref]
        m = MARK_RE.match(ref)
        if m:
            idx, text = int(m.group(1)), m.group(2).strip()
            if text and text in self.exact:
                return self.exact[text]
            if 0 <= idx < len(self.ents) and (not text or _norm(text) == _norm(self.ents[idx].text)):
                return self.ents[idx]
        return self.loose.get(_norm(ref)) if _norm(ref) else None


def match_label(label: str, labels: Sequence[str]) -> Optional[str]:
    label = label.strip().strip("\"'`")
    if label in labels:
        return label
    key = _norm(label)
    for cand in labels:
        if _norm(cand) == key:
            return cand
    return None


def _json_items(answer: str) -> Optional[List[Any]]:
    start = answer.find("[")
    if start < 0 or "{" not in answer:
        return None
    try:
        data = json.loads(answer[start: answer.rfind("]") + 1])
    except ValueError:
        return None
    return data if isinstance(data, list) else None


def _split(line: str, n: int) -> Optional[List[str]]:
    line = BULLET_RE.sub("", line).strip()
    if line.startswith("(") and line.endswith(")"):
        line = line[1:-1]
    for sep in ("|", "\t", ";", "->", ","):
        parts = [p.strip() for p in line.split(sep)]
        if len(parts) == n and all(parts):
            return parts
    return None


def _lines(answer: str) -> List[str]:
    return [l for l in (x.strip() for x in answer.splitlines()) if l and not NONE_RE.match(l)]


def parse_relations(answer: Optional[str], ents: Sequence[Span],
                    labels: Sequence[str]) -> Tuple[List[Dict[str, Any]], List[Error]]:
    """``(records, errors)``: relation records ``{"head": [s, e], "tail": [s, e],
    "label"}`` (unique, in answer order) and what could not be used."""
    if answer is None or not answer.strip():
        return [], [_err("empty_answer", "")]
    resolve = EntityResolver(ents)
    triples: List[Tuple[str, str, str, str]] = []  # head, label, tail, source
    errors: List[Error] = []
    items = _json_items(answer)
    if items is not None:
        for item in items:
            if isinstance(item, dict):
                h = item.get("head", item.get("dep"))
                t = item.get("tail", item.get("dest"))
                l = item.get("label", item.get("relation"))
                if h is not None and t is not None and l is not None:
                    triples.append((_ref(h, ents), str(l), _ref(t, ents), json.dumps(item)))
                    continue
            errors.append(_err("unparsable", json.dumps(item)))
    else:
        for line in _lines(answer):
            parts = _split(line, 3)
            if parts is None:
                errors.append(_err("unparsable", line))
            else:
                triples.append((parts[0], parts[1], parts[2], line))
    records: List[Dict[str, Any]] = []
    seen = set()
    for h_ref, l_ref, t_ref, src in triples:
        head, tail, label = resolve(h_ref), resolve(t_ref), match_label(l_ref, labels)
        if head is None or tail is None:
            errors.append(_err("unknown_entity", src))
        elif label is None:
            errors.append(_err("unknown_label", src))
        elif (head.start, head.end) == (tail.start, tail.end):
            errors.append(_err("self_relation", src))
        else:
            key = (head.start, head.end, tail.start, tail.end, label)
            if key in seen:
                errors.append(_err("duplicate", src))
                continue
            seen.add(key)
            records.append({"head": [head.start, head.end], "tail": [tail.start, tail.end],
                            "label": label})
    return records, errors


def _ref(value: Any, ents: Sequence[Span]) -> str:
    """spacy-llm answers give entity indices (``"dep": 0``): map ints to ``E<i>``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"E{value}"
    return str(value)


def parse_entities(answer: Optional[str], doc: Doc,
                   labels: Sequence[str]) -> Tuple[List[Tuple[int, int, str]], List[Error]]:
    """``(spans, errors)`` for an entity answer: ``(start, end, label)`` token spans
    of the first unused occurrence of each entity text (non-overlapping)."""
    if answer is None or not answer.strip():
        return [], [_err("empty_answer", "")]
    spans: List[Tuple[int, int, str]] = []
    errors: List[Error] = []
    taken: List[Tuple[int, int]] = []
    for line in _lines(answer):
        parts = _split(line, 2)
        if parts is None:
            errors.append(_err("unparsable", line))
            continue
        label = match_label(parts[1], labels) if labels else parts[1]
        if label is None:
            errors.append(_err("unknown_label", line))
            continue
        span = None
        for m in re.finditer(re.escape(parts[0]), doc.text):
            cand = doc.char_span(m.start(), m.end(), alignment_mode="expand")
            if cand is not None and all(cand.end <= s or cand.start >= e for s, e in taken):
                span = cand
                break
        if span is None:
            errors.append(_err("unknown_entity", line))
            continue
        taken.append((span.start, span.end))
        spans.append((span.start, span.end, label))
    return spans, errors
