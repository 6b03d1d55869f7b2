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
"""
import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..core.alignment import gotoh_align
from ..core.decoding import ConstraintState, PrefixTrie
from ..errors import Errors

REPRESENTATIONS = ("full", "partial", "integer_free")
ACTIONS = ("copy", "token")
M_OPEN, M_CLOSE, SEP, COPY, NEW, CROSS = "<m>", "</m>", "<|>", "<c>", "<new>", "<cross>"
S_OPEN, S_CLOSE = "<sentence>", "</sentence>"
BASE_SPECIALS = (M_OPEN, M_CLOSE, SEP, COPY, NEW, CROSS, S_OPEN, S_CLOSE)

Mention = Tuple[int, int, int]  # (start, end exclusive, cluster) in unit coordinates


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
                 action: str = "copy", max_length: int = 512, max_clusters: Optional[int] = None):
        check_spec(representation, action)
        self.units = list(units)
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
                 "done", "block", "in_block", "closed", "written")

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
            for tok in PrefixTrie.next_tokens(self.node, max_rank):
                res[tok] = tok
            if self.node.value is not None and self.node.value <= max_rank:
                res[v.m_close] = v.m_close
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
                    for l in range(1, self.n_clusters + 1):
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

    def _close(self, number: int) -> None:
        target = len(self.open) - 1 - self.cross
        start = self.open[target]
        self.open = self.open[:target] + self.open[target + 1:]
        self.closed = (self.closed, (start, self.pos, number))
        self.n_clusters = max(self.n_clusters, number)
        self.cross = 0
        self.node = None
        self.id_len = 0

    def proposal(self, n: int) -> List[int]:
        g = self.g
        if g.partial or self.done or self.node is not None or self.cross:
            return []
        return g.units[self.pos: self.pos + n]

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


# --------------------------------------------------------------------------- documents <-> units
@dataclass
class SourceUnits:
    """A document as subword units of the model's tokenizer.

    ``ids[k]`` is a unit, ``word[k]`` the spaCy token it comes from (-1 for sentence
    markers); ``first[w]``/``last[w]`` the first/last unit of token w (-1 if the
    token has no unit, e.g. whitespace)."""
    ids: List[int]
    word: List[int]
    first: List[int]
    last: List[int]

    def word_span_to_units(self, start: int, end: int) -> Optional[Tuple[int, int]]:
        firsts = [self.first[w] for w in range(start, end) if self.first[w] >= 0]
        lasts = [self.last[w] for w in range(start, end) if self.last[w] >= 0]
        if not firsts:
            return None
        return firsts[0], lasts[-1] + 1

    def unit_span_to_words(self, start: int, end: int) -> Optional[Tuple[int, int]]:
        words = [self.word[k] for k in range(start, end) if self.word[k] >= 0]
        if not words:
            return None
        return words[0], words[-1] + 1


def source_units(words: Sequence[str], tokenizer: Any, *, sent_starts: Optional[Sequence[bool]] = None,
                 markers: Optional[Tuple[int, int]] = None) -> SourceUnits:
    """Subword units of ``words`` (whitespace-only words get none). With ``markers``
    (ids of ``<sentence>``, ``</sentence>``) each sentence is wrapped in them;
    ``sent_starts[w]`` marks sentence starts (None: one sentence). Text that the
    tokenizer reads as a special token (a literal ``[SEP]`` or ``<m>`` in the
    document) becomes the unknown token, so the source never holds markup."""
    forbidden = set(tokenizer.all_special_ids)
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
    keep = [w for w, text in enumerate(words) if text.strip()]
    n = len(words)
    first, last = [-1] * n, [-1] * n
    ids: List[int] = []
    word: List[int] = []
    if keep:
        enc = tokenizer([words[w] for w in keep], is_split_into_words=True,
                        add_special_tokens=False, verbose=False)
        piece_words = enc.word_ids()
        for tok, k in zip(enc["input_ids"], piece_words):
            if k is None:
                continue
            ids.append(unk if tok in forbidden else int(tok))
            word.append(keep[k])
    if markers is not None:
        ids, word = _add_sentence_markers(ids, word, sent_starts, markers)
    for k, w in enumerate(word):
        if w < 0:
            continue
        if first[w] < 0:
            first[w] = k
        last[w] = k
    return SourceUnits(ids, word, first, last)


def _add_sentence_markers(ids: List[int], word: List[int], sent_starts: Optional[Sequence[bool]],
                          markers: Tuple[int, int]) -> Tuple[List[int], List[int]]:
    s_open, s_close = markers
    out_ids: List[int] = []
    out_word: List[int] = []
    prev_word = None
    for tok, w in zip(ids, word):
        new_sentence = prev_word is None or (
            w != prev_word and sent_starts is not None
            and any(sent_starts[x] for x in range(prev_word + 1, w + 1)))
        if new_sentence:
            if prev_word is not None:
                out_ids.append(s_close)
                out_word.append(-1)
            out_ids.append(s_open)
            out_word.append(-1)
        out_ids.append(tok)
        out_word.append(w)
        prev_word = w
    if out_ids:
        out_ids.append(s_close)
        out_word.append(-1)
    return out_ids, out_word


def segment_units(units: SourceUnits, start: int, end: int, markers: Optional[Tuple[int, int]]
                  ) -> Tuple[List[int], List[int]]:
    """Units of the window ``[start, end)`` and their document unit index (-1 for
    markers added to close a sentence cut by the window)."""
    ids = units.ids[start:end]
    where = list(range(start, end))
    if markers is not None and ids:
        s_open, s_close = markers
        if ids[0] != s_open:
            ids = [s_open] + ids
            where = [-1] + where
        if ids[-1] != s_close:
            ids = ids + [s_close]
            where = where + [-1]
    return ids, where


def doc_mentions(units: SourceUnits, clusters: Sequence[Sequence[Tuple[int, int]]]
                 ) -> Tuple[List[Mention], int]:
    """Gold clusters of token spans -> unit mentions ``(start, end, cluster index)``,
    and how many mentions have no unit (whitespace-only spans)."""
    out: List[Mention] = []
    lost = 0
    for ci, cluster in enumerate(clusters):
        for start, end in cluster:
            span = units.word_span_to_units(start, end)
            if span is None:
                lost += 1
            else:
                out.append((span[0], span[1], ci))
    return out, lost


def windows_of(units: SourceUnits, length: int, stride: int) -> List[Tuple[int, int]]:
    from ..core.windows import token_windows

    return token_windows(len(units.ids), length, min(stride, length))


def segment_examples(units: SourceUnits, mentions: Sequence[Mention], length: int, stride: int,
                     markers: Optional[Tuple[int, int]]
                     ) -> Iterable[Tuple[List[int], List[Mention], int]]:
    """``(segment units, mentions inside it in segment coordinates, mentions cut by
    its edges)`` for each window of ``length`` units every ``stride``."""
    by_start: Dict[int, List[Mention]] = defaultdict(list)
    for m in mentions:
        by_start[m[0]].append(m)
    for start, end in windows_of(units, length, stride):
        ids, where = segment_units(units, start, end, markers)
        shift = 1 if where and where[0] == -1 else 0
        inside: List[Mention] = []
        cut = 0
        for s in range(start, end):
            for m in by_start.get(s, ()):
                if m[1] <= end:
                    inside.append((m[0] - start + shift, m[1] - start + shift, m[2]))
                else:
                    cut += 1
        yield ids, inside, cut


# --------------------------------------------------------------------------- clusters over segments
def merge_segment_clusters(segments: Iterable[List[List[Tuple[int, int]]]]
                           ) -> List[List[Tuple[int, int]]]:
    """Merge clusters predicted on overlapping segments (document coordinates): two
    clusters are one if they share a mention (union-find over mentions)."""
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


# --------------------------------------------------------------------------- the HF model
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "deberta-v2",
                 "mpnet", "camembert", "albert")


@dataclass
class ModelSettings:
    representation: str = "full"
    action: str = "copy"
    max_clusters: int = 100
    segment_length: int = 256
    max_target_length: int = 512
    # decoder input = token embedding + encoder state of the next source unit to copy
    aligned_input: bool = False


COMPACT_SPEC = "compact.json"
COMPACT_FORMAT = "spacy_kbnlp.seq2seq_delta.v1"


class Seq2SeqCorefModel:
    """A Hugging Face seq2seq model + tokenizer with the coreference markup.

    Load with :meth:`load` (a seq2seq model directory or name, or an encoder to
    warm-start an encoder-decoder from; nothing is downloaded), save with
    :meth:`save` (``config.json``, ``model.safetensors``, tokenizer files)."""

    def __init__(self, model: Any, tokenizer: Any, settings: ModelSettings, device: Any = None):
        check_spec(settings.representation, settings.action)
        if settings.aligned_input and settings.representation == "partial":
            raise ValueError(Errors.KBE253.format(
                representation="partial", action=settings.action,
                why="`aligned_input` follows the copy pointer, which partial linearization "
                    "does not have; set it to false"))
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.vocab = self._make_vocab()
        self.prefix, self.suffix = self._special_layout()
        self._check_lengths()

    # --- construction
    @classmethod
    def load(cls, model: Optional[str], settings: ModelSettings, *, warm_start: Optional[str] = None,
             device: Any = None, local_files_only: bool = True,
             decoder_layers: Optional[int] = None) -> "Seq2SeqCorefModel":
        """``model``: a seq2seq model path/name; None -> an encoder-decoder warm-started
        from ``warm_start`` (None: the bundled MiniLM) whose decoder keeps the first
        ``decoder_layers`` layers (None: all)."""
        from ..core.torch_io import get_device

        if model is not None and (Path(model) / COMPACT_SPEC).exists():
            return cls.from_compact(model, settings, device=device)
        device = get_device(device)
        with _quiet_transformers():
            if model is None:
                hf_model, tok = warm_start_encoder_decoder(warm_start, local_files_only,
                                                           decoder_layers=decoder_layers)
            else:
                hf_model, tok = load_seq2seq(model, local_files_only)
            tok = ensure_word_tokenizer(tok, model or warm_start, local_files_only)
            added = add_markup_tokens(tok, settings.representation, settings.max_clusters)
            if added or len(tok) > hf_model.get_output_embeddings().weight.shape[0]:
                resize_embeddings(hf_model, len(tok))
        return cls(hf_model.to(device).eval(), tok, settings, device)

    @classmethod
    def from_dir(cls, path: Union[str, Path], settings: ModelSettings, device: Any = None
                 ) -> "Seq2SeqCorefModel":
        from ..core.torch_io import get_device

        device = get_device(device)
        with _quiet_transformers():
            hf_model, tok = load_seq2seq(str(path), True)
        return cls(hf_model.to(device).eval(), tok, settings, device)

    def save(self, path: Union[str, Path]) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))

    # --- compact form: the difference from a seeded warm start
    @classmethod
    def seeded_warm_start(cls, settings: ModelSettings, *, seed: int,
                          warm_start: Optional[str] = None,
                          decoder_layers: Optional[int] = None) -> "Seq2SeqCorefModel":
        """The warm-started encoder-decoder exactly as training built it after
        fixing the random seed (``init_nlp`` does): the new cross-attention and
        LM-head weights are drawn again, identically. The caller's random
        state is left as it was."""
        import random

        import numpy
        import torch

        from ..core.torch_io import set_seed

        py_state, np_state = random.getstate(), numpy.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                set_seed(seed)
                return cls.load(None, settings, warm_start=warm_start, device="cpu",
                                decoder_layers=decoder_layers)
        finally:
            random.setstate(py_state)
            numpy.random.set_state(np_state)

    def save_compact(self, path: Union[str, Path], *, seed: int, warm_start: Optional[str] = None,
                     decoder_layers: Optional[int] = None, rank: int = 16) -> Dict[str, Any]:
        """Write ``delta.safetensors`` and ``compact.json``: every weight as its
        rank-``rank`` int8 difference from :meth:`seeded_warm_start` (see
        ``core.delta``), a few MB instead of the full model. ``seed``,
        ``warm_start``, ``decoder_layers``: those the model was trained with.
        Returns the spec written."""
        from ..core.delta import base_checks, delta_from_base, write_delta
        from ..core.torch_io import dedupe_tied

        base = self.seeded_warm_start(self.settings, seed=seed, warm_start=warm_start,
                                      decoder_layers=decoder_layers)
        ref = dedupe_tied(base.model.state_dict())
        state = dedupe_tied(self.model.state_dict())
        if set(ref) != set(state) or any(ref[n].shape != state[n].shape for n in ref):
            raise ValueError(Errors.KBE261.format(path=path, name=warm_start or "bundled MiniLM",
                                                  tensors="(other layers or vocabulary)"))
        drawn_all = [n for n in ref if "crossattention" in n and n.endswith("weight") and ref[n].ndim == 2]
        for name in drawn_all:  # fine-tuning moved them 7-22 % (2-8 epochs); another draw, 141 %
            rel = float((state[name].float() - ref[name].float()).norm() / ref[name].float().norm())
            if rel > 0.7:
                raise ValueError(Errors.KBE264.format(tensor=name, seed=seed, rel=rel))
        tensors, _ = delta_from_base(state, ref, half=True, int8=True, rank=rank)
        # checksums of drawn and pretrained weights: a warm start drawn differently fails clearly
        drawn = drawn_all[:1]
        kept = [n for n in ref if n.startswith("encoder.") and n.endswith("weight") and ref[n].ndim == 2][:1]
        spec = {"format": COMPACT_FORMAT, "seed": seed, "warm_start": warm_start,
                "decoder_layers": decoder_layers, "rank": rank,
                "settings": dataclasses.asdict(self.settings),
                "base_check": base_checks(ref, drawn + kept)}
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        spec["delta_sha256"] = write_delta(tensors, path)
        (path / COMPACT_SPEC).write_text(json.dumps(spec, indent=2), encoding="utf-8")
        return spec

    @classmethod
    def from_compact(cls, path: Union[str, Path], settings: ModelSettings,
                     device: Any = None) -> "Seq2SeqCorefModel":
        """Rebuild a model written by :meth:`save_compact`."""
        from ..core.delta import apply_delta, mismatched_base, read_delta
        from ..core.torch_io import get_device

        path = Path(path)
        spec = json.loads((path / COMPACT_SPEC).read_text(encoding="utf-8"))
        stored = spec["settings"]
        for key in ("representation", "max_clusters"):
            if stored[key] != getattr(settings, key):
                raise ValueError(Errors.KBE262.format(path=path, key=key, stored=stored[key],
                                                      value=getattr(settings, key)))
        model = cls.seeded_warm_start(settings, seed=spec["seed"], warm_start=spec["warm_start"],
                                      decoder_layers=spec["decoder_layers"])
        state = model.model.state_dict()
        bad = mismatched_base(state, spec["base_check"])
        if bad:
            raise ValueError(Errors.KBE261.format(path=path, name=spec["warm_start"] or "bundled MiniLM",
                                                  tensors=", ".join(bad[:3])))
        apply_delta(state, read_delta(path, spec.get("delta_sha256")))
        return model.to(get_device(device))

    def to(self, device: Any) -> "Seq2SeqCorefModel":
        self.model.to(device)
        self.device = device
        return self

    def _make_vocab(self) -> Vocab:
        return build_vocab(self.tokenizer, self.settings.representation, self.settings.max_clusters)

    def _special_layout(self) -> Tuple[List[int], List[int]]:
        """Special tokens the tokenizer puts before/after a sequence (CLS/SEP, </s>)."""
        probe = [self.vocab.m_open]
        full = self.tokenizer.build_inputs_with_special_tokens(probe)
        k = full.index(self.vocab.m_open)
        return list(full[:k]), list(full[k + 1:])

    @property
    def decoder_start(self) -> int:
        cfg = self.model.config
        start = getattr(cfg, "decoder_start_token_id", None)
        if start is None:
            start = getattr(getattr(cfg, "decoder", None), "bos_token_id", None)
        return int(start if start is not None else self.tokenizer.pad_token_id)

    def encoder_limit(self) -> Optional[int]:
        cfg = self.model.config
        enc = getattr(cfg, "encoder", cfg)
        if getattr(enc, "position_embedding_type", "absolute") == "absolute":
            return getattr(enc, "max_position_embeddings", None)
        return None

    def decoder_limit(self) -> int:
        """Tokens the decoder may write (its position limit minus the start token)."""
        cfg = self.model.config
        dec = getattr(cfg, "decoder", None)
        limit = self.settings.max_target_length
        if dec is not None and getattr(dec, "max_position_embeddings", None):
            limit = min(limit, int(dec.max_position_embeddings) - 1)
        elif getattr(cfg, "max_position_embeddings", None) and getattr(cfg, "model_type", "") in (
                "bart", "mbart", "pegasus", "marian"):
            limit = min(limit, int(cfg.max_position_embeddings) - 1)
        return limit

    def _check_lengths(self) -> None:
        s = self.settings
        enc = self.encoder_limit()
        need = s.segment_length + len(self.prefix) + len(self.suffix) + (
            2 if s.representation == "partial" else 0)
        if enc is not None and need > enc:
            raise ValueError(Errors.KBE254.format(
                what="encoder input", n=need, limit=enc,
                fix=f"set `segment_length` to at most {enc - need + s.segment_length}"))
        if s.representation != "partial" and s.segment_length + 1 > self.decoder_limit():
            raise ValueError(Errors.KBE254.format(
                what="target", n=s.segment_length + 1, limit=self.decoder_limit(),
                fix="lower `segment_length` below the decoder length or raise `max_target_length`"))

    # --- documents
    @property
    def markers(self) -> Optional[Tuple[int, int]]:
        if self.settings.representation == "partial":
            return (self.vocab.s_open, self.vocab.s_close)
        return None

    def doc_units(self, doc: Any, sent_starts: Optional[Sequence[bool]] = None) -> SourceUnits:
        """Units of ``doc``; partial linearization marks the doc's sentences (or
        ``sent_starts``, one flag per token; none: one sentence)."""
        if sent_starts is None and self.markers is not None and doc.has_annotation("SENT_START"):
            sent_starts = [bool(t.is_sent_start) for t in doc]
        return source_units([t.text for t in doc], self.tokenizer, sent_starts=sent_starts,
                            markers=self.markers)

    def grammar(self, units: Sequence[int]) -> CorefGrammar:
        s = self.settings
        return CorefGrammar(units, self.vocab, representation=s.representation, action=s.action,
                            max_length=self.decoder_limit(), max_clusters=s.max_clusters)

    def encoder_input(self, units: Sequence[int]) -> List[int]:
        return self.prefix + list(units) + self.suffix

    def output_columns(self) -> Optional[List[int]]:
        """Logit columns needed under copy action (None: the whole vocabulary)."""
        return self.vocab.action_columns() if self.settings.action == "copy" else None

    # --- training
    def training_items(self, doc: Any, clusters: Sequence[Sequence[Tuple[int, int]]],
                       stride: int, stats: Optional[Dict[str, int]] = None,
                       sent_starts: Optional[Sequence[bool]] = None) -> List[Dict[str, Any]]:
        """Training segments of a gold document: ``{"input", "tokens", "actions"}``
        (JSON-like lists of ids). ``stats`` counts mentions that cannot be learned
        (``lost``: no unit; ``cut``: crossing a segment edge, counted per segment;
        ``over``: beyond ``max_clusters``) and ``truncated`` targets."""
        s = self.settings
        stats = stats if stats is not None else defaultdict(int)
        units = self.doc_units(doc, sent_starts)
        mentions, lost = doc_mentions(units, clusters)
        stats["lost"] += lost
        limit = self.decoder_limit()
        items = []
        for ids, inside, cut in segment_examples(units, mentions, s.segment_length, stride,
                                                 self.markers):
            stats["cut"] += cut
            inside, over = limit_clusters(inside, s.max_clusters)
            stats["over"] += over
            z, y = linearize(ids, inside, self.vocab, representation=s.representation,
                             action=s.action)
            stats["segments"] += 1
            if len(z) > limit:
                stats["truncated"] += 1
                z, y = z[:limit], y[:limit]
            item = {"input": self.encoder_input(ids), "tokens": z, "actions": y}
            if s.aligned_input:
                ptr = self.grammar(ids).pointers(z) if len(z) else []
                item["pointers"] = [0] + ptr[:-1]  # pointer at each decoder input position
            items.append(item)
        return items

    def loss(self, items: Sequence[Dict[str, Any]]) -> "Any":
        """Mean cross-entropy of the actions of a batch of training items (the decoder
        reads the tokens); under copy action the softmax runs over the action space."""
        import torch

        from ..core.decoding import column_index, restricted_output

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        dev = next(self.model.parameters()).device
        n_in = max(len(it["input"]) for it in items)
        n_out = max(len(it["tokens"]) for it in items)
        input_ids = torch.full((len(items), n_in), pad, dtype=torch.long)
        attn = torch.zeros((len(items), n_in), dtype=torch.long)
        dec_in = torch.full((len(items), n_out), pad, dtype=torch.long)
        dec_attn = torch.zeros((len(items), n_out), dtype=torch.long)
        labels = torch.full((len(items), n_out), -100, dtype=torch.long)
        for i, it in enumerate(items):
            inp, z, y = list(it["input"]), list(it["tokens"]), list(it["actions"])
            input_ids[i, :len(inp)] = torch.tensor(inp)
            attn[i, :len(inp)] = 1
            dec_in[i, :len(z)] = torch.tensor([self.decoder_start] + z[:-1])
            dec_attn[i, :len(z)] = 1
            labels[i, :len(y)] = torch.tensor(y)
        columns = self.output_columns()
        with restricted_output(self.model, columns) as restricted:
            if self.settings.aligned_input:
                from transformers.modeling_outputs import BaseModelOutput

                hidden = self.model.get_encoder()(input_ids=input_ids.to(dev),
                                                  attention_mask=attn.to(dev),
                                                  return_dict=True).last_hidden_state
                ptr = torch.zeros((len(items), n_out), dtype=torch.long)
                for i, it in enumerate(items):
                    p = [min(x, len(it["input"]) - len(self.prefix) - len(self.suffix))
                         for x in it["pointers"]]
                    ptr[i, :len(p)] = torch.tensor(p) + len(self.prefix)
                embeds = self.aligned_embeddings(dec_in.to(dev), hidden, ptr.to(dev))
                out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                 attention_mask=attn.to(dev), decoder_inputs_embeds=embeds,
                                 decoder_attention_mask=dec_attn.to(dev), return_dict=True)
            else:
                out = self.model(input_ids=input_ids.to(dev), attention_mask=attn.to(dev),
                                 decoder_input_ids=dec_in.to(dev),
                                 decoder_attention_mask=dec_attn.to(dev), return_dict=True)
            if restricted.active:
                col_of = torch.as_tensor(column_index(columns, int(self.model.get_output_embeddings()
                                                                   .weight.shape[0])))
                mask = labels >= 0
                labels[mask] = col_of[labels[mask]]
        logits = out.logits
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.to(dev).reshape(-1),
            ignore_index=-100)

    def aligned_embeddings(self, ids: Any, hidden: Any, positions: Any) -> Any:
        """Decoder input embeddings of ``ids`` (batch, len) plus the encoder states at
        ``positions`` (batch, len): what the decoder reads under ``aligned_input``."""
        import torch

        emb = self.model.get_decoder().get_input_embeddings()(ids)
        idx = positions.clamp(max=hidden.shape[1] - 1).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        return emb + torch.gather(hidden, 1, idx).to(emb.dtype)

    # --- prediction
    def decode_segment(self, ids: Sequence[int], *, method: str = "greedy", beam_size: int = 4,
                       n_propose: int = 0, mention_bias: float = 0.0) -> Tuple[List[Mention], Any]:
        """Mentions ``(start, end, cluster)`` of one segment (segment coordinates) and
        the :class:`~spacy_kbnlp.core.decoding.DecodeOutput`. ``mention_bias`` is added
        to the logit of ``<m>`` (> 0: open mentions more readily)."""
        import torch

        from ..core.decoding import BiasedStepper, HFSeq2SeqStepper, decode

        grammar = self.grammar(ids)
        dev = next(self.model.parameters()).device
        inp = torch.tensor([self.encoder_input(ids)], dtype=torch.long, device=dev)
        mask = torch.ones_like(inp)
        with torch.inference_mode():
            hidden = self.model.get_encoder()(input_ids=inp, attention_mask=mask,
                                              return_dict=True).last_hidden_state
        embedder = PointerEmbedder(self, grammar, hidden) if self.settings.aligned_input else None
        stepper = HFSeq2SeqStepper(self.model, hidden, mask, columns=self.output_columns(),
                                   input_embedder=embedder)
        if mention_bias:
            stepper = BiasedStepper(stepper, {self.vocab.m_open: mention_bias})
        out = decode(stepper, grammar.initial(), [self.decoder_start], grammar.max_length,
                     method=method, beam_size=beam_size, n_propose=n_propose)
        mentions, _ = grammar.parse(out.tokens)
        return mentions, out

    def predict_doc(self, doc: Any, *, stride: int, method: str = "greedy", beam_size: int = 4,
                    n_propose: int = 0, mention_bias: float = 0.0,
                    stats: Optional[Dict[str, Any]] = None,
                    record: Optional[List[List[int]]] = None) -> List[List[Tuple[int, int]]]:
        """Clusters of token spans ``(start, end)`` for ``doc``: segments of
        ``segment_length`` units every ``stride`` units, decoded one by one (memory
        stays bounded by one segment), merged through shared mentions. ``record``
        receives each segment's decoded tokens (to compare decoding modes)."""
        stats = stats if stats is not None else defaultdict(int)
        units = self.doc_units(doc)
        per_segment = []
        for start, end in windows_of(units, self.settings.segment_length, stride):
            ids, where = segment_units(units, start, end, self.markers)
            mentions, out = self.decode_segment(ids, method=method, beam_size=beam_size,
                                                n_propose=n_propose, mention_bias=mention_bias)
            stats["segments"] += 1
            stats["tokens"] += len(out.tokens)
            stats["forward"] += out.n_forward
            stats["proposed"] += out.n_proposed
            stats["accepted"] += out.n_accepted
            stats["unfinished"] += 0 if out.finished else 1
            if record is not None:
                record.append(list(out.tokens))
            spans = []
            for s, e, c in mentions:
                a, b = where[s], where[e - 1]
                if a < 0 or b < 0:
                    continue
                words = units.unit_span_to_words(a, b + 1)
                if words is not None:
                    spans.append((words[0], words[1], c))
            per_segment.append(group_clusters(spans))
        return merge_segment_clusters(per_segment)


