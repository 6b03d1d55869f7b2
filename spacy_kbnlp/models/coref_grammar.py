"""Seq2seq coreference (Zhang, Wiseman & Stratos 2023; dissertation ch. 7, app. E).

The document (subword units of the source model's tokenizer) is the encoder input;
the decoder writes a *linearization* of the coreference annotation:

* ``full`` linearization: the whole source with mentions marked,
  ``a <m> <m> b <|> 1 </m> c <|> 2 </m> d <m> e <|> 2 </m>``;
* ``partial`` linearization: only the marked mentions, inside sentence markers
  ``<sentence> <m> <m> b <|> 1 </m> c <|> 2 </m> </sentence> <sentence> <m> e <|> 2
  </m> </sentence>`` (the source carries the same markers). Mentions are put back
  onto the source by affine-gap alignment per sentence (:mod:`..core.alignment`);
* ``integer_free``: full linearization where the cluster number is part of the
  closing symbol, ``<m> b </m_1>``; the model predicts ``<new>`` for a new cluster.

Actions (what the decoder is trained to predict, ``y``): ``token`` (the next token)
or ``copy`` (``<c>`` for every source token; the real token is fed back). Cluster
numbers count clusters in order of their first *closed* mention, so a new cluster
is always the next number. Nested mentions open outer-first and close inner-first.
The rare *crossing* mentions (3 pairs in OntoGUM train) are closed with
``<cross>`` symbols first: k of them close the mention k levels below the innermost
one. :class:`CorefState` is the grammar of Appendix E (plus the length budget
and "no empty mention" rules), so constrained decoding always yields a
parseable sequence, and replaying a sequence through it *is* the parser.

Everything here works on integer token ids; :class:`Seq2SeqCorefModel` ties it
to a Hugging Face tokenizer and model.

This module holds the grammar and the linearization; ``models.source_units`` turns
documents into source units and ``models.seq2seq`` ties both to a Hugging Face
tokenizer and model.
"""
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..core.alignment import gotoh_align
from ..core.decoding import ConstraintState, PrefixTrie
from ..errors import Errors

REPRESENTATIONS = ("full", "partial", "integer_free")
ACTIONS = ("copy", "token")
M_OPEN, M_CLOSE, SEP, COPY, NEW, CROSS = "<m>", "</m>", "<|>", "<c>", "<new>", "<cross>"
S_OPEN, S_CLOSE = "<sentence>", "</sentence>"
BASE_SPECIALS = (M_OPEN, M_CLOSE, SEP, COPY, NEW, CROSS, S_OPEN, S_CLOSE)

Mention = Tuple[int, int, int]  # (start, end exclusive, cluster) in unit coordinates

# English personal pronouns by agreement class (person, number, gender): under
# ``pronoun_agreement`` a one-word mention of one class may not join a cluster that
# already holds a one-word mention of another class
PRONOUN_CLASSES = {
    "1sg": "i me my mine myself", "1pl": "we us our ours ourselves",
    "2": "you your yours yourself yourselves", "3m": "he him his himself",
    "3f": "she her hers herself", "3n": "it its itself", "3pl": "they them their theirs themselves",
}


def pronoun_units(tokenizer: Any) -> Dict[int, str]:
    """``{unit id: agreement class}`` for the pronouns of :data:`PRONOUN_CLASSES` that
    ``tokenizer`` writes as one unit (lowercase and capitalized forms)."""
    out: Dict[int, str] = {}
    for cls, words in PRONOUN_CLASSES.items():
        for word in words.split():
            for form in {word, word.capitalize(), word.upper()}:
                ids = tokenizer.encode(form, add_special_tokens=False)
                if len(ids) == 1:
                    out.setdefault(int(ids[0]), cls)
    return out


def close_symbol(l: int) -> str:
    return f"</m_{l}>"


def special_tokens(representation: str, max_clusters: int) -> List[str]:
    """Symbols to add to the tokenizer for ``representation``."""
    out = list(BASE_SPECIALS)
    if representation == "integer_free":
        out.extend(close_symbol(l) for l in range(1, max_clusters + 1))
    return out


