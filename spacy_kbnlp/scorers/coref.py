"""Coreference metrics: MUC, B³, CEAFe, CoNLL F1 and LEA.

Clusters are lists of mentions; a mention is any hashable value, in the Doc
adapters a ``(start, end)`` token span (end exclusive). Every metric returns the
numerators and denominators of recall and precision for one document,
``(r_num, r_den, p_num, p_den)``; :func:`score_coref_clusters` sums them over the
documents (micro average, as the CoNLL-2012 reference scorer does) before dividing,
and the CoNLL F1 is the mean of the MUC, B³ and CEAFe F1s.

Definitions (K = key/gold clusters, R = response/predicted clusters):

* MUC (Vilain et al. 1995): recall ``Σ_k (|k| - |p(k, R)|) / Σ_k (|k| - 1)``,
  where ``p(k, R)`` is the partition of k by R (mentions of k missing from R each
  form their own part); precision swaps K and R.
* B³ (Bagga & Baldwin 1998): recall ``Σ_k Σ_r |k∩r|² / |k|  /  Σ_k |k|``.
* CEAFe (Luo 2005): ``φ4(k, r) = 2|k∩r| / (|k| + |r|)``; with the one-to-one
  alignment of K and R that maximises ``Σ φ4`` (Kuhn-Munkres,
  ``scipy.optimize.linear_sum_assignment``), recall ``Σ φ4 / |K|``, precision
  ``Σ φ4 / |R|``.
* LEA (Moosavi & Strube 2016): recall
  ``Σ_k |k| · Σ_r link(k∩r) / link(k)  /  Σ_k |k|`` with ``link(n) = n(n-1)/2``;
  a singleton cluster has one self-link, resolved when its mention is a singleton
  of the other side (the convention of the LEA authors' implementation).

Singletons are scored as given (``drop_singletons`` removes them from both sides
first). Mentions that occur in more than one cluster of a side are kept in the
first one only (KBW101).
"""
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Hashable, Iterable, List, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc
from spacy.util import registry

from ..errors import Warnings
from ..extensions import DEFAULT_CLUSTER_PREFIX, get_coref_clusters, install_extensions
from . import bind_settings, doc_name, f_score, on_examples, safe_div, token_offsets

Mention = Hashable
Clusters = Sequence[Sequence[Mention]]
Counts = Tuple[float, float, float, float]  # r_num, r_den, p_num, p_den
METRICS = ("muc", "b3", "ceafe", "lea")


def _index(clusters: Sequence[Sequence[Mention]]) -> Dict[Mention, int]:
    return {m: i for i, c in enumerate(clusters) for m in c}


def normalize_clusters(clusters: Clusters, drop_singletons: bool = False
                       ) -> Tuple[List[List[Mention]], List[Mention]]:
    """Disjoint, duplicate-free, non-empty clusters, and the mentions that were
    repeated across clusters (kept in their first cluster)."""
    home: Dict[Mention, int] = {}
    repeated: List[Mention] = []
    out: List[List[Mention]] = []
    for i, cluster in enumerate(clusters):
        kept: List[Mention] = []
        for m in cluster:
            if m in home:
                if home[m] != i and m not in repeated:
                    repeated.append(m)
                continue
            home[m] = i
            kept.append(m)
        if kept and not (drop_singletons and len(kept) == 1):
            out.append(kept)
    return out, repeated


def _muc_side(clusters: Clusters, other: Dict[Mention, int]) -> Tuple[float, float]:
    num = den = 0
    for c in clusters:
        parts = len({other[m] for m in c if m in other}) + sum(1 for m in c if m not in other)
        num += len(c) - parts
        den += len(c) - 1
    return num, den


def muc(key: Clusters, response: Clusters) -> Counts:
    """MUC ``(r_num, r_den, p_num, p_den)``."""
    rn, rd = _muc_side(key, _index(response))
    pn, pd = _muc_side(response, _index(key))
    return rn, rd, pn, pd


def _b3_side(clusters: Clusters, other: Dict[Mention, int]) -> Tuple[float, float]:
    num = 0.0
    den = 0
    for c in clusters:
        overlaps = Counter(other[m] for m in c if m in other)
        num += sum(n * n for n in overlaps.values()) / len(c)
        den += len(c)
    return num, den


def b_cubed(key: Clusters, response: Clusters) -> Counts:
    """B³ ``(r_num, r_den, p_num, p_den)``."""
    rn, rd = _b3_side(key, _index(response))
    pn, pd = _b3_side(response, _index(key))
    return rn, rd, pn, pd


def ceafe(key: Clusters, response: Clusters) -> Counts:
    """Entity-based CEAF ``(r_num, r_den, p_num, p_den)``; the numerators are the
    similarity of the best one-to-one cluster alignment."""
    from scipy.optimize import linear_sum_assignment

    if not key or not response:
        return 0.0, len(key), 0.0, len(response)
    rindex = _index(response)
    sim = np.zeros((len(key), len(response)))
    for i, k in enumerate(key):
        for j, n in Counter(rindex[m] for m in k if m in rindex).items():
            sim[i, j] = 2.0 * n / (len(k) + len(response[j]))
    rows, cols = linear_sum_assignment(sim, maximize=True)
    total = float(sim[rows, cols].sum())
    return total, len(key), total, len(response)


def _links(n: int) -> float:
    return n * (n - 1) / 2.0


