"""Constrained decoding: grammar state machines, a prefix trie, and decode loops.

This is the one decoding core of the project. A generative component describes
*what may be generated* as a :class:`ConstraintState` (a small immutable state
machine) and gets, for free:

* :func:`greedy_decode`: plain constrained greedy decoding;
* :func:`speculative_decode`: copy-speculative greedy decoding. Where the grammar
  can guess the next tokens (they copy the source), it proposes them, one forward
  pass verifies the whole proposal, and the longest prefix that greedy decoding
  would have produced is kept, plus the token greedy picks at the first mismatch.
  The output is the output of :func:`greedy_decode`;
* :func:`batched_greedy_decode`: greedy decoding of many sequences in one batch
  (each row its own grammar; the same output as decoding them one by one), plain or
  copy-speculative (rows of different lengths: a stepper with ``step_ragged``);
* :func:`beam_decode`: constrained beam search with length normalisation;
* :class:`ConstrainedLogitsProcessor`: the same constraints for Hugging Face
  ``model.generate`` (greedy, beam, sampling).

A state's :meth:`~ConstraintState.allowed` maps each token that may be emitted next
to the token *whose score it takes*. Plain constraints map a token to itself.
Copy actions map the actual source token to the copy symbol ``<c>`` (the model
predicts "copy", the decoder is fed the real token), and the integer-free
coreference representation maps ``</m_{l+1}>`` to ``<new>``. Tokens not in the map
are masked.

Models are driven through a *stepper* (:class:`HFSeq2SeqStepper` for any Hugging
Face encoder-decoder): ``step(ids) -> logits`` with a key/value cache, ``crop`` to
drop rejected speculative tokens, ``reorder`` for beams. A stepper may compute
logits over a subset of the vocabulary only (``columns``), which makes copy-action
models much cheaper: their action space has a few hundred symbols.

:class:`PrefixTrie` constrains a multi-token choice (cluster numbers in
coreference, entity names in generative entity linking) to a set of token
sequences, optionally only those of rank ``<= max_rank``. :class:`CompactPrefixTrie`
is its immutable, bulk-built twin for large name sets (flat numpy arrays, about
12 bytes per node: a million names fit in tens of MB).

Further pieces: ``greedy_decode(skip_forced=True)`` calls the model only where the
grammar leaves a choice (forced tokens are fed in one pass before the next
decision); :class:`LogProbStepper` makes the scores log-probabilities (and
:attr:`DecodeOutput.token_scores` per-token scores); :class:`HFCausalLMStepper` drives
any Hugging Face causal LM (decoder-only) with the same loops.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- grammar states
class ConstraintState:
    """What may be generated next, for one hypothesis. Subclasses are immutable:
    :meth:`advance` returns a new state."""

    finished: bool = False

    def allowed(self) -> Dict[int, int]:
        """``{token to emit: token whose score it takes}`` (empty only when finished)."""
        raise NotImplementedError

    def advance(self, token: int) -> "ConstraintState":
        """The state after emitting ``token`` (which must be allowed)."""
        raise NotImplementedError

    def proposal(self, n: int) -> List[int]:
        """Up to ``n`` tokens that are likely to come next (copy continuation);
        used by :func:`speculative_decode`. Default: none."""
        return []


class SequenceState(ConstraintState):
    """Emit exactly ``tokens`` then stop: the simplest copy-only constraint, and a
    reference for tests (a decoder constrained by it reproduces ``tokens``)."""

    __slots__ = ("tokens", "pos")

    def __init__(self, tokens: Sequence[int], pos: int = 0):
        self.tokens = tuple(tokens)
        self.pos = pos

    @property
    def finished(self) -> bool:  # type: ignore[override]
        return self.pos >= len(self.tokens)

    def allowed(self) -> Dict[int, int]:
        if self.finished:
            return {}
        tok = self.tokens[self.pos]
        return {tok: tok}

    def advance(self, token: int) -> "SequenceState":
        return SequenceState(self.tokens, self.pos + 1)

    def proposal(self, n: int) -> List[int]:
        return list(self.tokens[self.pos + 1: self.pos + 1 + n])


class TrieNode:
    __slots__ = ("children", "value", "min_rank")

    def __init__(self):
        self.children: Dict[int, "TrieNode"] = {}
        self.value: Any = None
        self.min_rank: float = math.inf


class PrefixTrie:
    """Token sequences with values; walk it to constrain a multi-token choice.

    Each sequence has a ``rank`` (default: its value if numeric, else 0); every node
    keeps the smallest rank below it, so :meth:`next_tokens` can restrict the
    choice to sequences of rank ``<= max_rank`` (e.g. cluster numbers up to the
    next new one) without rebuilding the trie."""

    def __init__(self, items: Iterable[Tuple[Sequence[int], Any]] = ()):
        self.root = TrieNode()
        self.max_depth = 0
        for seq, value in items:
            self.insert(seq, value)

    def insert(self, seq: Sequence[int], value: Any, rank: Optional[float] = None) -> None:
        if not seq:
            raise ValueError("PrefixTrie: cannot insert an empty sequence")
        if rank is None:
            rank = value if isinstance(value, (int, float)) else 0
        node = self.root
        node.min_rank = min(node.min_rank, rank)
        for tok in seq:
            node = node.children.setdefault(int(tok), TrieNode())
            node.min_rank = min(node.min_rank, rank)
        node.value = value
        self.max_depth = max(self.max_depth, len(seq))

    def walk(self, seq: Sequence[int], node: Optional[TrieNode] = None) -> Optional[TrieNode]:
        """The node reached from ``node`` (default: root) by ``seq``, or None."""
        node = self.root if node is None else node
        for tok in seq:
            node = node.children.get(int(tok))
            if node is None:
                return None
        return node

    @staticmethod
    def next_tokens(node: TrieNode, max_rank: Optional[float] = None) -> List[int]:
        if max_rank is None:
            return list(node.children)
        return [t for t, child in node.children.items() if child.min_rank <= max_rank]

    def lookup(self, seq: Sequence[int]) -> Any:
        node = self.walk(seq)
        return None if node is None else node.value


class CompactPrefixTrie:
    """An immutable prefix trie over token-id sequences with integer values, in
    flat numpy arrays; built in bulk by sorting (:meth:`build`).

    Nodes are integers (root ``0``), numbered level by level, so the children of a
    node are contiguous and sorted by token: :meth:`children` is two array slices
    and :meth:`child` a binary search. Per node it stores a token, a first child and
    a child count (int32, 12 bytes); terminal nodes keep their values (several
    sequences may be equal, e.g. entities sharing a name) in a CSR table.
    ``walk``/``lookup`` mirror :class:`PrefixTrie` (``lookup`` returns the tuple of
    values, empty when the sequence is not in the trie)."""

    root = 0

    def __init__(self, token: numpy.ndarray, first_child: numpy.ndarray,
                 n_children: numpy.ndarray, term_nodes: numpy.ndarray,
                 term_offsets: numpy.ndarray, values: numpy.ndarray, max_depth: int,
                 n_sequences: int):
        self.token = token
        self.first_child = first_child
        self.n_children = n_children
        self.term_nodes = term_nodes
        self.term_offsets = term_offsets
        self.values = values
        self.max_depth = int(max_depth)
        self.n_sequences = int(n_sequences)

    @classmethod
    def build(cls, seqs: Sequence[Sequence[int]], values: Optional[Sequence[int]] = None
              ) -> "CompactPrefixTrie":
        """The trie of ``seqs`` (non-empty sequences of non-negative ids < 2**31);
        ``values[i]`` (default ``i``) is stored at the end of ``seqs[i]``."""
        import itertools

        n = len(seqs)
        lengths = numpy.fromiter((len(q) for q in seqs), dtype=numpy.int64, count=n)
        if n and lengths.min() == 0:
            bad = int(numpy.argmin(lengths))
            raise ValueError(f"CompactPrefixTrie: sequence {bad} is empty; every sequence "
                             "needs at least one token.")
        vals = (numpy.arange(n, dtype=numpy.int64) if values is None
                else numpy.asarray(values, dtype=numpy.int64))
        if len(vals) != n:
            raise ValueError(f"CompactPrefixTrie: {n} sequences but {len(vals)} values.")
        depth = int(lengths.max()) if n else 0
        flat = numpy.fromiter(itertools.chain.from_iterable(seqs), dtype=numpy.int64,
                              count=int(lengths.sum()))
        if flat.size and (flat.min() < 0 or flat.max() >= 2 ** 31):
            raise ValueError("CompactPrefixTrie: token ids must lie in [0, 2**31).")
        padded = numpy.full((n, depth), -1, dtype=numpy.int32)
        rows = numpy.repeat(numpy.arange(n), lengths)
        starts = numpy.cumsum(lengths) - lengths
        cols = numpy.arange(flat.size) - numpy.repeat(starts, lengths)
        padded[rows, cols] = flat
        del flat, rows, cols
        order = (numpy.lexsort(padded.T[::-1]) if depth else numpy.arange(n))
        padded = padded[order]
        lengths = lengths[order]
        vals = vals[order]
        tokens: List[numpy.ndarray] = []
        parents: List[numpy.ndarray] = []
        node_at_prev = numpy.zeros(n, dtype=numpy.int64)  # node of each row at depth d-1
        end_node = numpy.zeros(n, dtype=numpy.int64)
        new_prev = numpy.zeros(n, dtype=bool)  # prefix differs from the previous row
        next_id = 1
        for d in range(depth):
            col = padded[:, d]
            exists = col >= 0
            changed = numpy.ones(n, dtype=bool)
            if n > 1:
                changed[1:] = col[1:] != col[:-1]
            new = exists & (changed | new_prev)
            count = numpy.cumsum(new)
            node_at = next_id + count - 1
            tokens.append(col[new])
            parents.append(node_at_prev[new])
            ends_here = lengths == d + 1
            end_node[ends_here] = node_at[ends_here]
            node_at_prev = numpy.where(exists, node_at, -1)
            new_prev = new
            next_id += int(count[-1]) if n else 0
        n_nodes = next_id
        token = numpy.full(n_nodes, -1, dtype=numpy.int32)
        parent = numpy.full(n_nodes, -1, dtype=numpy.int64)
        if tokens:
            token[1:] = numpy.concatenate(tokens)
            parent[1:] = numpy.concatenate(parents)
        n_children = numpy.bincount(parent[1:], minlength=n_nodes).astype(numpy.int32)
        first_child = numpy.zeros(n_nodes, dtype=numpy.int32)
        if n_nodes > 1:
            # children are numbered in parent order: the first child of p follows
            # the children of every earlier parent
            first = numpy.searchsorted(parent[1:], numpy.arange(n_nodes), side="left") + 1
            first_child[:] = numpy.where(n_children > 0, first, 0)
        by_node = numpy.argsort(end_node, kind="stable")
        sorted_end = end_node[by_node]
        term_nodes, counts = numpy.unique(sorted_end, return_counts=True)
        term_offsets = numpy.zeros(len(term_nodes) + 1, dtype=numpy.int64)
        numpy.cumsum(counts, out=term_offsets[1:])
        return cls(token, first_child, n_children, term_nodes.astype(numpy.int32),
                   term_offsets, vals[by_node], depth, n)

    # --- navigation
    def __len__(self) -> int:
        return self.n_sequences

    @property
    def n_nodes(self) -> int:
        return int(self.token.shape[0])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.token, self.first_child, self.n_children,
                                          self.term_nodes, self.term_offsets, self.values)))

    def children(self, node: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """``(tokens, nodes)`` of the children of ``node`` (tokens ascending)."""
        nc = int(self.n_children[node])
        if nc == 0:
            empty = numpy.zeros(0, dtype=numpy.int64)
            return empty, empty
        fc = int(self.first_child[node])
        return self.token[fc: fc + nc], numpy.arange(fc, fc + nc)

    def next_tokens(self, node: int) -> List[int]:
        return self.children(node)[0].tolist()

    def child(self, node: int, tok: int) -> Optional[int]:
        nc = int(self.n_children[node])
        if nc == 0:
            return None
        fc = int(self.first_child[node])
        toks = self.token[fc: fc + nc]
        j = int(toks.searchsorted(numpy.int32(tok)))
        return fc + j if j < nc and int(toks[j]) == tok else None

    def walk(self, seq: Sequence[int], node: Optional[int] = None) -> Optional[int]:
        """The node reached from ``node`` (default: root) by ``seq``, or None."""
        node = self.root if node is None else node
        for tok in seq:
            node = self.child(node, int(tok))
            if node is None:
                return None
        return node

    def node_values(self, node: int) -> Tuple[int, ...]:
        """Values of the sequences ending at ``node`` (empty: not a terminal)."""
        j = int(self.term_nodes.searchsorted(numpy.int32(node)))  # same dtype: no copy
        if j >= len(self.term_nodes) or int(self.term_nodes[j]) != node:
            return ()
        return tuple(int(v) for v in self.values[self.term_offsets[j]: self.term_offsets[j + 1]])

    def is_terminal(self, node: int) -> bool:
        j = int(self.term_nodes.searchsorted(numpy.int32(node)))
        return j < len(self.term_nodes) and int(self.term_nodes[j]) == node

    def lookup(self, seq: Sequence[int]) -> Tuple[int, ...]:
        node = self.walk(seq)
        return () if node is None else self.node_values(node)

    def sequences(self) -> List[Tuple[Tuple[int, ...], int]]:
        """Every ``(sequence, value)`` (depth-first, tokens ascending): for tests and
        inspection."""
        out: List[Tuple[Tuple[int, ...], int]] = []
        stack: List[Tuple[int, Tuple[int, ...]]] = [(self.root, ())]
        while stack:
            node, prefix = stack.pop()
            out.extend((prefix, v) for v in self.node_values(node))
            toks, nodes = self.children(node)
            for t, c in reversed(list(zip(toks.tolist(), nodes.tolist()))):
                stack.append((c, prefix + (t,)))
        return out


# --------------------------------------------------------------------------- choosing a token
def column_index(columns: Optional[Sequence[int]], vocab_size: int) -> Optional[numpy.ndarray]:
    """``vocab id -> column`` array for a stepper computing logits over ``columns`` only
    (-1 where a token has no column); None when logits cover the whole vocabulary."""
    if columns is None:
        return None
    index = numpy.full(vocab_size, -1, dtype=numpy.int64)
    index[numpy.asarray(columns, dtype=numpy.int64)] = numpy.arange(len(columns))
    return index


def allowed_arrays(state: ConstraintState, col_of: Optional[numpy.ndarray]
                   ) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """``(tokens, columns)``: the allowed tokens (in the state's order) and the logit
    column that scores each one. A state may offer ``allowed_arrays()`` returning
    them directly (no dict: cheaper for wide choices such as the first token of a
    KB name)."""
    fast = getattr(state, "allowed_arrays", None)
    if fast is not None:
        toks, cols = fast()
    else:
        allowed = state.allowed()
        toks = numpy.fromiter(allowed.keys(), dtype=numpy.int64, count=len(allowed))
        cols = numpy.fromiter(allowed.values(), dtype=numpy.int64, count=len(allowed))
    if col_of is not None:
        cols = col_of[cols]
        if (cols < 0).any():
            bad = toks[cols < 0][:5].tolist()
            raise ValueError(f"Tokens {bad} are allowed but the stepper computes no logits for "
                             "their scoring tokens; add them to the stepper's columns.")
    return toks, cols


def choose(row: numpy.ndarray, state: ConstraintState, col_of: Optional[numpy.ndarray]
           ) -> Tuple[int, float]:
    """The allowed token with the highest score in ``row`` (first one on ties)."""
    tok, score, _ = choose_with_mass(row, state, col_of)
    return tok, score


def choose_with_mass(row: numpy.ndarray, state: ConstraintState,
                     col_of: Optional[numpy.ndarray]) -> Tuple[int, float, float]:
    """:func:`choose` plus the log-sum-exp of the allowed tokens' scores: with
    log-probability scores, ``score - mass`` is the chosen token's log-probability
    renormalized over what the grammar allowed."""
    toks, cols = allowed_arrays(state, col_of)
    if len(toks) == 0:
        raise ValueError("Constrained decoding reached a state that allows no token.")
    scores = row[cols]
    best = int(scores.argmax())
    top = float(scores[best])
    mass = top + float(numpy.log(numpy.exp(scores.astype(numpy.float64) - top).sum()))
    return int(toks[best]), top, mass


@dataclass
class DecodeOutput:
    tokens: List[int]                  # emitted tokens (the prompt excluded)
    score: float = 0.0                 # sum of chosen logits (greedy) / log-probs (beam)
    n_forward: int = 0                 # decoder forward passes
    n_proposed: int = 0                # speculative: tokens proposed
    n_accepted: int = 0                # speculative: proposed tokens kept
    finished: bool = True              # the grammar reached its final state
    extra: Dict[str, Any] = field(default_factory=dict)
    # greedy loops: the score of each emitted token (0.0 for tokens that the grammar
    # forced and ``skip_forced`` did not score) and the log-sum-exp of the scores of
    # the tokens the grammar allowed at that step (see ``choose_with_mass``)
    token_scores: List[float] = field(default_factory=list)
    allowed_mass: List[float] = field(default_factory=list)


# --------------------------------------------------------------------------- decode loops
def greedy_decode(stepper: Any, state: ConstraintState, prompt: Sequence[int],
                  max_new_tokens: int, skip_forced: bool = False) -> DecodeOutput:
    """Constrained greedy decoding, one token per forward pass.

    With ``skip_forced`` the model is called only where the grammar allows more
    than one token: forced tokens are emitted without a forward pass (score 0.0)
    and fed to the model together, in one pass, when the next choice comes. The
    output is the same; ``n_forward`` counts the passes (the generative calls)."""
    stepper.reset()
    out: List[int] = []
    scores: List[float] = []
    masses: List[float] = []
    pending = list(prompt)
    n_forward = 0
    while not state.finished and len(out) < max_new_tokens:
        if skip_forced:
            toks, _ = allowed_arrays(state, None)
            if len(toks) == 1:
                tok = int(toks[0])
                out.append(tok)
                scores.append(0.0)
                masses.append(0.0)
                pending.append(tok)
                state = state.advance(tok)
                continue
        row = stepper.step_numpy(pending)[-1]
        n_forward += 1
        tok, score, mass = choose_with_mass(row, state, stepper.col_of)
        out.append(tok)
        scores.append(score)
        masses.append(mass)
        state = state.advance(tok)
        pending = [tok]
    return DecodeOutput(out, float(sum(scores)), n_forward, finished=state.finished,
                        token_scores=scores, allowed_mass=masses)


def speculative_decode(stepper: Any, state: ConstraintState, prompt: Sequence[int],
                       max_new_tokens: int, n_propose: int = 8) -> DecodeOutput:
    """Copy-speculative greedy decoding (same output as :func:`greedy_decode`).

    Each round feeds the pending token plus ``state.proposal(width)`` in one
    forward pass, keeps the proposed tokens while they equal the constrained argmax,
    appends the argmax at the first disagreement (or after the last proposal), and
    crops the cache back to the kept tokens. ``width`` starts at ``n_propose``, halves
    after a rejection and doubles (up to ``n_propose``) after a full acceptance; the
    proposals only decide how much work one pass does, never what is emitted."""
    stepper.reset()
    out: List[int] = []
    scores: List[float] = []
    masses: List[float] = []
    total = 0.0
    pending = list(prompt)
    cached = 0
    n_forward = n_prop = n_acc = 0
    width = n_propose  # adaptive: halve after a rejection, double after a full acceptance
    while not state.finished and len(out) < max_new_tokens:
        room = max_new_tokens - len(out) - 1
        prop = state.proposal(min(width, room)) if room > 0 and n_propose > 0 else []
        logits = stepper.step_numpy(pending + prop)
        n_forward += 1
        n_prop += len(prop)
        base = len(pending) - 1
        accepted = 0
        for k in range(len(prop) + 1):
            tok, score, mass = choose_with_mass(logits[base + k], state, stepper.col_of)
            out.append(tok)
            total += score
            scores.append(score)
            masses.append(mass)
            state = state.advance(tok)
            if k < len(prop) and tok == prop[k] and not state.finished and len(out) < max_new_tokens:
                accepted += 1
                continue
            break
        n_acc += accepted
        if prop:
            width = min(n_propose, width * 2) if accepted == len(prop) else max(1, width // 2)
        cached += len(pending) + accepted
        stepper.crop(cached)
        pending = [out[-1]]
    return DecodeOutput(out, total, n_forward, n_prop, n_acc, finished=state.finished,
                        token_scores=scores, allowed_mass=masses)


def batched_greedy_decode(stepper: Any, states: Sequence[ConstraintState], prompt: Sequence[int],
                          max_new_tokens: int, n_propose: int = 0) -> List[DecodeOutput]:
    """Constrained greedy decoding of several sequences at once (row ``i`` of the
    stepper's batch is constrained by ``states[i]``): one forward pass per step over
    every unfinished row, finished rows dropped from the batch (``stepper.reorder``).
    Row ``i``'s output is :func:`greedy_decode`'s for that row alone; only the
    arithmetic is shared, which many small rows do much faster than one after the
    other. ``n_forward`` of each output counts the batched passes it took part in.

    ``n_propose`` > 0: copy-speculative in the batch: each pass feeds every row its
    pending token plus its own proposal (rows padded to the longest) and each row
    keeps what :func:`speculative_decode` would keep (the same output). Rows then
    differ in length: the stepper must offer ``step_ragged(ids, lengths, fed=...)`` (``fed``:
    each row's real tokens before its padding) and
    ``crop_rows(lengths)`` (``core.bert_decoder.BertDecoderStepper``)."""
    import torch

    stepper.reset()
    states = list(states)
    n = len(states)
    outs: List[List[int]] = [[] for _ in range(n)]
    scores: List[List[float]] = [[] for _ in range(n)]
    masses: List[List[float]] = [[] for _ in range(n)]
    passes, proposed, kept = [0] * n, [0] * n, [0] * n
    pending = [list(prompt) for _ in range(n)]
    cached = [0] * n
    width = [n_propose] * n
    active = [i for i in range(n) if not states[i].finished and max_new_tokens > 0]
    if len(active) < n:
        stepper.reorder(active)
    while active:
        props = []
        for i in active:
            room = max_new_tokens - len(outs[i]) - 1
            props.append(states[i].proposal(min(width[i], room)) if room > 0 and n_propose > 0
                         else [])
        fed = [pending[i] + p for i, p in zip(active, props)]
        m = max(len(f) for f in fed)
        ids = torch.tensor([f + [f[-1]] * (m - len(f)) for f in fed], dtype=torch.long)
        if n_propose > 0:
            logits = stepper.step_ragged(ids, [cached[i] for i in active],
                                         fed=[len(f) for f in fed])
        else:  # every row as long as the others: a plain step
            logits = stepper.step(ids)
        logits = logits.float().cpu().numpy()
        keep: List[int] = []
        for j, (i, prop) in enumerate(zip(active, props)):
            passes[i] += 1
            proposed[i] += len(prop)
            base = len(pending[i]) - 1
            accepted = 0
            for k in range(len(prop) + 1):
                tok, score, mass = choose_with_mass(logits[j, base + k], states[i], stepper.col_of)
                outs[i].append(tok)
                scores[i].append(score)
                masses[i].append(mass)
                states[i] = states[i].advance(tok)
                if (k < len(prop) and tok == prop[k] and not states[i].finished
                        and len(outs[i]) < max_new_tokens):
                    accepted += 1
                    continue
                break
            kept[i] += accepted
            if prop:
                width[i] = (min(n_propose, width[i] * 2) if accepted == len(prop)
                            else max(1, width[i] // 2))
            cached[i] += len(pending[i]) + accepted
            pending[i] = [outs[i][-1]]
            if not states[i].finished and len(outs[i]) < max_new_tokens:
                keep.append(j)
        if n_propose > 0:
            stepper.crop_rows([cached[i] for i in active])
        if len(keep) < len(active):
            if keep:
                stepper.reorder(keep)
            active = [active[j] for j in keep]
    return [DecodeOutput(outs[i], float(sum(scores[i])), passes[i], proposed[i], kept[i],
                         finished=states[i].finished, token_scores=scores[i],
                         allowed_mass=masses[i]) for i in range(n)]


def beam_decode(stepper: Any, state: ConstraintState, prompt: Sequence[int], max_new_tokens: int,
                beam_size: int = 4, length_penalty: float = 1.0) -> DecodeOutput:
    """Constrained beam search. Scores are log-probabilities (softmax over the
    stepper's columns); finished hypotheses are ranked by ``score / len**length_penalty``
    (as Hugging Face does). ``beam_size=1`` is greedy decoding on log-probabilities."""
    import torch

    stepper.reset()
    logits = stepper.step(torch.tensor([list(prompt)], dtype=torch.long))[:, -1]
    n_forward = 1
    beams: List[Tuple[float, List[int], ConstraintState]] = [(0.0, [], state)]
    done: List[Tuple[float, float, List[int]]] = []  # (normalised, raw, tokens)
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        cands: List[Tuple[float, int, int]] = []  # (score, beam index, token)
        for b, (score, _toks, st) in enumerate(beams):
            toks, cols = allowed_arrays(st, stepper.col_of)
            if len(toks) == 0:
                continue
            scores = logp[b, cols]
            top = numpy.argsort(-scores, kind="stable")[: beam_size * 2]
            cands.extend((score + float(scores[i]), b, int(toks[i])) for i in top)
        cands.sort(key=lambda c: -c[0])
        new_beams: List[Tuple[float, List[int], ConstraintState]] = []
        parents: List[int] = []
        for score, b, tok in cands:
            toks_b = beams[b][1] + [tok]
            st = beams[b][2].advance(tok)
            if st.finished:
                done.append((score / (len(toks_b) ** length_penalty), score, toks_b))
            else:
                new_beams.append((score, toks_b, st))
                parents.append(b)
            if len(new_beams) >= beam_size:
                break
        best_open = max((s / (len(t) ** length_penalty) for s, t, _ in new_beams), default=NEG_INF)
        if len(done) >= beam_size and max(d[0] for d in done) >= best_open:
            break
        if not new_beams:
            break
        stepper.reorder(parents)
        beams = new_beams
        last = torch.tensor([[t[-1]] for _, t, _ in beams], dtype=torch.long)
        logits = stepper.step(last)[:, -1]
        n_forward += 1
    if done:
        _, raw, toks = max(done, key=lambda d: d[0])
        return DecodeOutput(toks, raw, n_forward, finished=True)
    score, toks, _ = beams[0]
    return DecodeOutput(toks, score, n_forward, finished=False)


# --------------------------------------------------------------------------- Hugging Face models
def crop_cache(cache: Any, length: int) -> Any:
    """Keep the first ``length`` positions of a decoder self-attention cache (legacy
    tuples of (self k, self v[, cross k, cross v]) per layer, or a ``Cache`` object)."""
    if cache is None:
        return None
    if hasattr(cache, "crop"):
        cache.crop(length)
        return cache
    out = []
    for layer in cache:
        layer = tuple(layer)
        out.append(tuple(t[:, :, :length] for t in layer[:2]) + layer[2:])
    return tuple(out)


def reorder_cache(cache: Any, index: "Any") -> Any:
    if cache is None:
        return None
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)


class restricted_output:
    """Context manager: the model's output layer computes logits for ``columns``
    only (gradients flow into the full weight). Works for any model whose
    ``get_output_embeddings()`` is an ``nn.Linear`` and that adds no other
    vocabulary-sized bias (BART's ``final_logits_bias``): elsewhere a no-op that
    leaves full logits (check ``active``)."""

    def __init__(self, model: Any, columns: Optional[Sequence[int]]):
        self.model = model
        self.columns = columns
        self.active = False
        self._linear = None

    def __enter__(self) -> "restricted_output":
        import torch

        if self.columns is None or hasattr(self.model, "final_logits_bias"):
            return self
        linear = self.model.get_output_embeddings()
        if not isinstance(linear, torch.nn.Linear):
            return self
        idx = torch.as_tensor(list(self.columns), dtype=torch.long, device=linear.weight.device)

        def forward(x, _lin=linear, _idx=idx):
            bias = _lin.bias.index_select(0, _idx) if _lin.bias is not None else None
            return torch.nn.functional.linear(x, _lin.weight.index_select(0, _idx), bias)

        linear.forward = forward
        self._linear = linear
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        if self._linear is not None:
            del self._linear.forward  # back to the class's forward
            self._linear = None
        self.active = False


class HFSeq2SeqStepper:
    """Incremental decoder steps of a Hugging Face encoder-decoder over fixed
    encoder outputs, with a key/value cache.

    ``columns`` (vocab ids) restricts the logits to those tokens (see
    :class:`restricted_output`); ``col_of`` maps a vocab id to its column.
    ``input_embedder`` (optional) turns the fed ids ``(batch, len)`` into decoder input
    embeddings (``decoder_inputs_embeds``) and follows the cache through its own
    ``reset()``, ``crop(length)`` and ``reorder(index)``."""

    def __init__(self, model: Any, encoder_hidden: "Any", attention_mask: "Any",
                 columns: Optional[Sequence[int]] = None, input_embedder: Any = None):
        self.model = model
        self.input_embedder = input_embedder
        self.encoder_hidden = encoder_hidden
        self.attention_mask = attention_mask
        self._base_hidden, self._base_mask = encoder_hidden, attention_mask
        self.columns = list(columns) if columns is not None else None
        vocab = model.get_output_embeddings().weight.shape[0]
        self._restrict = restricted_output(model, self.columns)
        with self._restrict as r:
            active = r.active
        self.columns = self.columns if active else None
        self.col_of = column_index(self.columns, vocab)
        self.cache = None

    def reset(self) -> None:
        self.cache = None
        self.encoder_hidden, self.attention_mask = self._base_hidden, self._base_mask
        if getattr(self, "input_embedder", None) is not None:
            self.input_embedder.reset()

    def step(self, ids: "Any") -> "Any":
        """Logits ``(batch, len, columns)`` for decoder input ``ids`` (batch, len)."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        if not torch.is_tensor(ids):
            ids = torch.tensor([list(ids)], dtype=torch.long)
        ids = ids.to(self.encoder_hidden.device)
        if ids.shape[0] != self.encoder_hidden.shape[0]:
            reps = ids.shape[0] // self.encoder_hidden.shape[0]
            self.encoder_hidden = self.encoder_hidden.repeat(reps, 1, 1)
            self.attention_mask = self.attention_mask.repeat(reps, 1)
        with torch.inference_mode(), restricted_output(self.model, self.columns):
            dec = ({"decoder_inputs_embeds": self.input_embedder(ids)}
                   if getattr(self, "input_embedder", None) is not None else {"decoder_input_ids": ids})
            out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=self.encoder_hidden),
                             attention_mask=self.attention_mask, past_key_values=self.cache,
                             use_cache=True, return_dict=True, **dec)
        self.cache = out.past_key_values
        return out.logits

    def step_numpy(self, ids: Sequence[int]) -> numpy.ndarray:
        """Logits ``(len, columns)`` as float32 numpy for one sequence."""
        return self.step(ids)[0].float().cpu().numpy()

    def crop(self, length: int) -> None:
        self.cache = crop_cache(self.cache, length)
        if getattr(self, "input_embedder", None) is not None:
            self.input_embedder.crop(length)

    def reorder(self, index: Sequence[int]) -> None:
        import torch

        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.encoder_hidden.device)
        self.cache = reorder_cache(self.cache, idx)
        # rows of the current batch: beams of one source (rows repeated by ``step``)
        # or a batch of sources (``batched_greedy_decode`` dropping finished rows)
        self.encoder_hidden = self.encoder_hidden.index_select(0, idx)
        self.attention_mask = self.attention_mask.index_select(0, idx)
        if getattr(self, "input_embedder", None) is not None:
            self.input_embedder.reorder(list(index))


class HFCausalLMStepper(HFSeq2SeqStepper):
    """Incremental steps of a Hugging Face causal LM (decoder-only: GPT-2, OPT,
    LLaMA, ...) with a key/value cache: the prompt (e.g. instruction + source +
    separator) is the first ``step``, the same loops drive it as an encoder-decoder.

    ``columns`` restricts the logits as in :class:`HFSeq2SeqStepper`."""

    def __init__(self, model: Any, columns: Optional[Sequence[int]] = None):
        self.device = next(model.parameters()).device
        super().__init__(model, None, None, columns)

    def reset(self) -> None:
        self.cache = None

    def step(self, ids: "Any") -> "Any":
        import torch

        if not torch.is_tensor(ids):
            ids = torch.tensor([list(ids)], dtype=torch.long)
        with torch.inference_mode(), restricted_output(self.model, self.columns):
            out = self.model(input_ids=ids.to(self.device), past_key_values=self.cache,
                             use_cache=True, return_dict=True)
        self.cache = out.past_key_values
        return out.logits

    def reorder(self, index: Sequence[int]) -> None:
        import torch

        self.cache = reorder_cache(self.cache, torch.as_tensor(list(index), dtype=torch.long,
                                                               device=self.device))


class LogProbStepper:
    """Wraps a stepper so that its scores are log-probabilities (log-softmax over the
    stepper's columns, i.e. the full vocabulary unless restricted). The constrained
    argmax is unchanged; the scores that the loops report (``DecodeOutput.score``,
    ``token_scores``) become log-probabilities of the emitted tokens under the
    *unconstrained* model, which tells how much the model agrees with what the
    grammar let it write."""

    def __init__(self, stepper: Any):
        self.inner = stepper
        self.col_of = stepper.col_of

    def reset(self) -> None:
        self.inner.reset()

    def step(self, ids: "Any") -> "Any":
        import torch

        return torch.log_softmax(self.inner.step(ids).float(), dim=-1)

    def step_numpy(self, ids: Sequence[int]) -> numpy.ndarray:
        rows = numpy.asarray(self.inner.step_numpy(ids), dtype=numpy.float64)
        top = rows.max(axis=-1, keepdims=True)
        norm = top + numpy.log(numpy.exp(rows - top).sum(axis=-1, keepdims=True))
        return (rows - norm).astype(numpy.float32)

    def crop(self, length: int) -> None:
        self.inner.crop(length)

    def reorder(self, index: Sequence[int]) -> None:
        self.inner.reorder(index)


class BiasedStepper:
    """Wraps a stepper and adds ``bias[token]`` to the logit of ``token`` (its column),
    like an API's ``logit_bias``: a decoding-time calibration, e.g. of how readily an
    undertrained extraction model opens a span. Every loop sees the same biased
    scores, so greedy and copy-speculative decoding still agree."""

    def __init__(self, stepper: Any, bias: Dict[int, float]):
        self.inner = stepper
        self.col_of = stepper.col_of
        cols = [int(self.col_of[t]) if self.col_of is not None else int(t) for t in bias]
        if any(c < 0 for c in cols):
            raise ValueError("BiasedStepper: a biased token has no logit column in the stepper")
        self._cols = numpy.asarray(cols, dtype=numpy.int64)
        self._vals = numpy.asarray(list(bias.values()), dtype=numpy.float32)

    def reset(self) -> None:
        self.inner.reset()

    def step(self, ids: "Any") -> "Any":
        import torch

        logits = self.inner.step(ids).clone()
        logits[..., torch.as_tensor(self._cols)] += torch.as_tensor(self._vals, dtype=logits.dtype,
                                                                   device=logits.device)
        return logits

    def step_numpy(self, ids: Sequence[int]) -> numpy.ndarray:
        rows = numpy.array(self.inner.step_numpy(ids), dtype=numpy.float32)
        rows[..., self._cols] += self._vals
        return rows

    def step_ragged(self, ids: "Any", lengths: Sequence[int],
                    fed: Optional[Sequence[int]] = None) -> "Any":
        import torch

        logits = self.inner.step_ragged(ids, lengths, fed=fed).clone()
        logits[..., torch.as_tensor(self._cols)] += torch.as_tensor(self._vals, dtype=logits.dtype,
                                                                   device=logits.device)
        return logits

    def crop_rows(self, lengths: Sequence[int]) -> None:
        self.inner.crop_rows(lengths)

    def crop(self, length: int) -> None:
        self.inner.crop(length)

    def reorder(self, index: Sequence[int]) -> None:
        self.inner.reorder(index)


def decode(stepper: Any, state: ConstraintState, prompt: Sequence[int], max_new_tokens: int, *,
           method: str = "greedy", beam_size: int = 4, n_propose: int = 0,
           length_penalty: float = 1.0, skip_forced: bool = False) -> DecodeOutput:
    """Dispatch: ``greedy`` (copy-speculative when ``n_propose > 0``, calling the
    model only at choices with ``skip_forced``) or ``beam``."""
    if method == "beam" and beam_size > 1:
        return beam_decode(stepper, state, prompt, max_new_tokens, beam_size=beam_size,
                           length_penalty=length_penalty)
    if method not in ("greedy", "beam"):
        raise ValueError(f"Unknown decoding method '{method}': use 'greedy' or 'beam'.")
    if n_propose > 0 and not skip_forced:
        return speculative_decode(stepper, state, prompt, max_new_tokens, n_propose=n_propose)
    return greedy_decode(stepper, state, prompt, max_new_tokens, skip_forced=skip_forced)


# --------------------------------------------------------------------------- HF generate adapter
class ConstrainedLogitsProcessor:
    """A ``transformers`` logits processor applying :class:`ConstraintState` grammars
    inside ``model.generate`` (greedy, beam search, sampling).

    ``initial_states[i]`` is the grammar of batch item i; with beams, rows
    ``i*num_beams ... (i+1)*num_beams-1`` belong to item i. The processor replays
    each row's generated tokens (those after ``prompt_length``) through the grammar,
    caching states by prefix. Finished rows may only emit ``pad_token_id``."""

    def __init__(self, initial_states: Sequence[ConstraintState], *, num_beams: int = 1,
                 prompt_length: int = 1, pad_token_id: Optional[int] = None):
        self.initial_states = list(initial_states)
        self.num_beams = num_beams
        self.prompt_length = prompt_length
        self.pad_token_id = pad_token_id
        self._cache: Dict[Tuple[int, Tuple[int, ...]], ConstraintState] = {}

    def _state(self, row: int, generated: Tuple[int, ...]) -> ConstraintState:
        item = row // self.num_beams
        st = self._cache.get((item, generated))
        if st is not None:
            return st
        # replay from the longest cached prefix (normally the previous step's)
        k = len(generated)
        while k > 0 and (item, generated[:k]) not in self._cache:
            k -= 1
        st = self._cache.get((item, generated[:k]), self.initial_states[item])
        for tok in generated[k:]:
            st = st if st.finished else st.advance(tok)
        self._cache[(item, generated)] = st
        return st

    def __call__(self, input_ids: "Any", scores: "Any") -> "Any":
        import torch

        out = torch.full_like(scores, NEG_INF)
        step = input_ids.shape[1] - self.prompt_length
        for row in range(input_ids.shape[0]):
            generated = tuple(int(t) for t in input_ids[row, self.prompt_length:])
            st = self._state(row, generated)
            if st.finished:
                if self.pad_token_id is not None:
                    out[row, self.pad_token_id] = 0.0
                continue
            allowed = st.allowed()
            toks = torch.tensor(list(allowed.keys()), dtype=torch.long, device=scores.device)
            cols = torch.tensor(list(allowed.values()), dtype=torch.long, device=scores.device)
            out[row, toks] = scores[row, cols]
        # drop states of prefixes that can no longer be extended (keep the last step)
        self._cache = {k: v for k, v in self._cache.items() if len(k[1]) >= step}
        return out
