"""Entity-linking metrics: InKB micro/macro P/R/F1 with ELEVANT's gold semantics.

The pure function :func:`score_el_document` takes ELEVANT-style label records and
predicted ``(start_char, end_char, kb_id)`` triples and returns TP/FP/FN counts.
It follows ELEVANT's evaluation in its InKB mode ("IGNORED": unknown entities are
ignored on both sides; ``src/elevant/evaluation/case_generator.py`` and
``case.py`` of ad-freiburg/elevant):

* gold labels whose id is ``<NIL>``, ``<NO_MAPPING>``, malformed or (with a KB
  restriction ``kb_ids``) not in the KB are *unknown*: missing them is no FN, a
  link predicted on them is a FP, an unlinked/NIL prediction on them is ignored;
* labels that are ``optional``, ``desc``, ``DATETIME`` or ``QUANTITY`` are
  optional: no FN when missed, no TP when found; a *wrong* link on them is a FP
  (any QID linked on a DATETIME/QUANTITY label is wrong: see docs/scoring.md);
* nested labels are alternatives (``parent``/``children``): a root counts one TP
  or FN; it is replaced by its children when any child is detected correctly
  (ELEVANT's "factor"), and then is a FN if any relevant child is a FN;
* a linked prediction on no gold label, inside the evaluation span, is a FP;
  a wrong link on a known gold label is both a FN and a FP.

Predictions are matched to gold labels by exact character span ("strong"; the
gold span as written or as aligned to tokens by the reader) or by overlap
("weak", GERBIL's weak annotation match: the overlapping prediction with the
right id is preferred, then the largest overlap). Micro scores sum the counts over
documents; macro scores average per-document P, R and F1 with GERBIL's
convention (a document with nothing to find and nothing found scores 1.0).
"""
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Tuple, Union)

from spacy.tokens import Doc
from spacy.util import registry

from ..errors import Errors, Warnings
from ..extensions import install_extensions
from . import bind_settings, doc_name, on_examples, prf, prf_dict

QID_RE = re.compile(r"^Q[1-9]\d*$")
NIL = "<NIL>"
UNLINKED_IDS = ("", "NIL", "<NIL>", "<NO_MAPPING>")
DATETIME_QUANTITY = ("DATETIME", "QUANTITY")
MATCHING = ("strong", "weak")
LINK_ATTRS = {"kb_id": "kb_id_", "id": "id_"}
OTHER_TYPE = "OTHER"          # gold labels without a coarse type (ELEVANT's OTHER)
UNLABELLED_TYPE = "NO_GOLD"   # per-type bucket of FPs on spans without a gold label
TP, FP, FN = "TP", "FP", "FN"

Span = Tuple[int, int]
Prediction = Tuple[int, int, Optional[str]]


# ---------------------------------------------------------------- id normalisation

def normalize_gold_id(entity_id: Optional[str], kb_ids: Optional[Set[str]] = None) -> str:
    """The gold id if it is known, ``DATETIME``/``QUANTITY`` as is, else ``<NIL>``.

    With ``kb_ids`` an id is known when it is in the KB (any id scheme); without, when
    it is a Wikidata QID (so malformed ELEVANT ids such as "Cummings" are NIL)."""
    if entity_id in DATETIME_QUANTITY:
        return str(entity_id)
    if not entity_id or entity_id in UNLINKED_IDS:
        return NIL
    if kb_ids is not None:
        return entity_id if entity_id in kb_ids else NIL
    return entity_id if QID_RE.match(entity_id) else NIL


def _count_ids(labels: Iterable[Mapping[str, Any]], counts: List[int]) -> None:
    """Add the numbers of QID and of other (non-NIL, non-DATETIME/QUANTITY) gold ids."""
    for rec in labels:
        eid = rec.get("entity_id")
        if not eid or eid in UNLINKED_IDS or eid in DATETIME_QUANTITY:
            continue
        counts[0 if QID_RE.match(eid) else 1] += 1


