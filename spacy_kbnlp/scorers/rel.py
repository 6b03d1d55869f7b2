"""Relation metrics: micro P/R/F1 (given entities and end-to-end strict) and the
official SemEval-2010 Task 8 score.

Relations are read from ``doc._.rel_records`` (``{"head": [s, e], "tail": [s, e],
"label", "score"}``, token offsets) and entities from ``doc.ents``.

* ``rel_micro_*``: a predicted relation is correct when its head span, tail span
  and label equal a gold relation's (relation classification with given entities;
  the "boundaries" setting of end-to-end extraction).
* ``rel_strict_*``: also the entity types of head and tail must match (the type is
  the label of the ``doc.ents`` entity with that span on each side).
* ``rel_ner_*``: entity spans + labels of ``doc.ents``.
* Labels in ``negative_labels`` ("Other", "no_relation") are no relation: never
  counted. ``threshold`` drops predicted records scoring below it;
  ``top_label_only`` keeps the best-scoring label per (head, tail) pair.
* ``rel_semeval_*`` (``semeval=True``): the official SemEval-2010 Task 8 score, a
  re-implementation of ``semeval2010_task8_scorer-v1.2.pl``'s "(9+1)-way evaluation
  with directionality taken into account": per relation type (direction stripped),
  P = correct / (predicted as the type + predicted with the right type but the
  wrong direction), R = correct / gold, where correct needs the right direction;
  macro-averaged F1 over the relation types of the gold answers, Other excluded.
"""
import re
from collections import Counter, defaultdict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc
from spacy.util import registry

from ..errors import Errors
from ..extensions import install_extensions
from . import (bind_settings, doc_name, f_score, on_examples, prf, prf_dict, safe_div,
               token_offsets)

DEFAULT_NEGATIVE_LABELS = ("Other", "no_relation")
SEMEVAL_OTHER = "Other"
DIRECTION_RE = re.compile(r"\((e[12]),(e[12])\)$")
Offsets = Tuple[int, int]
Relation = Tuple[Offsets, Offsets, str]


# ---------------------------------------------------------------- SemEval-2010 Task 8

def undirected(label: str) -> str:
    """``Cause-Effect(e1,e2)`` -> ``Cause-Effect``."""
    return DIRECTION_RE.sub("", label)


def semeval2010_official(gold: Mapping[Any, str], pred: Mapping[Any, str],
                         other: str = SEMEVAL_OTHER) -> Dict[str, Any]:
    """The official SemEval-2010 Task 8 score from directed labels per sentence id.

    gold: id -> directed label (``Component-Whole(e2,e1)``, ``Other``), every sentence.
    pred: id -> directed label, for all or some of the ids (missing = skipped, which
        the official scorer treats like Other).
    Returns fractions (the perl script prints percentages): ``f`` (official: macro F1
    over the non-Other relation types of the gold answers), ``p``, ``r`` (macro),
    ``micro_p/r/f`` (Other excluded) and ``per_relation``."""
    unknown = [i for i in pred if i not in gold]
    if unknown:
        raise ValueError(Errors.KBE110.format(ids=unknown[:5], n=len(unknown)))
    answer = Counter(undirected(lab) for lab in gold.values())
    proposed: Counter = Counter()
    correct: Counter = Counter()
    wrong_dir: Counter = Counter()
    for sid, p_label in pred.items():
        g_label = gold[sid]
        p_rel, g_rel = undirected(p_label), undirected(g_label)
        if p_label == g_label:
            correct[g_rel] += 1
            proposed[p_rel] += 1
        elif p_rel == g_rel:
            wrong_dir[g_rel] += 1
        else:
            proposed[p_rel] += 1
    per_relation: Dict[str, Dict[str, float]] = {}
    for rel in sorted(answer):
        p = safe_div(correct[rel], proposed[rel] + wrong_dir[rel]) if proposed[rel] else 0.0
        r = safe_div(correct[rel], answer[rel])
        per_relation[rel] = {"p": p, "r": r, "f": f_score(p, r), "correct": correct[rel],
                             "proposed": proposed[rel], "wrong_direction": wrong_dir[rel],
                             "gold": answer[rel]}
    rels = [rel for rel in per_relation if rel != other]
    n = len(rels)
    out: Dict[str, Any] = {
        "p": safe_div(sum(per_relation[x]["p"] for x in rels), n),
        "r": safe_div(sum(per_relation[x]["r"] for x in rels), n),
        "f": safe_div(sum(per_relation[x]["f"] for x in rels), n),
    }
    c = sum(correct[x] for x in rels)
    mp = safe_div(c, sum(proposed[x] + wrong_dir[x] for x in rels))
    mr = safe_div(c, sum(answer[x] for x in rels))
    out.update(micro_p=mp, micro_r=mr, micro_f=f_score(mp, mr), per_relation=per_relation)
    return out