def check_spec(representation: str, action: str) -> None:
    if representation not in REPRESENTATIONS or action not in ACTIONS:
        raise ValueError(Errors.KBE253.format(
            representation=representation, action=action,
            why=f"representation must be one of {', '.join(REPRESENTATIONS)} and action one "
                f"of {', '.join(ACTIONS)}"))
    if representation == "partial" and action == "copy":
        raise ValueError(Errors.KBE253.format(
            representation=representation, action=action,
            why="partial linearization skips the text between mentions, so it cannot copy "
                "the source token by token; use action 'token'"))


@dataclass(frozen=True)
class Vocab:
    """Token ids of the markup symbols, cluster numbers and end of sequence."""
    m_open: int
    m_close: int
    sep: int
    copy: int
    new: int
    cross: int
    s_open: int
    s_close: int
    eos: int
    int_tokens: Tuple[Tuple[int, ...], ...]   # index l-1 -> token ids of str(l)
    close_ids: Tuple[int, ...]                # index l-1 -> id of </m_l> (integer_free)

    @property
    def max_clusters(self) -> int:
        return len(self.close_ids) if self.close_ids else len(self.int_tokens)

    def markup(self) -> set:
        return {self.m_open, self.m_close, self.sep, self.copy, self.new, self.cross,
                self.s_open, self.s_close, self.eos, *self.close_ids}

    def action_columns(self) -> List[int]:
        """The copy-action output space: markup, cluster-number tokens, end."""
        cols = set(self.markup())
        for toks in self.int_tokens:
            cols.update(toks)
        return sorted(cols)


def add_markup_tokens(tokenizer: Any, representation: str, max_clusters: int) -> int:
    """Add the markup symbols to ``tokenizer``; returns how many were new."""
    return tokenizer.add_special_tokens(
        {"additional_special_tokens": special_tokens(representation, max_clusters)},
        replace_additional_special_tokens=False)


def build_vocab(tokenizer: Any, representation: str, max_clusters: int) -> Vocab:
    """The :class:`Vocab` of a tokenizer that holds the markup symbols."""
    conv = tokenizer.convert_tokens_to_ids

    def tid(sym: str) -> int:
        i = conv(sym)
        if i is None or i == tokenizer.unk_token_id:
            raise ValueError(Errors.KBE255.format(
                what=f"the markup symbol {sym!r}",
                fix="load the model with the same `representation` it was trained with"))
        return int(i)

    ints = tuple(tuple(int(t) for t in tokenizer.encode(str(l), add_special_tokens=False))
                 for l in range(1, max_clusters + 1))
    closes = tuple(tid(close_symbol(l)) for l in range(1, max_clusters + 1)) \
        if representation == "integer_free" else ()
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return Vocab(tid(M_OPEN), tid(M_CLOSE), tid(SEP), tid(COPY), tid(NEW), tid(CROSS),
                 tid(S_OPEN), tid(S_CLOSE), int(eos), ints, closes)


# --------------------------------------------------------------------------- linearization
def linearize(units: Sequence[int], mentions: Iterable[Mention], vocab: Vocab, *,
              representation: str = "full", action: str = "copy"
              ) -> Tuple[List[int], List[int]]:
    """``(tokens, actions)`` for source ``units`` and gold ``mentions``.

    ``tokens`` (z) is what the decoder reads back (and emits under token action);
    ``actions`` (y) is what it is trained to predict. Both end with ``eos``. In
    ``partial`` mode ``units`` holds the sentence markers."""
    check_spec(representation, action)
    partial = representation == "partial"
    copy = action == "copy"
    starts: Dict[int, List[Mention]] = defaultdict(list)
    for m in mentions:
        starts[m[0]].append(m)
    for lst in starts.values():
        lst.sort(key=lambda m: (-m[1], m[2]))
    number: Dict[int, int] = {}
    stack: List[Mention] = []
    z: List[int] = []
    y: List[int] = []
    markers = (vocab.s_open, vocab.s_close)
    for i, tok in enumerate(units):
        if partial and tok in markers:
            z.append(tok)
            y.append(tok)
            continue
        for m in starts.get(i, ()):
            z.append(vocab.m_open)
            y.append(vocab.m_open)
            stack.append(m)
        if not partial or stack:
            z.append(tok)
            y.append(vocab.copy if copy else tok)
        while True:
            idx = max((k for k, m in enumerate(stack) if m[1] == i + 1), default=-1)
            if idx < 0:
                break
            m = stack.pop(idx)
            depth = len(stack) - idx
            z.extend([vocab.cross] * depth)
            y.extend([vocab.cross] * depth)
            num = number.get(m[2])
            is_new = num is None
            if is_new:
                num = number[m[2]] = len(number) + 1
            if representation == "integer_free":
                z.append(vocab.close_ids[num - 1])
                y.append(vocab.new if is_new else vocab.close_ids[num - 1])
            else:
                ints = list(vocab.int_tokens[num - 1])
                z.extend([vocab.sep] + ints + [vocab.m_close])
                y.extend([vocab.sep] + ints + [vocab.m_close])
    z.append(vocab.eos)
    y.append(vocab.eos)
    return z, y


