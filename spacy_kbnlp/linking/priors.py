"""Entity priors p(entity | surface form).

Counts come from three sources, each with its own weight: the KB's names and
aliases (``alias_weight`` per name), the KB records' ``prior`` field (entity
popularity, kept apart as its own feature) and gold links of training documents
(``link_weight`` per link). Surfaces are normalized (case, spacing, a leading
"the", a trailing possessive) so that "The U.S.'s" and "the U.S." count together.
The table is plain JSON: it round-trips with the component.
"""
import math
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

_SPACE = re.compile(r"\s+")
_POSSESSIVE = re.compile(r"\s*['’]s?$")


def normalize_surface(text: str) -> str:
    """Lower case, single spaces, no leading "the " and no trailing "'s"."""
    s = _SPACE.sub(" ", text.strip().lower())
    if s.startswith("the ") and len(s) > 4:
        s = s[4:]
    if len(s) > 3:
        s = _POSSESSIVE.sub("", s)
    return s.strip(" .,;:!?\"()[]")


class PriorTable:
    """``counts[surface][entity]`` (weighted) and ``entity_counts[entity]`` (training
    links only). ``prob(surface, entity)`` is the share of the surface's mass."""

    def __init__(self, counts: Optional[Dict[str, Dict[str, float]]] = None,
                 entity_counts: Optional[Dict[str, float]] = None,
                 popularity: Optional[Dict[str, float]] = None,
                 sources: Optional[Dict[str, Any]] = None,
                 link_surfaces: Optional[Dict[str, float]] = None):
        self.counts: Dict[str, Dict[str, float]] = {k: dict(v) for k, v in (counts or {}).items()}
        self.entity_counts: Dict[str, float] = dict(entity_counts or {})
        self.popularity: Dict[str, float] = dict(popularity or {})
        self.sources: Dict[str, Any] = dict(sources or {})
        self.link_surfaces: Dict[str, float] = dict(link_surfaces or {})
        self._totals: Dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, surface: str, entity: str, weight: float = 1.0, *, link: bool = False) -> None:
        key = normalize_surface(surface)
        if not key or weight <= 0:
            return
        row = self.counts.setdefault(key, {})
        row[entity] = row.get(entity, 0.0) + float(weight)
        self._totals.pop(key, None)
        if link:
            self.entity_counts[entity] = self.entity_counts.get(entity, 0.0) + float(weight)
            self.link_surfaces[key] = self.link_surfaces.get(key, 0.0) + float(weight)

    def add_kb(self, kb, alias_weight: float = 1.0) -> "PriorTable":
        """Names and aliases of every record of ``kb`` (a DenseKB), and their ``prior``."""
        n = 0
        for rec in kb.records:
            for form in {rec.name, *rec.aliases}:
                if form:
                    self.add(form, rec.id, alias_weight)
            if rec.prior is not None:
                self.popularity[rec.id] = float(rec.prior)
            n += 1
        self.sources["kb_records"] = self.sources.get("kb_records", 0) + n
        self.sources["alias_weight"] = alias_weight
        return self

    def add_links(self, links: Iterable[Tuple[str, str]], link_weight: float = 1.0) -> "PriorTable":
        """(surface, entity) pairs of gold links."""
        n = 0
        for surface, entity in links:
            self.add(surface, entity, link_weight, link=True)
            n += 1
        self.sources["links"] = self.sources.get("links", 0) + n
        self.sources["link_weight"] = link_weight
        return self

    def subtract_links(self, links: Iterable[Tuple[str, str]], link_weight: float = 1.0) -> None:
        """Undo :meth:`add_links` for ``links`` (leave-one-document-out features)."""
        for surface, entity in links:
            key = normalize_surface(surface)
            row = self.counts.get(key)
            if row is None or entity not in row:
                continue
            row[entity] -= link_weight
            if row[entity] <= 1e-9:
                del row[entity]
            if not row:
                del self.counts[key]
            self._totals.pop(key, None)
            if key in self.link_surfaces:
                self.link_surfaces[key] -= link_weight
                if self.link_surfaces[key] <= 1e-9:
                    del self.link_surfaces[key]
            if entity in self.entity_counts:
                self.entity_counts[entity] -= link_weight
                if self.entity_counts[entity] <= 1e-9:
                    del self.entity_counts[entity]

    def total(self, surface_key: str) -> float:
        got = self._totals.get(surface_key)
        if got is None:
            got = sum(self.counts.get(surface_key, {}).values())
            self._totals[surface_key] = got
        return got

    def candidates(self, surface: str, n: int) -> List[Tuple[str, float]]:
        """The ``n`` entities with most mass for ``surface``, with p(entity | surface)."""
        key = normalize_surface(surface)
        row = self.counts.get(key)
        if not row:
            return []
        tot = self.total(key)
        best = sorted(row.items(), key=lambda x: (-x[1], x[0]))[:n]
        return [(e, c / tot) for e, c in best]

    def prob(self, surface: str, entity: str) -> float:
        key = normalize_surface(surface)
        row = self.counts.get(key)
        if not row or entity not in row:
            return 0.0
        return row[entity] / self.total(key)

    def surface_mass(self, surface: str) -> float:
        return self.total(normalize_surface(surface))

    def link_mass(self, surface: str) -> float:
        """How often ``surface`` was a gold link in the training docs."""
        return self.link_surfaces.get(normalize_surface(surface), 0.0)

    def log_entity_count(self, entity: str) -> float:
        return math.log1p(self.entity_counts.get(entity, 0.0))

    def log_popularity(self, entity: str) -> float:
        return math.log1p(max(0.0, self.popularity.get(entity, 0.0)))

    # ------------------------------------------------------------ serialization
    def to_dict(self) -> Dict[str, Any]:
        return {"counts": self.counts, "entity_counts": self.entity_counts,
                "popularity": self.popularity, "sources": self.sources,
                "link_surfaces": self.link_surfaces}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PriorTable":
        return cls(data.get("counts"), data.get("entity_counts"), data.get("popularity"),
                   data.get("sources"), data.get("link_surfaces"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriorTable) and self.to_dict() == other.to_dict()


def gold_links(doc) -> List[Tuple[str, str]]:
    """(surface, entity) of the root gold links of an ELEVANT-read ``doc``
    (``doc._.el_gold``) or, failing that, of its ``doc.ents`` with a kb_id."""
    records = doc._.el_gold if doc.has_extension("el_gold") else None
    out: List[Tuple[str, str]] = []
    if records:
        for r in records:
            eid = r.get("entity_id")
            if r.get("parent") is None and eid and eid.startswith("Q") and r.get("start_char") is not None:
                out.append((doc.text[r["start_char"]: r["end_char"]], eid))
        return out
    return [(e.text, e.kb_id_) for e in doc.ents if e.kb_id_]
