"""Affine-gap global alignment (Gotoh, 1982) of two token sequences in O(n·m).

Used to place generated text back onto its source when the generator did not
copy the source token by token (partial linearization in seq2seq coreference,
Zhang et al. 2023, §7.3.4): matches score ``match``, mismatches ``mismatch``, and
a run of k unaligned tokens on either side costs ``gap_open + gap_extend·(k-1)``.
With ``gap_extend = 0`` (the paper's p = 0) a long gap costs no more than a
short one, so the query is placed as densely as possible.

The row recurrences are vectorised over the query with numpy; the horizontal
gap state uses the closed form ``Y[j] = max_k (B[k] + e·k) - o - e·(j-1)``
(a running maximum), so one row costs a few numpy calls.
"""
from typing import List, Sequence, Tuple

import numpy

NEG = -1e18
_M, _X, _Y = 0, 1, 2  # match/mismatch, source token on a gap, query token on a gap


def gotoh_align(
    source: Sequence, query: Sequence, *, match: float = 1.0, mismatch: float = -1.0,
    gap_open: float = 1.0, gap_extend: float = 0.0,
) -> Tuple[List[int], float]:
    """Align ``query`` to ``source`` globally.

    Returns ``(positions, score)``: ``positions[j]`` is the index in ``source``
    aligned to ``query[j]`` (matched or mismatched), or -1 if ``query[j]`` sits
    on a gap. Ties prefer a diagonal step, then a gap in the query.
    """
    n, m = len(source), len(query)
    if m == 0:
        return [], -(gap_open + gap_extend * (n - 1)) if n else 0.0
    if n == 0:
        return [-1] * m, -(gap_open + gap_extend * (m - 1))
    o, e = float(gap_open), float(gap_extend)
    # map tokens to ints so that equality is a numpy comparison
    vocab: dict = {}
    src = numpy.array([vocab.setdefault(t, len(vocab)) for t in source], dtype=numpy.int64)
    qry = numpy.array([vocab.setdefault(t, len(vocab)) for t in query], dtype=numpy.int64)
    j_idx = numpy.arange(m + 1, dtype=numpy.float64)
    # row 0
    M = numpy.full(m + 1, NEG)
    X = numpy.full(m + 1, NEG)
    Y = numpy.full(m + 1, NEG)
    M[0] = 0.0
    Y[1:] = -(o + e * (j_idx[1:] - 1))
    ptr_m = numpy.zeros((n + 1, m + 1), dtype=numpy.int8)
    ptr_x = numpy.zeros((n + 1, m + 1), dtype=numpy.int8)
    ptr_y = numpy.zeros((n + 1, m + 1), dtype=numpy.int8)
    ptr_y[0, 1:] = _Y
    ptr_y[0, 1] = _M
    for i in range(1, n + 1):
        stack_prev = numpy.stack([M, X, Y])             # (3, m+1) of row i-1
        # diagonal: cell (i, j) from (i-1, j-1)
        best_prev = stack_prev[:, :-1].max(axis=0)
        arg_prev = stack_prev[:, :-1].argmax(axis=0)
        sub = numpy.where(qry == src[i - 1], match, mismatch)
        M_new = numpy.full(m + 1, NEG)
        M_new[1:] = best_prev + sub
        ptr_m[i, 1:] = arg_prev
        # vertical (source token on a gap): from (i-1, j)
        cand_x = numpy.stack([M - o, X - e, Y - o])
        X_new = cand_x.max(axis=0)
        ptr_x[i] = cand_x.argmax(axis=0)
        if i == 1:
            X_new[0] = -o
            ptr_x[i, 0] = _M
        # horizontal (query token on a gap): from (i, j-1), running maximum
        B = numpy.maximum(M_new, X_new)
        argB = numpy.where(M_new >= X_new, _M, _X)
        run = numpy.maximum.accumulate(B + e * j_idx)
        Y_new = numpy.full(m + 1, NEG)
        Y_new[1:] = run[:-1] - o - e * (j_idx[1:] - 1)
        open_score = B[:-1] - o
        ext_score = numpy.concatenate([[NEG], Y_new[1:-1] - e])
        ptr_y[i, 1:] = numpy.where(ext_score > open_score, _Y, argB[:-1])
        M, X, Y = M_new, X_new, Y_new
    finals = numpy.array([M[m], X[m], Y[m]])
    state = int(finals.argmax())
    score = float(finals[state])
    positions = [-1] * m
    i, j = n, m
    while i > 0 or j > 0:
        if state == _M:
            positions[j - 1] = i - 1
            state = int(ptr_m[i, j])
            i, j = i - 1, j - 1
        elif state == _X:
            state = int(ptr_x[i, j])
            i -= 1
        else:
            state = int(ptr_y[i, j])
            j -= 1
        if i == 0 and j == 0:
            break
        if i == 0:  # only query gaps remain
            state = _Y
        elif j == 0:
            state = _X
    return positions, score