# --------------------------------------------------------------------------- grammar
class CorefGrammar:
    """The fixed context of one segment: source units, symbols, budget."""

    def __init__(self, units: Sequence[int], vocab: Vocab, *, representation: str = "full",
                 action: str = "copy", max_length: int = 512, max_clusters: Optional[int] = None,
                 agreement: Optional[Dict[int, str]] = None):
        check_spec(representation, action)
        self.units = list(units)
        # unit id -> pronoun agreement class (``pronoun_units``); None: no constraint
        self.agreement = agreement or None
        self.vocab = vocab
        self.representation = representation
        self.partial = representation == "partial"
        self.integer_free = representation == "integer_free"
        self.copy = action == "copy"
        self.max_length = max_length
        self.max_clusters = min(max_clusters or vocab.max_clusters, vocab.max_clusters)
        self.trie = PrefixTrie()
        if not self.integer_free:
            for l in range(1, self.max_clusters + 1):
                self.trie.insert(vocab.int_tokens[l - 1], l)
        self.max_id_len = self.trie.max_depth
        self.close_cost = 1 if self.integer_free else 2 + self.max_id_len
        self.close_index = {tok: l for l, tok in enumerate(vocab.close_ids, start=1)}
        self.blocks: List[Tuple[int, int]] = []
        self.block_tokens: List[Dict[int, int]] = []
        if self.partial:
            start = None
            for i, tok in enumerate(self.units):
                if tok == vocab.s_open:
                    start = i + 1
                elif tok == vocab.s_close and start is not None:
                    self.blocks.append((start, i))
                    self.block_tokens.append({t: t for t in self.units[start:i]})
                    start = None
        need = 2 * len(self.blocks) + 1 if self.partial else len(self.units) + 1
        if need > max_length:
            raise ValueError(Errors.KBE254.format(
                what="target", n=need, limit=max_length,
                fix="lower `segment_length` or raise `max_target_length`"))

    def initial(self) -> "CorefState":
        return CorefState(self)

    def pointers(self, tokens: Sequence[int]) -> List[int]:
        """The copy pointer (next source unit) after each of ``tokens`` (full and
        integer-free linearizations; tokens the grammar does not allow leave it)."""
        state = self.initial()
        out = []
        for tok in tokens:
            if not state.finished and tok in state.allowed():
                state = state.advance(tok)
            out.append(state.pos)
        return out

    def parse(self, tokens: Sequence[int], strict: bool = False) -> Tuple[List[Mention], int]:
        """Replay ``tokens`` through the grammar: ``(mentions, n_skipped)`` with mentions
        as unit spans and cluster numbers. Tokens the grammar does not allow are
        skipped (counted), or raise with ``strict``."""
        state = self.initial()
        skipped = 0
        for tok in tokens:
            if state.finished:
                break
            if tok not in state.allowed():
                if strict:
                    raise ValueError(f"token {tok} not allowed after {state!r}")
                skipped += 1
                continue
            state = state.advance(tok)
        return state.mentions(), skipped