class PointerEmbedder:
    """Decoder inputs under ``aligned_input``: each fed token's embedding plus the
    encoder state of the source unit the grammar will copy next. Replays the fed
    tokens through the segment's grammar (one state list per beam row) and follows
    the stepper's cache through ``crop`` and ``reorder``."""

    def __init__(self, model: Seq2SeqCorefModel, grammar: CorefGrammar, hidden: Any):
        self.model = model
        self.grammar = grammar
        self.hidden = hidden
        self.offset = len(model.prefix)
        self.rows: List[List[CorefState]] = [[]]

    def reset(self) -> None:
        self.rows = [[]]

    def crop(self, length: int) -> None:
        self.rows = [r[:length] for r in self.rows]

    def reorder(self, index: Sequence[int]) -> None:
        self.rows = [list(self.rows[i]) for i in index]

    def __call__(self, ids: Any) -> Any:
        import torch

        if ids.shape[0] != len(self.rows):
            self.rows = [list(self.rows[0]) for _ in range(ids.shape[0])]
        positions = []
        for b, row in enumerate(ids.tolist()):
            states = self.rows[b]
            pos = []
            for tok in row:
                if not states:
                    state = self.grammar.initial()       # the start token
                else:
                    prev = states[-1]
                    state = prev.advance(tok) if not prev.finished and tok in prev.allowed() else prev
                states.append(state)
                pos.append(self.offset + min(state.pos, len(self.grammar.units)))
            positions.append(pos)
        hidden = self.hidden.expand(ids.shape[0], -1, -1)
        return self.model.aligned_embeddings(ids, hidden, torch.tensor(positions, device=ids.device))


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