def normalize_pred_id(kb_id: Optional[str]) -> str:
    """The predicted id, or ``<NIL>`` for a mention that is not linked."""
    if kb_id is None or kb_id in UNLINKED_IDS:
        return NIL
    return kb_id


def _known(entity_id: str) -> bool:
    return entity_id != NIL and entity_id not in DATETIME_QUANTITY


def label_types(record: Mapping[str, Any]) -> List[str]:
    """ELEVANT's type list of a label (``|``-joined coarse types), DATETIME/QUANTITY removed."""
    types = [t for t in str(record.get("type") or "").split("|") if t]
    types = [t for t in types if t not in DATETIME_QUANTITY]
    return types or [OTHER_TYPE]


def is_optional_label(record: Mapping[str, Any]) -> bool:
    """ELEVANT's ``GroundtruthLabel.is_optional``: optional, desc, DATETIME or QUANTITY
    (as the id or among the types)."""
    if record.get("optional") or record.get("desc"):
        return True
    if record.get("entity_id") in DATETIME_QUANTITY:
        return True
    types = str(record.get("type") or "").split("|")
    return any(t in DATETIME_QUANTITY for t in types)


# ---------------------------------------------------------------- one document

@dataclass
class _Label:
    id: Any
    spans: List[Span]           # acceptable exact spans: as written, then token-aligned
    gold: str                   # normalised id
    optional: bool
    parent: Any
    children: List[Any]
    types: List[str]
    record: Mapping[str, Any]

    @property
    def main_span(self) -> Span:
        return self.spans[-1]

    @property
    def known(self) -> bool:
        return _known(self.gold)