def semeval_directed_label(doc: Doc, record: Optional[Mapping[str, Any]],
                           offsets: Callable[[Any], Offsets],
                           negative_labels: Sequence[str]) -> str:
    """The SemEval directed label of a relation record between the doc's two entities
    (``e1`` = the first entity in the text): ``Label(e1,e2)`` when the head is e1,
    ``Label(e2,e1)`` when it is e2; negative labels and no record -> ``Other``."""
    if record is None or record["label"] in negative_labels:
        return SEMEVAL_OTHER
    ents = sorted(offsets(e) for e in doc.ents)
    head = offsets(doc[int(record["head"][0]):int(record["head"][1])])
    if len(ents) < 2:
        raise ValueError(Errors.KBE111.format(id=doc_name(doc), n=len(ents)))
    return f"{record['label']}(e1,e2)" if head == ents[0] else f"{record['label']}(e2,e1)"


# ---------------------------------------------------------------- Docs

def _identity(span: Any) -> Offsets:
    return (span.start, span.end)


def doc_relations(doc: Doc, *, threshold: Optional[float] = None, top_label_only: bool = False,
                  negative_labels: Sequence[str] = DEFAULT_NEGATIVE_LABELS,
                  remap: Optional[Callable[[Offsets], Offsets]] = None) -> Set[Relation]:
    """``{(head, tail, label)}`` of ``doc._.rel_records`` after threshold / top-label
    selection, without negative labels. ``remap`` maps token offsets (of another
    tokenization) onto the gold tokens."""
    install_extensions()
    best: Dict[Tuple[Offsets, Offsets], Tuple[float, str]] = {}
    out: Set[Relation] = set()
    for rec in doc._.rel_records or ():
        score = float(rec.get("score", 1.0))
        if threshold is not None and score < threshold:
            continue
        head = (int(rec["head"][0]), int(rec["head"][1]))
        tail = (int(rec["tail"][0]), int(rec["tail"][1]))
        if remap is not None:
            head, tail = remap(head), remap(tail)
        if top_label_only:
            if (head, tail) not in best or score > best[(head, tail)][0]:
                best[(head, tail)] = (score, rec["label"])
        else:
            out.add((head, tail, rec["label"]))
    if top_label_only:
        out = {(h, t, lab) for (h, t), (_, lab) in best.items()}
    return {r for r in out if r[2] not in negative_labels}