def warm_start_encoder_decoder(encoder: Optional[str], local_files_only: bool = True, *,
                               decoder_layers: Optional[int] = None):
    """An ``EncoderDecoderModel`` whose encoder and decoder both start from ``encoder``
    (decoder with causal self-attention and new cross-attention; its first
    ``decoder_layers`` layers, None = all), and its tokenizer."""
    from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel

    from ..encoders.hf import resolve_model_path

    path = resolve_model_path(encoder)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err
    if getattr(config, "is_encoder_decoder", False) or config.model_type not in ENCODER_TYPES:
        raise ValueError(Errors.KBE251.format(
            path=path, model_type=config.model_type,
            why=f"`warm_start` needs an encoder ({', '.join(ENCODER_TYPES)})"))
    extra = {}
    if decoder_layers:
        n_layers = getattr(config, "num_hidden_layers", None)
        if n_layers is not None and not 0 < decoder_layers <= n_layers:
            raise ValueError(Errors.KBE259.format(
                name="decoder_layers", value=decoder_layers,
                why=f"the encoder '{path}' has {n_layers} layers"))
        extra["decoder_num_hidden_layers"] = decoder_layers
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        path, path, encoder_local_files_only=local_files_only,
        decoder_local_files_only=local_files_only, **extra)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    cfg = model.config
    cfg.decoder_start_token_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    cfg.eos_token_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    cfg.pad_token_id = tok.pad_token_id
    model.generation_config.decoder_start_token_id = cfg.decoder_start_token_id
    model.generation_config.eos_token_id = cfg.eos_token_id
    model.generation_config.pad_token_id = cfg.pad_token_id
    return model, tok


