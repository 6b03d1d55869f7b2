"""ELEVANT entity-linking benchmarks (``*.benchmark.jsonl``) -> gold Docs.

One JSON object per line: ``id``, ``text``, ``labels`` (character ``span``,
``entity_id``, ``name``, ``type``, ``parent``/``children``, ``optional``,
``desc``, ``coref``), ``evaluation_span`` and, for Wiki-Fair, ``title``, ``url``,
``title_synonyms`` and ``hyperlinks``. Text is tokenized with ``nlp.make_doc``.

Layout on the Doc (see docs/formats.md):

* ``doc.ents``: root labels (no parent) that are not optional (neither
  ``optional`` nor ``desc``) with a QID, inside the evaluation span; label
  ``ENTITY``, ``kb_id_`` = QID.
* ``doc.spans["el_gold"]``: every label, nested ones too; label ``ENTITY`` (QID),
  ``NIL`` (``<NIL>``, ``<NO_MAPPING>`` or a malformed id), ``DATETIME`` or
  ``QUANTITY``; ``kb_id_`` = the QID or the raw id.
* ``doc._.el_gold``: one JSON record per label (``start``/``end`` are token
  offsets, None when the span could not be aligned, which is counted).
* ``doc._.el_eval_span`` = ``[start_char, end_char]``.
* ``doc._.source``: ``format``, ``file``, ``line``, ``id``, ``title`` and the
  Wiki-Fair ``url``, ``title_synonyms``, ``hyperlinks`` as in the file.
"""
import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..core.locations import parse_line
from ..errors import Errors
from ..extensions import install_extensions
from .spans import (DEFAULT_POLICY, AlignmentStats, GoldCorpus, align_char_span, counted,
                    list_files, set_ents, start_stats, where)

FORMAT = "elevant"
PATTERNS = ("*.benchmark.jsonl", "*.jsonl")
EL_SPAN_KEY = "el_gold"
QID_RE = re.compile(r"^Q[1-9]\d*$")
NIL_IDS = ("<NIL>", "<NO_MAPPING>")
DOC_FIELDS = ("id", "text", "labels")
LABEL_FIELDS = ("id", "span", "entity_id")
EXTRA_SOURCE_FIELDS = ("title", "url", "title_synonyms", "hyperlinks")


def label_class(entity_id: str) -> str:
    """``ENTITY`` for a QID, ``DATETIME``/``QUANTITY`` as is, else ``NIL``."""
    if QID_RE.match(entity_id):
        return "ENTITY"
    if entity_id in ("DATETIME", "QUANTITY"):
        return entity_id
    return "NIL"


def is_optional(record: Dict[str, Any]) -> bool:
    """Scored as optional by ELEVANT: ``optional``, ``desc``, DATETIME, QUANTITY."""
    return bool(record.get("optional") or record.get("desc")) or \
        record.get("entity_id") in ("DATETIME", "QUANTITY")


def _check_type(value: Any, types: Tuple[type, ...], loc: str, name: str, expected: str) -> Any:
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise ValueError(Errors.KBE059.format(loc=loc, field=name, expected=expected, value=value))
    return value


def _check_pair(value: Any, loc: str, name: str) -> Tuple[int, int]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(x, int) and not isinstance(x, bool) for x in value)
    if not ok:
        raise ValueError(Errors.KBE059.format(loc=loc, field=name, expected="[start, end] (ints)",
                                              value=value))
    return int(value[0]), int(value[1])


