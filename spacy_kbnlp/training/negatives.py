"""Negatives for the EntQA retriever's multi-label NCE (Chapter 3, Chapter 6.2.1).

``sample_negatives`` mixes hard negatives (the highest-scoring non-gold entities
under the current model) with uniformly random ones (EntQA: 10% hard, 90%
random) and never returns an excluded entity: the passage's gold entities and
any entity labelled in the passage. ``HardNegativeMiner`` keeps the index of the
current entity representations: ``refresh()`` re-encodes every entity of the
training KB with the current entity encoder (the index refresh during training)
and ranks the entities for every training passage.
"""
from typing import Any, Dict, List, Optional, Sequence, Set

import numpy
import torch

from ..models.passages import Batch, Passage, passage_query, special_ids
from ..models.retriever import encode_entity_texts, topk_exhaustive


def sample_negatives(
    exclude: Set[int],
    ranked: Sequence[int],
    n: int,
    n_entities: int,
    *,
    hard_fraction: float = 0.1,
    rng: Optional[Any] = None,
) -> List[int]:
    """``n`` distinct entity rows: ``round(n * hard_fraction)`` taken in order from
    ``ranked`` (best first) and the rest drawn uniformly from all ``n_entities``
    rows; rows in ``exclude`` are never returned. Fewer than ``n`` come back only
    when the KB has too few entities. ``rng``: a numpy Generator, or the
    ``numpy.random`` module (its global state is checkpointed by the training loop)."""
    rng = rng if rng is not None else numpy.random.default_rng()
    available = n_entities - len({r for r in exclude if 0 <= r < n_entities})
    n = max(0, min(n, available))
    n_hard = min(n, int(round(n * hard_fraction)))
    chosen: List[int] = []
    seen = set(exclude)
    for r in ranked:
        if len(chosen) >= n_hard:
            break
        r = int(r)
        if r not in seen and 0 <= r < n_entities:
            chosen.append(r)
            seen.add(r)
    draw_ints = rng.integers if hasattr(rng, "integers") else rng.randint
    while len(chosen) < n:
        draw = draw_ints(0, n_entities, size=2 * (n - len(chosen)) + 8)
        for r in draw:
            r = int(r)
            if r not in seen:
                chosen.append(r)
                seen.add(r)
                if len(chosen) >= n:
                    break
    return chosen


class HardNegativeMiner:
    """Ranks the training KB for each training passage under the current model.

    ``entity_pieces[row]`` are the piece ids of entity ``row``'s text. ``refresh``
    recomputes the entity representations (exactly the reps the score function
    uses, so the ranking is the model's own) and the top ``pool`` entities of
    each passage; ``ranked(i)`` returns them for passage ``i``."""

    def __init__(self, model, entity_pieces: Sequence[List[int]], passages: Sequence[Passage],
                 *, pool: int = 32, batch_size: int = 64, device=None):
        self.model = model
        self.entity_pieces = list(entity_pieces)
        self.passages = list(passages)
        self.pool = pool
        self.batch_size = batch_size
        self.device = device
        self.reps: Optional[numpy.ndarray] = None
        self.mask: Optional[numpy.ndarray] = None
        self._ranked: Dict[int, numpy.ndarray] = {}
        self.n_refreshes = 0

    @property
    def n_entities(self) -> int:
        return len(self.entity_pieces)

    def encode_passages(self, passages: Sequence[Passage]):
        model = self.model
        cls, sep, pad = special_ids(model.tokenizer)
        seqs = [passage_query(p, cls, sep, model.spec.max_passage_pieces) for p in passages]
        batch = Batch.pad(seqs, [[0] * len(s) for s in seqs], pad)
        device = self.device or next(model.parameters()).device
        with torch.inference_mode():
            return model.encode_passages(batch.to_torch(device))

    def refresh(self, show_progress: bool = False) -> None:
        """Re-encode every entity, then re-rank the entities for every passage."""
        was_training = self.model.training
        self.model.eval()
        try:
            self.reps, self.mask = encode_entity_texts(
                self.model, self.entity_pieces, batch_size=self.batch_size, device=self.device,
                show_progress=show_progress)
            self._ranked = {}
            for b in range(0, len(self.passages), self.batch_size):
                chunk = self.passages[b: b + self.batch_size]
                p, pm = self.encode_passages(chunk)
                _, rows = topk_exhaustive(self.model, p, pm, self.reps, self.mask, self.pool)
                for j in range(len(chunk)):
                    self._ranked[b + j] = rows[j]
        finally:
            self.model.train(was_training)
        self.n_refreshes += 1

    def ranked(self, index: int) -> numpy.ndarray:
        """Entity rows ranked for passage ``index`` at the last refresh (best first)."""
        return self._ranked.get(index, numpy.zeros(0, dtype="int64"))
