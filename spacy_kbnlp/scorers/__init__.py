"""Metrics for entity linking, coreference and relation extraction.

Each module holds pure metric functions (plain Python data in, numbers out), a
Doc-level adapter and a registered maker that returns the ``scorer(examples,
**kwargs) -> dict`` used by ``nlp.evaluate``, ``spacy train`` and the CLI
(STYLE.md 1.5). Output keys carry our prefixes: ``el_``, ``coref_``, ``rel_``.

* :mod:`.el`: ``score_el_docs`` / ``spacy_kbnlp.el_scorer.v1``
* :mod:`.coref`: ``score_coref_clusters`` / ``spacy_kbnlp.coref_scorer.v1``
* :mod:`.rel`: ``score_relation_docs`` / ``spacy_kbnlp.rel_scorer.v1``

Helpers shared by the three modules live here.
"""
import inspect
from typing import Any, Callable, Dict, Iterable, Tuple


def safe_div(num: float, den: float) -> float:
    """``num / den``, 0.0 when ``den`` is 0."""
    return num / den if den else 0.0


def f_score(p: float, r: float) -> float:
    """Harmonic mean of precision and recall (0.0 when both are 0)."""
    return 2 * p * r / (p + r) if p + r else 0.0


def prf(tp: float, fp: float, fn: float) -> Tuple[float, float, float]:
    """Precision, recall, F1 from counts (0.0 where a denominator is 0)."""
    p = safe_div(tp, tp + fp)
    r = safe_div(tp, tp + fn)
    return p, r, f_score(p, r)


def prf_dict(prefix: str, tp: float, fp: float, fn: float) -> Dict[str, float]:
    """``{prefix_p, prefix_r, prefix_f}`` from counts."""
    p, r, f = prf(tp, fp, fn)
    return {f"{prefix}_p": p, f"{prefix}_r": r, f"{prefix}_f": f}


def doc_name(doc: Any) -> str:
    """A document's id for messages: ``doc._.source["id"]``, else "?"."""
    source = getattr(doc._, "source", None) or {}
    return str(source.get("id", "?"))


def token_offsets(gold: Any, pred: Any) -> Callable[[Any], Tuple[int, int]]:
    """A function mapping a Span of ``pred`` to ``(start, end)`` token offsets of ``gold``.

    Identical tokens: the Span's own offsets. Same text, other tokens: through the
    character offsets, widened to gold tokens. Otherwise KBE106."""
    if len(gold) == len(pred) and all(a.text == b.text for a, b in zip(gold, pred)):
        return lambda span: (span.start, span.end)
    if gold.text != pred.text:
        from ..errors import Errors

        raise ValueError(Errors.KBE106.format(id=doc_name(gold), n_gold=len(gold),
                                              n_pred=len(pred), gold=gold.text[:60],
                                              pred=pred.text[:60]))

    def by_chars(span: Any) -> Tuple[int, int]:
        out = gold.char_span(span.start_char, span.end_char, alignment_mode="expand")
        return (out.start, out.end) if out is not None else (span.start, span.end)

    return by_chars


def on_examples(doc_func: Callable[..., Dict[str, Any]]) -> Callable[..., Dict[str, Any]]:
    """``score(examples, **options)``: ``doc_func`` on ``(reference, predicted)`` pairs."""

    def score_examples(examples: Iterable[Any], **options: Any) -> Dict[str, Any]:
        return doc_func(((eg.reference, eg.predicted) for eg in examples), **options)

    score_examples.__doc__ = (f"Score ``Example`` objects (reference = gold, predicted = "
                              f"output) with ``{doc_func.__name__}``; same options.")
    return score_examples


def bind_settings(doc_func: Callable[..., Dict[str, Any]], settings: Dict[str, Any]
                  ) -> Callable[..., Dict[str, Any]]:
    """The ``scorer(examples, **kwargs)`` of a registered maker, scoring with
    ``doc_func(pairs, **options)``.

    ``settings`` (the maker's arguments) are the defaults; keyword arguments given
    at call time override those of the same name. ``Pipe.score`` passes the whole
    ``self.cfg`` (and ``labels``), so keys that ``doc_func`` does not take are ignored.
    """
    accepted = set(inspect.signature(doc_func).parameters) - {"pairs"}
    score_examples = on_examples(doc_func)

    def scorer(examples: Iterable[Any], **kwargs: Any) -> Dict[str, Any]:
        options = dict(settings)
        options.update({k: v for k, v in kwargs.items() if k in accepted})
        return score_examples(examples, **options)

    scorer.__doc__ = doc_func.__doc__
    return scorer


__all__ = ["bind_settings", "doc_name", "f_score", "on_examples", "prf", "prf_dict", "safe_div",
           "token_offsets"]