def build_el_doc(
    nlp: Language,
    text: str,
    labels: List[Dict[str, Any]],
    *,
    eval_span: Optional[Tuple[int, int]] = None,
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    loc: str = "",
    doc: Optional[Doc] = None,
    field: str = "labels",
) -> Doc:
    """Gold EL Doc from ELEVANT-style label dicts (``span`` = char offsets).
    Shared by the ELEVANT and JSONL readers."""
    install_extensions()
    if doc is None:
        doc = nlp.make_doc(text)
    n = len(doc.text)
    if eval_span is None:
        eval_span = (0, n)
    ev0, ev1 = eval_span
    if not (0 <= ev0 <= ev1 <= n):
        raise ValueError(Errors.KBE055.format(loc=loc + " (evaluation_span)", start=ev0, end=ev1,
                                              length=n))
    records: List[Dict[str, Any]] = []
    group: List[Span] = []
    ents: List[Span] = []
    for j, lab in enumerate(labels):
        lloc = f"{loc} {field}[{j}]"
        if not isinstance(lab, dict):
            raise ValueError(Errors.KBE059.format(loc=lloc, field="label", expected="object",
                                                  value=lab))
        for key in LABEL_FIELDS:
            if key not in lab:
                raise ValueError(Errors.KBE054.format(loc=lloc, field=key,
                                                      expected=", ".join(LABEL_FIELDS)))
        start, end = _check_pair(lab["span"], lloc, "span")
        entity_id = _check_type(lab["entity_id"], (str,), lloc, "entity_id", "str")
        cls = label_class(entity_id)
        span = align_char_span(doc, start, end, policy=policy, stats=stats, loc=lloc, label=cls,
                               kb_id=entity_id)
        parent = lab.get("parent")
        if parent is not None:
            _check_type(parent, (int,), lloc, "parent", "int or null")
        children = lab.get("children") or []
        _check_type(children, (list, tuple), lloc, "children", "list of ints")
        coref = lab.get("coref")
        rec = {
            "id": _check_type(lab["id"], (int,), lloc, "id", "int"),
            "start_char": start, "end_char": end,
            "start": span.start if span is not None else None,
            "end": span.end if span is not None else None,
            "entity_id": entity_id,
            "name": lab.get("name"),
            "type": lab.get("type"),
            "optional": bool(lab.get("optional", False)),
            "desc": bool(lab.get("desc", False)),
            "coref": None if coref is None else bool(coref),
            "parent": parent,
            "children": [int(c) for c in children],
        }
        records.append(rec)
        if span is None:
            continue
        group.append(span)
        if (parent is None and cls == "ENTITY" and not is_optional(rec)
                and ev0 <= start and end <= ev1):
            ents.append(span)
    doc.spans[EL_SPAN_KEY] = group
    set_ents(doc, ents, stats)
    doc._.el_gold = records
    doc._.el_eval_span = [ev0, ev1]
    return doc


def read_elevant(
    path: Union[str, Path],
    nlp: Language,
    *,
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    limit: int = 0,
) -> Iterator[Doc]:
    """Yield one gold Doc per line of the ELEVANT file(s) at ``path`` (a file, or
    a folder: every ``*.benchmark.jsonl`` / ``*.jsonl`` in sorted order)."""
    stats, own = start_stats(stats, FORMAT, policy)
    return counted(_elevant_docs(path, nlp, policy, stats), stats, own, limit)


def json_lines(path: Union[str, Path], patterns: Tuple[str, ...],
               fmt: str) -> Iterator[Tuple[Path, int, str, Dict[str, Any]]]:
    """``(file, line number, "file:line", object)`` for each non-empty line of the
    JSON-lines file(s) at ``path``; a malformed line raises KBE053 naming its place."""
    for file in list_files(path, patterns, fmt=fmt):
        with open(file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    loc = where(file, lineno)
                    yield file, lineno, loc, parse_line(line, loc)


def _elevant_docs(path: Union[str, Path], nlp: Language, policy: str,
                  stats: AlignmentStats) -> Iterator[Doc]:
    for file, lineno, loc, obj in json_lines(path, PATTERNS, FORMAT):
        for key in DOC_FIELDS:
            if key not in obj:
                raise ValueError(Errors.KBE054.format(loc=loc, field=key,
                                                      expected=", ".join(DOC_FIELDS)))
        text = _check_type(obj["text"], (str,), loc, "text", "str")
        labels = _check_type(obj["labels"], (list,), loc, "labels", "list")
        ev = obj.get("evaluation_span")
        eval_span = _check_pair(ev, loc, "evaluation_span") if ev is not None else None
        doc = build_el_doc(nlp, text, labels, eval_span=eval_span, policy=policy,
                           stats=stats, loc=loc)
        source: Dict[str, Any] = {"format": FORMAT, "file": str(file), "line": lineno,
                                  "id": obj["id"]}
        for key in EXTRA_SOURCE_FIELDS:
            if key in obj:
                source[key] = obj[key]
        doc._.source = source
        yield doc


@registry.readers("spacy_kbnlp.ElevantCorpus.v1")
def create_elevant_reader(
    path: Union[str, Path],
    limit: int = 0,
    shuffle: bool = False,
    policy: str = DEFAULT_POLICY,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from ELEVANT benchmark JSONL file(s); ``limit`` 0 = all."""
    return GoldCorpus(read_elevant, path, limit=limit, shuffle=shuffle, policy=policy)
