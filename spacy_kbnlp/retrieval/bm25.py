"""BM25 over demonstration texts with ``bm25s`` (Lucene variant, English stopwords).

The index is rebuilt from the texts when a store is loaded (a few hundred ms for
ten thousand sentences), so nothing but the texts is written to disk.
"""
from typing import List, Sequence, Tuple

import numpy

from ..errors import Errors


def _bm25s():
    try:
        import bm25s
    except ImportError as err:  # pragma: no cover - bm25s is a declared dependency
        raise ImportError(Errors.KBE312.format(
            value="bm25", setting="retriever",
            why="the package bm25s is not installed: pip install bm25s")) from err
    return bm25s


class BM25Index:
    """``search(queries, k) -> (scores, rows)`` as float32 / int64 arrays of shape
    ``(len(queries), k)``; rows are positions in ``texts``; missing hits are -1
    with score ``-inf`` (k larger than the corpus). Scores are sorted, best first."""

    def __init__(self, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75,
                 stopwords: str = "en"):
        self.n = len(texts)
        self.stopwords = stopwords
        self._retriever = None
        tokens = self._tokenize(texts) if self.n else []
        if any(tokens):  # texts of stopwords and one-letter words only have no index (bm25s fails)
            bm25s = _bm25s()
            self._retriever = bm25s.BM25(k1=k1, b=b)
            self._retriever.index(tokens, show_progress=False)

    def _tokenize(self, texts: Sequence[str]) -> List[List[str]]:
        return _bm25s().tokenize(list(texts), stopwords=self.stopwords, return_ids=False,
                                 show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
        nq = len(queries)
        scores = numpy.full((nq, k), -numpy.inf, dtype="float32")
        rows = numpy.full((nq, k), -1, dtype="int64")
        kk = min(k, self.n)
        if nq == 0 or kk == 0:
            return scores, rows
        tokens = self._tokenize(queries)
        for i, toks in enumerate(tokens):
            if not toks or self._retriever is None:  # nothing to match: every document scores 0
                scores[i, :kk] = 0.0
                rows[i, :kk] = numpy.arange(kk)
                continue
            s = self._retriever.get_scores(toks)
            top = numpy.argsort(-s, kind="stable")[:kk]
            scores[i, :kk] = s[top]
            rows[i, :kk] = top
        return scores, rows
