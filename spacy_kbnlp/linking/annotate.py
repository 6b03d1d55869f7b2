"""Writing entity links onto a Doc: the one routine both linkers use.

``links`` are ``(start token, end token, kb_id, score, [[kb_id, score], ...])``.
They go to ``doc.spans[key]`` (``kb_id_`` = entity id), to ``doc._.kb_links``
records (replacing the records of the same ``key``), and with ``set_ents`` to
``doc.ents``.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc, Span

# (start token, end token, kb_id, score, [[kb_id, score], ...])
Link = Tuple[int, int, str, float, List[List[Any]]]


def set_links(doc: Doc, links: Sequence[Link], *, key: str, label: str, set_ents: bool,
              overwrite_ents: bool, labels: Optional[Dict[Tuple[int, int], str]] = None) -> None:
    """Write ``links`` (see the module doc); ``labels`` gives the label of some
    spans (default ``label``)."""
    labels = labels or {}
    doc.spans[key] = [Span(doc, s, e, label=labels.get((s, e), label), kb_id=k)
                      for s, e, k, _, _ in links]
    records = [r for r in doc._.kb_links or () if r.get("key") != key]
    records.extend({"start": s, "end": e, "kb_id": k, "label": labels.get((s, e), label),
                    "score": sc, "candidates": alts, "key": key}
                   for s, e, k, sc, alts in links)
    doc._.kb_links = records
    if set_ents:
        set_link_ents(doc, links, label=label, overwrite_ents=overwrite_ents, labels=labels)


def set_link_ents(doc: Doc, links: Sequence[Link], *, label: str, overwrite_ents: bool,
                  labels: Optional[Dict[Tuple[int, int], str]] = None) -> None:
    """Greedy non-overlapping selection (best score first) into ``doc.ents``;
    existing entities are kept (and get the kb_id of a link with the same
    boundaries) unless ``overwrite_ents``."""
    labels = labels or {}
    taken = numpy.zeros(len(doc), dtype=bool)
    ents: List[Span] = []
    by_span: Dict[Tuple[int, int], Tuple[str, float]] = {}
    for s, e, k, sc, _ in links:
        if (s, e) not in by_span or sc > by_span[(s, e)][1]:
            by_span[(s, e)] = (k, sc)
    if not overwrite_ents:
        for ent in doc.ents:
            k = by_span.get((ent.start, ent.end), (ent.kb_id_, 0.0))[0] or ent.kb_id_
            ents.append(Span(doc, ent.start, ent.end, label=ent.label_, kb_id=k))
            taken[ent.start: ent.end] = True
    for s, e, k, sc, _ in sorted(links, key=lambda x: (-x[3], x[0], x[1])):
        if not taken[s:e].any():
            ents.append(Span(doc, s, e, label=labels.get((s, e), label), kb_id=k))
            taken[s:e] = True
    doc.set_ents(sorted(ents, key=lambda x: x.start), default="outside")