class CorefState(ConstraintState):
    """Grammar state (Appendix E, plus budget and non-empty mention rules).

    ``pos``: next source unit (full) or number of mention tokens written (partial);
    ``open``: start of each open mention, innermost last; ``cross``: ``<cross>``
    symbols written for the pending close; ``node``: trie node while reading a
    cluster number; ``block``/``in_block``: current sentence (partial)."""

    __slots__ = ("g", "pos", "open", "cross", "node", "id_len", "n_clusters", "length",
                 "done", "block", "in_block", "closed", "written", "classes")

    def __init__(self, grammar: CorefGrammar):
        self.g = grammar
        self.pos = 0
        self.open: Tuple[int, ...] = ()
        self.cross = 0
        self.node = None
        self.id_len = 0
        self.n_clusters = 0
        self.length = 0
        self.done = False
        self.block = -1
        self.in_block = False
        self.closed: Any = None    # linked list (prev, mention)
        self.written: Any = None   # partial: linked list (prev, (block, token))
        self.classes: Tuple[frozenset, ...] = ()  # pronoun classes of cluster l at l-1

    def __repr__(self) -> str:
        return (f"CorefState(pos={self.pos}, open={self.open}, cross={self.cross}, "
                f"in_id={self.node is not None}, clusters={self.n_clusters}, "
                f"length={self.length}, block={self.block})")

    @property
    def finished(self) -> bool:  # type: ignore[override]
        return self.done

    def _copy(self) -> "CorefState":
        new = CorefState.__new__(CorefState)
        for name in CorefState.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    # --- budget: the fewest tokens still needed to finish
    def _need(self) -> int:
        g = self.g
        n_open = len(self.open)
        if self.node is not None:
            close = (n_open - 1) * g.close_cost + (g.max_id_len - self.id_len) + 1
        else:
            close = n_open * g.close_cost
        if not g.partial:
            return (len(g.units) - self.pos) + close + 1
        blocks_left = len(g.blocks) - self.block - 1
        empty_open = 1 if self.open and self.pos == self.open[-1] else 0
        return 2 * blocks_left + (1 if self.in_block else 0) + close + empty_open + 1

    def _fits(self, extra: int) -> bool:
        """Whether emitting one token that changes the need by ``extra`` keeps the budget."""
        return self.length + 1 + self._need() + extra <= self.g.max_length

    def allowed(self) -> Dict[int, int]:
        if self.done:
            return {}
        g, v = self.g, self.g.vocab
        res: Dict[int, int] = {}
        if self.node is not None:  # reading a cluster number
            max_rank = min(self.n_clusters + 1, g.max_clusters)
            banned = self._banned()
            for tok in PrefixTrie.next_tokens(self.node, max_rank):
                child = self.node.children[tok]
                if banned and child.value in banned and not child.children:
                    continue
                res[tok] = tok
            value = self.node.value
            if value is not None and value <= max_rank and not (banned and value in banned):
                res[v.m_close] = v.m_close
            if not res and banned:  # every number banned (max_clusters reached): no constraint
                return self._unbanned_numbers(max_rank)
            return res
        if g.partial and not self.in_block:
            if self.block + 1 < len(g.blocks):
                res[v.s_open] = v.s_open
            elif not self.open:
                res[v.eos] = v.eos
            return res
        top_empty = bool(self.open) and self.pos == self.open[-1]
        if self.cross == 0:
            if g.partial:
                if self.open:
                    cost = -1 if top_empty else 0
                    if self._fits(cost):
                        for tok in g.block_tokens[self.block]:
                            res[tok] = tok
                if g.block_tokens[self.block] and self._fits(g.close_cost + (0 if top_empty else 1)):
                    res[v.m_open] = v.m_open  # (a mention needs a token of this sentence)
                last = self.block + 1 >= len(g.blocks)
                if not top_empty and (not last or not self.open):
                    res[v.s_close] = v.s_close
            else:
                if self.pos < len(g.units):
                    tok = g.units[self.pos]
                    res[tok] = v.copy if g.copy else tok
                    if self._fits(g.close_cost):
                        res[v.m_open] = v.m_open
                elif not self.open:
                    res[v.eos] = v.eos
        if self.open:
            target = len(self.open) - 1 - self.cross
            if self.pos > self.open[target]:
                if g.integer_free:
                    banned = self._banned() if self.n_clusters < g.max_clusters else None
                    for l in range(1, self.n_clusters + 1):
                        if not (banned and l in banned):
                            res[v.close_ids[l - 1]] = v.close_ids[l - 1]
                    if self.n_clusters < g.max_clusters:
                        res[v.close_ids[self.n_clusters]] = v.new
                else:
                    res[v.sep] = v.sep
            if target >= 1 and self.pos > self.open[target - 1] and self._fits(0):
                res[v.cross] = v.cross
        return res

    def advance(self, token: int) -> "CorefState":
        g, v = self.g, self.g.vocab
        s = self._copy()
        s.length += 1
        if s.node is not None:
            if token == v.m_close:
                s._close(s.node.value)
            else:
                s.node = s.node.children[token]
                s.id_len += 1
            return s
        if token == v.eos:
            s.done = True
        elif token == v.m_open:
            s.open = s.open + (s.pos,)
        elif token == v.cross:
            s.cross += 1
        elif token == v.sep:
            s.node = g.trie.root
            s.id_len = 0
        elif g.integer_free and token in g.close_index:
            s._close(g.close_index[token])
        elif g.partial and token == v.s_open:
            s.block += 1
            s.in_block = True
        elif g.partial and token == v.s_close:
            s.in_block = False
        elif g.partial:
            s.written = (s.written, (s.block, token))
            s.pos += 1
        else:
            s.pos += 1
        return s

    # --- pronoun agreement
    def _mention_class(self) -> Optional[str]:
        """The agreement class of the mention being closed (a one-unit pronoun), or None."""
        agreement = self.g.agreement
        if not agreement or not self.open:
            return None
        start = self.open[len(self.open) - 1 - self.cross]
        if self.g.partial or self.pos - start != 1:
            return None
        return agreement.get(self.g.units[start])

    def _banned(self) -> Optional[set]:
        """Cluster numbers the mention being closed may not take: those holding a
        pronoun of another agreement class."""
        cls = self._mention_class()
        if cls is None:
            return None
        return {l for l, held in enumerate(self.classes, start=1) if held - {cls}}

    def _unbanned_numbers(self, max_rank: int) -> Dict[int, int]:
        res = {tok: tok for tok in PrefixTrie.next_tokens(self.node, max_rank)}
        if self.node.value is not None and self.node.value <= max_rank:
            res[self.g.vocab.m_close] = self.g.vocab.m_close
        return res

    def _close(self, number: int) -> None:
        cls = self._mention_class()
        if cls is not None:
            classes = self.classes + (frozenset(),) * (number - len(self.classes))
            self.classes = classes[:number - 1] + (classes[number - 1] | {cls},) + classes[number:]
        target = len(self.open) - 1 - self.cross
        start = self.open[target]
        self.open = self.open[:target] + self.open[target + 1:]
        self.closed = (self.closed, (start, self.pos, number))
        self.n_clusters = max(self.n_clusters, number)
        self.cross = 0
        self.node = None
        self.id_len = 0

    def proposal(self, n: int) -> List[int]:
        """A draft of the next ``n`` tokens for copy-speculative decoding (only how much
        one forward pass verifies depends on it, never the output): source units to
        copy, the forced ``</m>`` after a cluster number, and, with pronoun agreement
        classes, whole pronoun mentions (``<m> he <|> N </m>``) with a guessed number."""
        g = self.g
        if g.partial or self.done or self.cross:
            return []
        if self.node is None and not g.agreement:  # plain copy continuation
            return g.units[self.pos: self.pos + n]
        out: List[int] = []
        state = self
        while len(out) < n:
            tok = state._draft()
            if tok is None:
                break
            out.append(tok)
            state = state.advance(tok)
        return out

    def _draft(self) -> Optional[int]:
        g, v = self.g, self.g.vocab
        if self.done or self.cross:
            return None
        if self.node is not None:  # a cluster number: guess it, then the forced </m>
            if self.node is g.trie.root:
                number = self._guess_number()
                return g.vocab.int_tokens[number - 1][0] if number else None
            if self.node.value is not None and not self.node.children:
                return v.m_close
            return None
        agreement = g.agreement or {}
        top = self.open[-1] if self.open else None
        if top is not None and self.pos == top + 1 and g.units[top] in agreement:
            return v.sep  # a pronoun mention is one word
        if self.pos >= len(g.units):
            return v.eos if not self.open else None
        if g.units[self.pos] in agreement and top != self.pos:
            return v.m_open
        return g.units[self.pos]

    def _guess_number(self) -> Optional[int]:
        """The most recent cluster of a mention with the same units (a pronoun: of the
        same agreement class), else a new cluster."""
        g = self.g
        start = self.open[len(self.open) - 1 - self.cross]
        span = tuple(g.units[start:self.pos])
        cls = self._mention_class()
        node = self.closed
        while node is not None:
            node, (s, e, number) = node
            other = tuple(g.units[s:e])
            if other == span or (cls is not None and len(other) == 1
                                 and (g.agreement or {}).get(other[0]) == cls):
                return number
        new = self.n_clusters + 1
        return new if new <= g.max_clusters else None

    # --- results
    def mentions(self) -> List[Mention]:
        """Closed mentions as unit spans ``(start, end, cluster number)``."""
        out = _unlink(self.closed)
        if not self.g.partial:
            return out
        return _align_partial(self.g, _unlink(self.written), out)