def load_seq2seq(path: str, local_files_only: bool = True):
    """A seq2seq model (T5, BART, mT5, encoder-decoder, ...) and its tokenizer, or KBE251."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err
    if not getattr(config, "is_encoder_decoder", False):
        raise ValueError(Errors.KBE251.format(
            path=path, model_type=getattr(config, "model_type", "?"),
            why="`model` needs a sequence-to-sequence model (T5, BART, mT5, an encoder-decoder); "
                "to build one from an encoder, leave `model` empty and give it as `warm_start`"))
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=local_files_only)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err
    return model, tok


def load_generator(path: str, local_files_only: bool = True):
    """A seq2seq model or causal LM and its tokenizer (KBE251/KBE252 otherwise)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err
    if getattr(config, "is_encoder_decoder", False):
        return load_seq2seq(path, local_files_only)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_files_only)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    except ValueError as err:
        raise ValueError(Errors.KBE251.format(
            path=path, model_type=getattr(config, "model_type", "?"),
            why="give a sequence-to-sequence model or a causal LM")) from err
    except (OSError, KeyError) as err:
        raise ValueError(Errors.KBE252.format(path=path, err=err)) from err
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return model, tok


def ensure_word_tokenizer(tok: Any, path: Optional[str], local_files_only: bool) -> Any:
    """A tokenizer that accepts pre-split words (byte-level BPE needs add_prefix_space)."""
    try:
        tok(["a", "b"], is_split_into_words=True, add_special_tokens=False)
        return tok
    except (ValueError, TypeError, AssertionError):
        from transformers import AutoTokenizer

        from ..encoders.hf import resolve_model_path

        return AutoTokenizer.from_pretrained(resolve_model_path(path), add_prefix_space=True,
                                             local_files_only=local_files_only)


def resize_embeddings(model: Any, size: int) -> None:
    from transformers import EncoderDecoderModel

    if isinstance(model, EncoderDecoderModel):
        model.encoder.resize_token_embeddings(size, mean_resizing=False)
        model.decoder.resize_token_embeddings(size, mean_resizing=False)
        model.config.encoder.vocab_size = size
        model.config.decoder.vocab_size = size
    else:
        model.resize_token_embeddings(size, mean_resizing=False)


class _quiet_transformers:
    """Silence the expected "newly initialized weights" notices of a warm start."""

    def __enter__(self):
        from transformers.utils import logging

        self._level = logging.get_verbosity()
        logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging

        logging.set_verbosity(self._level)