@dataclass
class ELDocResult:
    """Counts of one document, and the evaluation cases behind them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    per_type: Dict[str, List[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    cases: List[Dict[str, Any]] = field(default_factory=list)


def _eval_type(label: Optional[_Label], pred: Optional[str],
               has_non_optional_children: bool = False) -> Set[str]:
    """ELEVANT ``Case._get_linking_eval_type`` in mode IGNORED, for factor != 0."""
    if label is None:
        return {FP} if pred is not None and _known(pred) else set()
    if pred is None:
        if label.optional and not has_non_optional_children:
            return set()
        return {FN} if label.known else set()
    if label.optional:
        if not _known(pred):
            return set()
        # ELEVANT also accepts a link to an entity that is itself a date/quantity on a
        # DATETIME/QUANTITY label (by its Wikidata types); we have no types: it is a FP
        return set() if pred == label.gold else {FP}
    if label.known:
        if _known(pred):
            return {TP} if pred == label.gold else {FN, FP}
        return {FN}
    return {FP} if _known(pred) else set()


def _overlap(a: Span, b: Span) -> int:
    return min(a[1], b[1]) - max(a[0], b[0])


def _match(labels: Dict[Any, _Label], preds: List[Tuple[Span, str]], matching: str
           ) -> Dict[Any, int]:
    """label id -> index of the prediction that detects it."""
    chosen: Dict[Any, int] = {}
    if matching == "strong":
        by_span: Dict[Span, int] = {}
        for i, (span, _) in enumerate(preds):
            by_span.setdefault(span, i)
        for lid, lab in labels.items():
            for span in lab.spans:
                if span in by_span:
                    chosen[lid] = by_span[span]
                    break
        return chosen
    for lid, lab in labels.items():
        best: Optional[Tuple[Tuple[int, int, int], int]] = None
        for i, (span, pid) in enumerate(preds):
            overlap = max(_overlap(span, s) for s in lab.spans)
            if overlap <= 0:
                continue
            key = (int(pid == lab.gold), overlap, -i)
            if best is None or key > best[0]:
                best = (key, i)
        if best is not None:
            chosen[lid] = best[1]
    return chosen


def score_el_document(
    labels: Sequence[Mapping[str, Any]],
    predictions: Sequence[Prediction],
    eval_span: Optional[Span] = None,
    *,
    kb_ids: Optional[Set[str]] = None,
    matching: str = "strong",
) -> ELDocResult:
    """Score the predictions of one document against its gold labels.

    labels: ELEVANT label records ``{"id", "start_char", "end_char", "entity_id",
        "optional", "desc", "type", "parent", "children"}`` (``doc._.el_gold``); an
        optional ``"spans"`` list gives further acceptable exact spans (the reader's
        token-aligned span). ``span: [start, end]`` is accepted for
        ``start_char``/``end_char``.
    predictions: ``(start_char, end_char, kb_id)``; ``kb_id`` None, "", "NIL" or
        "<NIL>" = a mention that is not linked.
    eval_span: ``(start_char, end_char)``; labels (with their children) and
        predictions outside it are not scored. None = everything.
    kb_ids: restrict InKB to these ids (gold ids outside count as NIL).
    matching: "strong" (exact span) or "weak" (overlap).
    """
    if matching not in MATCHING:
        raise ValueError(Errors.KBE100.format(matching=matching, options=", ".join(MATCHING)))
    labs: Dict[Any, _Label] = {}
    ids = {rec["id"] for rec in labels}
    # children as listed, plus labels that name the label as parent (project JSONL
    # records may give only ``parent``)
    kids: Dict[Any, List[Any]] = defaultdict(list)
    for rec in labels:
        for c in rec.get("children") or ():
            if c in ids and c not in kids[rec["id"]]:
                kids[rec["id"]].append(c)
    for rec in labels:
        parent = rec.get("parent")
        if parent in ids and rec["id"] not in kids[parent]:
            kids[parent].append(rec["id"])
    for rec in labels:
        if "start_char" in rec:
            raw = (int(rec["start_char"]), int(rec["end_char"]))
        else:
            raw = (int(rec["span"][0]), int(rec["span"][1]))
        spans = [raw] + [(int(s), int(e)) for s, e in rec.get("spans") or () if (s, e) != raw]
        labs[rec["id"]] = _Label(
            id=rec["id"], spans=spans, gold=normalize_gold_id(rec.get("entity_id"), kb_ids),
            optional=is_optional_label(rec), parent=rec.get("parent"),
            children=kids[rec["id"]],
            types=label_types(rec), record=rec)
    preds: List[Tuple[Span, str]] = []
    seen: Set[Span] = set()
    for start, end, kb_id in predictions:
        span = (int(start), int(end))
        if span in seen:
            continue
        seen.add(span)
        preds.append((span, normalize_pred_id(kb_id)))
    chosen = _match(labs, preds, matching)

    def pred_of(lid: Any) -> Optional[str]:
        return preds[chosen[lid]][1] if lid in chosen else None

    factors: Dict[Any, int] = {}

    def factor(lid: Any, siblings: bool = False) -> int:
        """ELEVANT ``CaseGenerator.recursively_determine_factor``."""
        lab = labs[lid]
        pid = pred_of(lid)
        if pid is not None and pid == lab.gold:
            if not siblings:
                factors[lid] = 1
            return 1
        best_child = max((factor(c) for c in lab.children), default=0)
        if lab.parent is None or lab.parent not in labs:
            value = 1 if best_child == 0 else 0
            if not siblings:
                factors[lid] = value
            return value
        value = 0
        parent = labs[lab.parent]
        if pid is not None and best_child == 0 and parent.main_span != lab.main_span:
            value = 1
        elif pid is None and not siblings and best_child == 0:
            for sib in parent.children:
                if sib != lid and factor(sib, siblings=True) > 0:
                    value = 1
                    break
        if not siblings:
            factors[lid] = value
        return max(best_child, value)

    def is_root(lab: _Label) -> bool:
        return lab.parent is None or lab.parent not in labs

    roots = [lab for lab in labs.values() if is_root(lab)]
    for lab in roots:
        factor(lab.id)
    types: Dict[Any, Set[str]] = {}
    for lab in labs.values():
        f = factors.get(lab.id, 0)
        types[lab.id] = _eval_type(lab, pred_of(lab.id)) if f else set()

    def has_non_optional_child(lab: _Label) -> bool:
        return any(not labs[c].optional or has_non_optional_child(labs[c]) for c in lab.children)

    def child_types(lab: _Label) -> Set[str]:
        out: Set[str] = set()
        for c in lab.children:
            out |= child_types(labs[c])
            if factors.get(c, 0):
                out |= types[c]
        return out

    for lab in roots:
        if not lab.children:
            continue
        if factors[lab.id] == 0:
            found = child_types(lab)
            types[lab.id] = {FN} if FN in found else {TP} if found == {TP} else set()
        elif lab.optional:
            types[lab.id] = _eval_type(lab, pred_of(lab.id), has_non_optional_child(lab))

    def root_of(lab: _Label) -> _Label:
        while not is_root(lab):
            lab = labs[lab.parent]
        return lab

    def inside(span: Span) -> bool:
        return eval_span is None or (eval_span[0] <= span[0] and span[1] <= eval_span[1])

    result = ELDocResult()
    for lab in labs.values():
        if not inside(root_of(lab).spans[0]):
            continue
        t = types[lab.id]
        f = factors.get(lab.id, 0)
        counted = {x for x in t if (x == FP and f) or (x != FP and is_root(lab))}
        for kind in counted:
            setattr(result, kind.lower(), getattr(result, kind.lower()) + 1)
            for typ in lab.types:
                result.per_type[typ][(TP, FP, FN).index(kind)] += 1
        pid = pred_of(lab.id)
        result.cases.append({"span": list(lab.spans[0]), "gold": lab.gold, "pred": pid,
                             "label_id": lab.id, "factor": f, "counted": sorted(counted)})
    used = set(chosen.values())
    for i, (span, pid) in enumerate(preds):
        if i in used or not inside(span):
            continue
        t = _eval_type(None, pid)
        if t:
            result.fp += 1
            result.per_type[UNLABELLED_TYPE][1] += 1
        result.cases.append({"span": list(span), "gold": None, "pred": pid, "label_id": None,
                             "factor": 1, "counted": sorted(t)})
    return result


# ---------------------------------------------------------------- Docs

def el_gold_labels(doc: Doc) -> List[Dict[str, Any]]:
    """Label records of a gold Doc: ``doc._.el_gold`` (with the token-aligned span
    added to ``spans``), or, for Docs without it, one root label per entity in
    ``doc.ents`` (``kb_id_`` as the id; no kb_id = NIL)."""
    install_extensions()
    records = doc._.el_gold
    if records is None:
        return [{"id": i, "start_char": e.start_char, "end_char": e.end_char,
                 "entity_id": e.kb_id_ or NIL, "type": None, "parent": None, "children": []}
                for i, e in enumerate(doc.ents)]
    out = []
    for rec in records:
        rec = dict(rec)
        if rec.get("start") is not None:
            span = doc[int(rec["start"]): int(rec["end"])]
            rec["spans"] = [(span.start_char, span.end_char)]
        out.append(rec)
    return out


def el_predictions(doc: Doc, spans_key: Optional[str] = None,
                   link_attr: str = "kb_id") -> List[Prediction]:
    """``(start_char, end_char, kb_id)`` of the predicted mentions: ``doc.ents`` or,
    with ``spans_key``, the span group (which may hold nested/overlapping spans).
    ``link_attr`` "kb_id" reads ``span.kb_id_`` (entity linkers); "id" reads
    ``span.id_`` (e.g. an ``entity_ruler`` whose patterns carry the QID as ``id``)."""
    if link_attr not in LINK_ATTRS:
        raise ValueError(Errors.KBE109.format(name="link_attr", value=link_attr,
                                              why="use 'kb_id' or 'id'"))
    spans = doc.spans[spans_key] if spans_key else doc.ents
    return [(s.start_char, s.end_char, getattr(s, LINK_ATTRS[link_attr]) or None) for s in spans]


def eval_span_of(doc: Doc) -> Optional[Span]:
    ev = doc._.el_eval_span
    return (int(ev[0]), int(ev[1])) if ev is not None else None


def score_el_docs(
    pairs: Iterable[Tuple[Doc, Doc]],
    *,
    spans_key: Optional[str] = None,
    kb_ids: Optional[Set[str]] = None,
    matching: str = "strong",
    per_type: bool = False,
    link_attr: str = "kb_id",
) -> Dict[str, Any]:
    """Score ``(gold Doc, predicted Doc)`` pairs; see the module docstring.

    Keys: ``el_micro_p/r/f``, ``el_macro_p/r/f``, counts ``el_tp``, ``el_fp``,
    ``el_fn``, ``el_gold`` (evaluable gold mentions = tp + fn), ``el_pred``
    (counted predictions = tp + fp), ``el_docs``, and with ``per_type``
    ``el_per_type`` = ``{type: {"p", "r", "f", "tp", "fp", "fn"}}``."""
    install_extensions()
    tp = fp = fn = n_docs = missing_key = 0
    id_kinds = [0, 0]   # gold ids: QIDs, other ids
    macro = [0.0, 0.0, 0.0]
    types: Dict[str, List[int]] = defaultdict(lambda: [0, 0, 0])
    for gold, pred in pairs:
        if gold.text != pred.text:
            raise ValueError(Errors.KBE101.format(id=doc_name(gold), gold=gold.text[:60],
                                                  pred=pred.text[:60]))
        if spans_key and spans_key not in pred.spans:
            missing_key += 1
            preds: List[Prediction] = []
        else:
            preds = el_predictions(pred, spans_key, link_attr)
        labels = el_gold_labels(gold)
        if kb_ids is None:
            _count_ids(labels, id_kinds)
        res = score_el_document(labels, preds, eval_span_of(gold), kb_ids=kb_ids,
                                matching=matching)
        tp, fp, fn, n_docs = tp + res.tp, fp + res.fp, fn + res.fn, n_docs + 1
        for i, value in enumerate(gerbil_prf(res.tp, res.fp, res.fn)):
            macro[i] += value
        for typ, counts in res.per_type.items():
            for i in range(3):
                types[typ][i] += counts[i]
    if spans_key and n_docs and missing_key == n_docs:
        warnings.warn(Warnings.KBW100.format(key=spans_key, n=n_docs))
    if id_kinds[1] and id_kinds[1] >= id_kinds[0]:
        warnings.warn(Warnings.KBW102.format(n=id_kinds[1], total=sum(id_kinds)))
    out: Dict[str, Any] = {}
    p, r, f = prf(tp, fp, fn)
    out.update(el_micro_p=p, el_micro_r=r, el_micro_f=f)
    mp, mr, mf = (m / n_docs if n_docs else 0.0 for m in macro)
    out.update(el_macro_p=mp, el_macro_r=mr, el_macro_f=mf)
    out.update(el_tp=tp, el_fp=fp, el_fn=fn, el_gold=tp + fn, el_pred=tp + fp, el_docs=n_docs)
    if per_type:
        out["el_per_type"] = {
            typ: dict(tp=c[0], fp=c[1], fn=c[2],
                      **{k[1:]: v for k, v in prf_dict("", *c).items()})
            for typ, c in sorted(types.items())}
    return out


def gerbil_prf(tp: int, fp: int, fn: int) -> Tuple[float, float, float]:
    """Per-document P, R, F1 as GERBIL computes them for macro averages:
    1.0 each when there was nothing to find and nothing was found, 0.0 each when
    nothing correct was found but something was expected or predicted."""
    if tp == 0:
        return (1.0, 1.0, 1.0) if fp == 0 and fn == 0 else (0.0, 0.0, 0.0)
    return prf(tp, fp, fn)


score_el = on_examples(score_el_docs)


def load_kb_ids(path: Union[str, Path]) -> Set[str]:
    """Entity ids of a KB (entity JSONL, the Wikidata-style JSON, or a DenseKB folder)."""
    from ..kb.records import load_entity_ids

    if not Path(path).exists():
        raise ValueError(Errors.KBE102.format(path=path))
    return set(load_entity_ids(path))


@registry.scorers("spacy_kbnlp.el_scorer.v1")
def make_el_scorer(
    spans_key: Optional[str] = None,
    kb_path: Optional[str] = None,
    matching: str = "strong",
    per_type: bool = False,
    link_attr: str = "kb_id",
) -> Callable[..., Dict[str, Any]]:
    """Entity-linking scorer: InKB micro/macro P/R/F1 (``el_*`` keys).

    spans_key: score the span group ``doc.spans[spans_key]`` instead of ``doc.ents``.
    kb_path: KB that defines InKB (entity JSONL, Wikidata JSON or DenseKB folder);
        gold ids outside it count as NIL. Read on the first call.
    matching: "strong" (exact span + id) or "weak" (overlap + id).
    per_type: add ``el_per_type``.
    link_attr: "kb_id" (``span.kb_id_``) or "id" (``span.id_``, entity_ruler pattern ids).
    Keyword arguments at call time (e.g. a component's cfg) override these."""
    if matching not in MATCHING:
        raise ValueError(Errors.KBE100.format(matching=matching, options=", ".join(MATCHING)))
    settings: Dict[str, Any] = {"spans_key": spans_key, "matching": matching,
                                "per_type": per_type, "kb_ids": None, "link_attr": link_attr}
    base = bind_settings(score_el_docs, settings)
    loaded: Dict[str, Set[str]] = {}

    def el_scorer(examples: Iterable[Any], **kwargs: Any) -> Dict[str, Any]:
        if kb_path is not None and kwargs.get("kb_ids") is None:
            if "ids" not in loaded:
                loaded["ids"] = load_kb_ids(kb_path)
            kwargs["kb_ids"] = loaded["ids"]
        return base(examples, **kwargs)

    return el_scorer


__all__ = ["ELDocResult", "el_gold_labels", "el_predictions", "gerbil_prf", "load_kb_ids",
           "make_el_scorer", "normalize_gold_id", "normalize_pred_id", "score_el",
           "score_el_docs", "score_el_document"]


# ---------------------------------------------------------------- threshold calibration
def threshold_grid(scores: List[float], n: int) -> List[float]:
    """Every effective threshold (midway between adjacent distinct link scores, and
    0), thinned to about ``n`` evenly spaced quantiles and rounded to 6 decimals, so
    that the value survives the JSON/config round trip unchanged."""
    distinct = sorted(set(scores))
    cuts = [0.0] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])]
    if len(cuts) > n:
        step = len(cuts) / n
        cuts = [cuts[int(i * step)] for i in range(n)]
    return sorted({round(c, 6) for c in cuts})


def threshold_curve(per_doc: Sequence[Any], kb_ids: Optional[Set[str]] = None,
                    n_thresholds: int = 400) -> List[Dict[str, float]]:
    """InKB micro P/R/F1 for every effective threshold. ``per_doc``: per gold doc
    ``(labels, eval_span, links)`` with ``labels`` = ``el_gold_labels(gold)`` and
    ``links`` = ``(start_char, end_char, kb_id, score)``; a link counts when its
    score is above the threshold."""
    scores = [x[3] for _, _, links in per_doc for x in links]
    curve = []
    for t in threshold_grid(scores, n_thresholds):
        tp = fp = fn = 0
        for labels, span, links in per_doc:
            res = score_el_document(labels, [x[:3] for x in links if x[3] > t], span,
                                    kb_ids=kb_ids)
            tp, fp, fn = tp + res.tp, fp + res.fp, fn + res.fn
        p_, r_, f_ = prf(tp, fp, fn)
        curve.append({"threshold": t, "p": p_, "r": r_, "f": f_})
    return curve


def best_threshold(curve: List[Dict[str, float]]) -> Dict[str, float]:
    """The point of highest F1 (the highest threshold among ties)."""
    return max(curve, key=lambda c: (c["f"], c["threshold"]))