def _unlink(linked: Any) -> List[Any]:
    out = []
    while linked is not None:
        linked, item = linked
        out.append(item)
    out.reverse()
    return out


def _align_partial(g: CorefGrammar, written: List[Tuple[int, int]], mentions: List[Mention]
                   ) -> List[Mention]:
    """Put partial-linearization mentions (spans over the written tokens) onto the
    source: Gotoh alignment of each sentence's written tokens to its source tokens."""
    where = [-1] * len(written)
    by_block: Dict[int, List[int]] = defaultdict(list)
    for k, (block, _tok) in enumerate(written):
        by_block[block].append(k)
    for block, ks in by_block.items():
        start, end = g.blocks[block]
        positions, _ = gotoh_align(g.units[start:end], [written[k][1] for k in ks])
        for k, p in zip(ks, positions):
            if p >= 0:
                where[k] = start + p
    out = []
    for s, e, c in mentions:
        aligned = [where[k] for k in range(s, e) if where[k] >= 0]
        if aligned and aligned[0] <= aligned[-1]:
            out.append((aligned[0], aligned[-1] + 1, c))
    return out


def group_clusters(mentions: Iterable[Mention]) -> List[List[Tuple[int, int]]]:
    """Mentions grouped by cluster number: sorted, deduplicated, clusters ordered by
    their first mention."""
    groups: Dict[int, set] = defaultdict(set)
    for s, e, c in mentions:
        groups[c].add((s, e))
    clusters = [sorted(g) for g in groups.values()]
    clusters.sort()
    return clusters