def _lea_side(clusters: Clusters, other_clusters: Clusters, other: Dict[Mention, int]
              ) -> Tuple[float, float]:
    num = 0.0
    den = 0
    for c in clusters:
        if len(c) == 1:
            m = c[0]
            resolved = 1.0 if m in other and len(other_clusters[other[m]]) == 1 else 0.0
        else:
            overlaps = Counter(other[m] for m in c if m in other)
            resolved = sum(_links(n) for n in overlaps.values()) / _links(len(c))
        num += len(c) * resolved
        den += len(c)
    return num, den


def lea(key: Clusters, response: Clusters) -> Counts:
    """LEA ``(r_num, r_den, p_num, p_den)``."""
    rn, rd = _lea_side(key, response, _index(response))
    pn, pd = _lea_side(response, key, _index(key))
    return rn, rd, pn, pd


METRIC_FUNCS: Dict[str, Callable[[Clusters, Clusters], Counts]] = {
    "muc": muc, "b3": b_cubed, "ceafe": ceafe, "lea": lea}


def mention_counts(key: Clusters, response: Clusters) -> Tuple[int, int, int]:
    """Mention detection ``(tp, fp, fn)`` over the clustered mentions."""
    gold = {m for c in key for m in c}
    pred = {m for c in response for m in c}
    return len(gold & pred), len(pred - gold), len(gold - pred)


def score_coref_clusters(
    documents: Iterable[Tuple[Clusters, Clusters]],
    *,
    drop_singletons: bool = False,
    names: Iterable[str] = (),
) -> Dict[str, Any]:
    """Micro-averaged scores over ``(key clusters, response clusters)`` per document.

    Keys: ``coref_{muc,b3,ceafe,lea}_{p,r,f}``, ``coref_conll_f`` (mean of the MUC,
    B³ and CEAFe F1), mention detection ``coref_mention_{p,r,f}``, ``coref_docs``."""
    sums: Dict[str, List[float]] = {m: [0.0, 0.0, 0.0, 0.0] for m in METRICS}
    mentions = [0, 0, 0]
    n_docs = 0
    name_iter = iter(names)
    for key, response in documents:
        name = next(name_iter, str(n_docs))
        key, rep_k = normalize_clusters(key, drop_singletons)
        response, rep_r = normalize_clusters(response, drop_singletons)
        for side, rep in (("gold", rep_k), ("predicted", rep_r)):
            if rep:
                warnings.warn(Warnings.KBW101.format(n=len(rep), side=side, doc=name,
                                                     example=rep[0]))
        for metric, func in METRIC_FUNCS.items():
            for i, value in enumerate(func(key, response)):
                sums[metric][i] += value
        for i, value in enumerate(mention_counts(key, response)):
            mentions[i] += value
        n_docs += 1
    out: Dict[str, Any] = {}
    for metric in METRICS:
        rn, rd, pn, pd = sums[metric]
        p, r = safe_div(pn, pd), safe_div(rn, rd)
        out.update({f"coref_{metric}_p": p, f"coref_{metric}_r": r,
                    f"coref_{metric}_f": f_score(p, r)})
    out["coref_conll_f"] = (out["coref_muc_f"] + out["coref_b3_f"] + out["coref_ceafe_f"]) / 3
    tp, fp, fn = mentions
    p, r = safe_div(tp, tp + fp), safe_div(tp, tp + fn)
    out.update(coref_mention_p=p, coref_mention_r=r, coref_mention_f=f_score(p, r))
    out["coref_docs"] = n_docs
    return out


def doc_clusters(doc: Doc, prefix: str = DEFAULT_CLUSTER_PREFIX,
                 offsets: Callable[[Any], Tuple[int, int]] = None) -> List[List[Tuple[int, int]]]:
    """Clusters of ``doc.spans[f"{prefix}_N"]`` as lists of ``(start, end)`` token spans."""
    install_extensions()
    offsets = offsets or (lambda s: (s.start, s.end))
    return [[offsets(s) for s in cluster] for cluster in get_coref_clusters(doc, prefix)]


def score_coref_docs(
    pairs: Iterable[Tuple[Doc, Doc]],
    *,
    span_cluster_prefix: str = DEFAULT_CLUSTER_PREFIX,
    drop_singletons: bool = False,
) -> Dict[str, Any]:
    """Score ``(gold Doc, predicted Doc)`` pairs by their ``coref_clusters_N`` groups."""
    pairs = list(pairs)

    def documents() -> Iterable[Tuple[Clusters, Clusters]]:
        for gold, pred in pairs:
            yield (doc_clusters(gold, span_cluster_prefix),
                   doc_clusters(pred, span_cluster_prefix, token_offsets(gold, pred)))

    return score_coref_clusters(documents(), drop_singletons=drop_singletons,
                                names=[doc_name(g) for g, _ in pairs])


score_coref = on_examples(score_coref_docs)


@registry.scorers("spacy_kbnlp.coref_scorer.v1")
def make_coref_scorer(
    span_cluster_prefix: str = DEFAULT_CLUSTER_PREFIX,
    drop_singletons: bool = False,
) -> Callable[..., Dict[str, Any]]:
    """Coreference scorer: MUC, B³, CEAFe, CoNLL F1 and LEA (``coref_*`` keys).

    span_cluster_prefix: clusters are read from ``doc.spans[f"{prefix}_N"]``.
    drop_singletons: remove one-mention clusters from gold and prediction first.
    Keyword arguments at call time (e.g. a component's cfg) override these."""
    return bind_settings(score_coref_docs, {"span_cluster_prefix": span_cluster_prefix,
                                       "drop_singletons": drop_singletons})


__all__ = ["METRICS", "b_cubed", "ceafe", "doc_clusters", "lea", "make_coref_scorer",
           "mention_counts", "muc", "normalize_clusters", "score_coref",
           "score_coref_clusters", "score_coref_docs"]