def score_relation_docs(
    pairs: Iterable[Tuple[Doc, Doc]],
    *,
    negative_labels: Sequence[str] = DEFAULT_NEGATIVE_LABELS,
    threshold: Optional[float] = None,
    top_label_only: bool = False,
    semeval: bool = False,
    per_label: bool = False,
) -> Dict[str, Any]:
    """Score ``(gold Doc, predicted Doc)`` pairs; see the module docstring.

    Keys: ``rel_micro_p/r/f``, ``rel_strict_p/r/f``, ``rel_ner_p/r/f``, counts
    ``rel_tp``, ``rel_fp``, ``rel_fn`` (of rel_micro), ``rel_docs``; with
    ``per_label`` ``rel_per_label`` = ``{label: {"p", "r", "f", "tp", "fp", "fn"}}``;
    with ``semeval`` ``rel_semeval_p/r/f`` (official macro scores) and
    ``rel_semeval_micro_f``."""
    negative_labels = tuple(negative_labels)
    counts = {"micro": [0, 0, 0], "strict": [0, 0, 0], "ner": [0, 0, 0]}
    labels: Dict[str, List[int]] = defaultdict(lambda: [0, 0, 0])
    sem_gold: Dict[int, str] = {}
    sem_pred: Dict[int, str] = {}
    n_docs = 0

    def add(kind: str, gold_set: Set[Any], pred_set: Set[Any]) -> None:
        c = counts[kind]
        c[0] += len(gold_set & pred_set)
        c[1] += len(pred_set - gold_set)
        c[2] += len(gold_set - pred_set)

    for gold, pred in pairs:
        to_gold = token_offsets(gold, pred)

        def remap(o: Offsets, pred: Doc = pred) -> Offsets:
            return to_gold(pred[o[0]:o[1]])

        g_rels = doc_relations(gold, negative_labels=negative_labels)
        p_rels = doc_relations(pred, threshold=threshold, top_label_only=top_label_only,
                               negative_labels=negative_labels, remap=remap)
        add("micro", g_rels, p_rels)
        g_types = {_identity(e): e.label_ for e in gold.ents}
        p_types = {to_gold(e): e.label_ for e in pred.ents}
        add("strict", {(h, g_types.get(h), t, g_types.get(t), lab) for h, t, lab in g_rels},
            {(h, p_types.get(h), t, p_types.get(t), lab) for h, t, lab in p_rels})
        add("ner", set(g_types.items()), set(p_types.items()))
        for h, t, lab in g_rels | p_rels:
            key = (h, t, lab)
            labels[lab][0 if key in g_rels and key in p_rels else 1 if key in p_rels else 2] += 1
        if semeval:
            g_rec = _first_positive(gold, negative_labels)
            sem_gold[n_docs] = semeval_directed_label(gold, g_rec, _identity, negative_labels)
            p_recs = sorted(((float(r.get("score", 1.0)), i, r) for i, r in
                             enumerate(pred._.rel_records or ())
                             if threshold is None or float(r.get("score", 1.0)) >= threshold),
                            key=lambda x: (-x[0], x[1]))
            if p_recs:
                sem_pred[n_docs] = semeval_directed_label(pred, p_recs[0][2], to_gold,
                                                          negative_labels)
        n_docs += 1
    out: Dict[str, Any] = {}
    for kind in ("micro", "strict", "ner"):
        out.update(prf_dict(f"rel_{kind}", *counts[kind]))
    tp, fp, fn = counts["micro"]
    out.update(rel_tp=tp, rel_fp=fp, rel_fn=fn, rel_docs=n_docs)
    if per_label:
        out["rel_per_label"] = {lab: dict(zip(("p", "r", "f"), prf(*c)), tp=c[0], fp=c[1], fn=c[2])
                                for lab, c in sorted(labels.items())}
    if semeval:
        official = semeval2010_official(sem_gold, sem_pred)
        out.update(rel_semeval_p=official["p"], rel_semeval_r=official["r"],
                   rel_semeval_f=official["f"], rel_semeval_micro_f=official["micro_f"])
    return out


def _first_positive(doc: Doc, negative_labels: Sequence[str]) -> Optional[Mapping[str, Any]]:
    for rec in doc._.rel_records or ():
        if rec["label"] not in negative_labels:
            return rec
    return None


score_relations = on_examples(score_relation_docs)


@registry.scorers("spacy_kbnlp.rel_scorer.v1")
def make_rel_scorer(
    negative_labels: List[str] = list(DEFAULT_NEGATIVE_LABELS),
    threshold: Optional[float] = None,
    top_label_only: bool = False,
    semeval: bool = False,
    per_label: bool = False,
) -> Callable[..., Dict[str, Any]]:
    """Relation scorer: ``rel_micro_*`` (given entities), ``rel_strict_*`` (end to end,
    with entity types), ``rel_ner_*`` and, with ``semeval``, the official
    SemEval-2010 Task 8 score ``rel_semeval_f``.

    negative_labels: labels meaning "no relation" (never counted).
    threshold: ignore predicted records with a lower score (None = keep all).
    top_label_only: keep only the best-scoring label per (head, tail) pair.
    Keyword arguments at call time (e.g. a component's cfg) override these."""
    return bind_settings(score_relation_docs, {
        "negative_labels": tuple(negative_labels), "threshold": threshold,
        "top_label_only": top_label_only, "semeval": semeval, "per_label": per_label})


__all__ = ["doc_relations", "make_rel_scorer", "score_relation_docs", "score_relations",
           "semeval2010_official", "semeval_directed_label", "undirected"]