def limit_clusters(mentions: Sequence[Mention], max_clusters: int) -> Tuple[List[Mention], int]:
    """Keep the mentions of the ``max_clusters`` clusters that close first (the
    numbering of :func:`linearize`); returns the kept mentions and how many were dropped."""
    first_end: Dict[int, Tuple[int, int]] = {}
    for s, e, c in mentions:
        key = (e, -s)
        if c not in first_end or key < first_end[c]:
            first_end[c] = key
    if len(first_end) <= max_clusters:
        return list(mentions), 0
    keep = set(sorted(first_end, key=lambda c: first_end[c])[:max_clusters])
    kept = [m for m in mentions if m[2] in keep]
    return kept, len(mentions) - len(kept)



MERGES = ("agreement", "union")

# English words that never make a mention a name for :func:`name_match_merge`
# (a capitalized pronoun or determiner starts a sentence; it names nobody)
NAME_STOPWORDS = frozenset(" ".join(PRONOUN_CLASSES.values()).split()) | frozenset(
    "this that these those who whom whose which what there here one ones the a an".split())


def name_match_merge(clusters: Sequence[Sequence[Tuple[int, int]]], words: Sequence[str]
                     ) -> List[List[Tuple[int, int]]]:
    """Join clusters (singletons included) that hold a mention with the same text
    (case-insensitive) when that text has a capitalized word that is not a
    pronoun or determiner (:data:`NAME_STOPWORDS`): a name repeated anywhere in a
    document, as the exact string-match sieve of rule-based coreference does. The
    decoder sees one segment at a time, so the same name in segments that do not
    overlap is otherwise never linked."""
    parent = list(range(len(clusters)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first: Dict[str, int] = {}
    for ci, cluster in enumerate(clusters):
        for start, end in cluster:
            toks = words[start:end]
            if not any(w[:1].isupper() and w.lower() not in NAME_STOPWORDS for w in toks):
                continue
            key = " ".join(w.lower() for w in toks)
            if key not in first:
                first[key] = ci
            else:
                a, b = find(first[key]), find(ci)
                if a != b:
                    parent[b] = a
    groups: Dict[int, set] = defaultdict(set)
    for ci, cluster in enumerate(clusters):
        groups[find(ci)].update(tuple(m) for m in cluster)
    out = [sorted(g) for g in groups.values() if g]
    out.sort()
    return out


def merge_segment_clusters(segments: Iterable[List[List[Tuple[int, int]]]],
                           windows: Optional[Sequence[Tuple[int, int]]] = None, *,
                           merge: str = "union", min_share: float = 0.5
                           ) -> List[List[Tuple[int, int]]]:
    """Merge clusters predicted on overlapping segments (document coordinates).

    ``union``: two clusters are one if they share a mention (union-find over
    mentions; one disagreement in an overlap chains two entities together).
    ``agreement`` (needs ``windows``, each segment's ``(start, end)`` in the same
    coordinates, in document order): see :func:`agreement_merge`."""
    if merge == "agreement":
        if windows is None:
            raise ValueError("merge_segment_clusters: the agreement merge needs the segment windows")
        return agreement_merge(list(segments), list(windows), min_share=min_share)
    if merge != "union":
        raise ValueError(f"Unknown merge '{merge}': use one of {MERGES}")
    parent: Dict[int, int] = {}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: Dict[Tuple[int, int], int] = {}
    members: Dict[int, List[Tuple[int, int]]] = {}
    next_id = 0
    for clusters in segments:
        for cluster in clusters:
            cid = next_id
            next_id += 1
            parent[cid] = cid
            members[cid] = list(cluster)
            for m in cluster:
                other = owner.get(m)
                if other is None:
                    owner[m] = cid
                else:
                    a, b = find(other), find(cid)
                    if a != b:
                        parent[b] = a
    groups: Dict[int, set] = defaultdict(set)
    for cid, ms in members.items():
        groups[find(cid)].update(ms)
    out = [sorted(g) for g in groups.values() if g]
    out.sort()
    return out



def agreement_merge(segments: Sequence[List[List[Tuple[int, int]]]],
                    windows: Sequence[Tuple[int, int]], *, min_share: float = 0.5
                    ) -> List[List[Tuple[int, int]]]:
    """Merge the clusters of consecutive overlapping segments only where they agree.

    In the overlap of segments ``k`` and ``k+1``, cluster ``a`` of ``k`` and cluster
    ``b`` of ``k+1`` are linked when they share mentions and the shared ones are at
    least ``min_share`` of each one's mentions in the overlap; each cluster links to
    at most one cluster of the next segment (greedily, most shared first). Each
    mention then keeps the cluster of its *home* segment, the one in which it lies
    farthest from a segment edge (the most context on both sides). Union-find over
    shared mentions instead lets every disagreement in an overlap chain two
    entities together, which over-merges long documents."""
    parent: Dict[Tuple[int, int], Tuple[int, int]] = {}

    def find(x: Tuple[int, int]) -> Tuple[int, int]:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    where: List[Dict[Tuple[int, int], int]] = []  # mention -> cluster index, per segment
    home: Dict[Tuple[int, int], Tuple[int, int]] = {}  # mention -> (margin, segment)
    for k, (clusters, (w_start, w_end)) in enumerate(zip(segments, windows)):
        index: Dict[Tuple[int, int], int] = {}
        for c, cluster in enumerate(clusters):
            parent[(k, c)] = (k, c)
            for m in cluster:
                index[tuple(m)] = c
                margin = min(m[0] - w_start, w_end - m[1])
                if tuple(m) not in home or margin > home[tuple(m)][0]:
                    home[tuple(m)] = (margin, k)
        where.append(index)
    for k in range(len(where) - 1):
        lo, hi = windows[k + 1][0], windows[k][1]
        left = {m: c for m, c in where[k].items() if m[0] >= lo and m[1] <= hi}
        right = {m: c for m, c in where[k + 1].items() if m[0] >= lo and m[1] <= hi}
        shared: Dict[Tuple[int, int], int] = defaultdict(int)
        for m, c in left.items():
            if m in right:
                shared[(c, right[m])] += 1
        n_left: Dict[int, int] = defaultdict(int)
        n_right: Dict[int, int] = defaultdict(int)
        for c in left.values():
            n_left[c] += 1
        for c in right.values():
            n_right[c] += 1
        used_left, used_right = set(), set()
        for (a, b), n in sorted(shared.items(), key=lambda kv: (-kv[1], kv[0])):
            if a in used_left or b in used_right:
                continue
            if n >= min_share * n_left[a] and n >= min_share * n_right[b]:
                used_left.add(a)
                used_right.add(b)
                ra, rb = find((k, a)), find((k + 1, b))
                if ra != rb:
                    parent[rb] = ra
    groups: Dict[Tuple[int, int], set] = defaultdict(set)
    for m, (_margin, k) in home.items():
        groups[find((k, where[k][m]))].add(m)
    out = [sorted(g) for g in groups.values() if g]
    out.sort()
    return out
