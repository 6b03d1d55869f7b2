"""Generative entity linking (INSGENEL, Xiao et al. 2023): markup, grammar, names,
decision spans and the Hugging Face model wrapper.

The model rewrites its input with ``{mention}[entity name]`` markup: the source
(subword units of the model's tokenizer) is copied, a mention is opened with
``<{>``, closed with ``<}[>`` followed by the name of its entity and ``<]>``.
Rendered as text this is ``{Paris}[Paris (capital of France)]``
(:func:`render_markup`); in token space the three symbols are special tokens, so
brackets in the text can never be confused with markup.

:class:`MarkupState` is the grammar (a :class:`~spacy_kbnlp.core.decoding.ConstraintState`
of the one decoding core): outside a name it may only copy the next source unit or
open/close a mention at a word boundary; inside ``[...]`` only a path of a prefix
tree over the tokenized KB names (:class:`~spacy_kbnlp.core.decoding.CompactPrefixTrie`),
so every decoded sequence parses and only names KB entities. A mention of an
entity outside the KB is left unmarked by a model that learnt so; where the model
still opens one, the link score (the model's unconstrained probability of the
markup it was allowed to write) is low and the ``threshold`` drops it.

INSGENEL-R (:func:`decision_candidates`): the retriever's top-K entities of a
document give candidate surface forms; their occurrences are the only places where
a mention may open, with only the matching entities' names inside the brackets.
Everything else is forced copying, for which the decoder is never called
(``greedy_decode(skip_forced=True)``); segments without a candidate are not
decoded at all.

Any Hugging Face seq2seq model (T5, BART, an encoder-decoder; default: warm-started
from the bundled MiniLM, as ``seq2seq_coref``) or causal LM (GPT-2, OPT, LLaMA: the
source and a separator ``<el>`` form the prompt) can be used.
"""
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..core.decoding import CompactPrefixTrie, ConstraintState
from ..errors import Errors
from .hf_loading import (_quiet_transformers, ensure_word_tokenizer, load_generator,
                         resize_embeddings, warm_start_encoder_decoder)
from .source_units import SourceUnits, source_units

M_OPEN, M_CLOSE, E_CLOSE, PROMPT_SEP, COPY = "<{>", "<}[>", "<]>", "<el>", "<copy>"
MARKUP = (M_OPEN, M_CLOSE, E_CLOSE, PROMPT_SEP)
ACTIONS = ("copy", "token")

# (start unit, end unit exclusive, entity rows of the written name, first and last
# output token index of the markup <{> ... <]>)
Link = Tuple[int, int, Tuple[int, ...], int, int]


@dataclass(frozen=True)
class MarkupIds:
    m_open: int
    m_close: int
    e_close: int
    sep: int
    copy: int = -1  # the copy-action symbol (-1: the tokenizer has none)


def add_markup_tokens(tokenizer: Any) -> int:
    """Add the markup symbols to ``tokenizer``; returns how many were new."""
    return tokenizer.add_special_tokens({"additional_special_tokens": list(MARKUP) + [COPY]},
                                        replace_additional_special_tokens=False)


def markup_ids(tokenizer: Any, name: str = "insgenel_linker", path: str = "?") -> MarkupIds:
    ids = []
    for sym in MARKUP:
        i = tokenizer.convert_tokens_to_ids(sym)
        if i is None or i == tokenizer.unk_token_id:
            raise ValueError(Errors.KBE353.format(name=name, symbol=sym, path=path))
        ids.append(int(i))
    copy = tokenizer.convert_tokens_to_ids(COPY)
    ids.append(-1 if copy is None or copy == tokenizer.unk_token_id else int(copy))
    return MarkupIds(*ids)


# --------------------------------------------------------------------------- names
def split_words(texts: Sequence[str], splitter: Optional[Callable[[str], Any]] = None
                ) -> List[List[str]]:
    """Words of each text: the spaCy tokenizer's tokens when ``splitter`` is given
    (so names split exactly as documents do), else whitespace."""
    if splitter is None:
        return [t.split() for t in texts]
    pipe = getattr(splitter, "pipe", None)
    docs = pipe(texts, batch_size=2000) if pipe is not None else (splitter(t) for t in texts)
    return [[tok.text for tok in doc if tok.text.strip()] for doc in docs]


def name_units(words: Sequence[Sequence[str]], tokenizer: Any, batch_size: int = 4096
               ) -> List[List[int]]:
    """Subword units of word lists, as :func:`~.seq2seq.source_units` makes them for
    documents (same tokenizer call, special tokens become the unknown token), in
    batches: names and document text tokenize alike."""
    forbidden = set(tokenizer.all_special_ids)
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
    out: List[List[int]] = [[] for _ in words]
    todo = [i for i, w in enumerate(words) if w]
    for b in range(0, len(todo), batch_size):
        chunk = todo[b: b + batch_size]
        enc = tokenizer([list(words[i]) for i in chunk], is_split_into_words=True,
                        add_special_tokens=False, verbose=False)
        for i, ids in zip(chunk, enc["input_ids"]):
            out[i] = [unk if t in forbidden else int(t) for t in ids]
    return out


def canonical_names(records: Sequence[Any], max_desc_words: int = 8) -> List[str]:
    """One unique name per record (the target the model writes): the label; where
    labels are shared, ``label (description)``; where that is still shared, ``label
    (id)``. Records without a name get their id."""
    base = [(r.name or "").strip() or r.id for r in records]
    count: Dict[str, int] = defaultdict(int)
    for n in base:
        count[n.lower()] += 1
    names = []
    for r, n in zip(records, base):
        if count[n.lower()] > 1:
            desc = " ".join((getattr(r, "description", None) or "").split()[:max_desc_words])
            n = f"{n} ({desc})" if desc else f"{n} ({r.id})"
        names.append(n)
    count2: Dict[str, int] = defaultdict(int)
    for n in names:
        count2[n.lower()] += 1
    return [f"{b} ({r.id})" if count2[n.lower()] > 1 else n
            for r, b, n in zip(records, base, names)]


class NameTable:
    """Entity ids and the names the model may write for them: ``names[row]`` (the
    canonical, unique name) and, with ``aliases``, the KB label and aliases too
    (a name shared by several entities maps to all of them, canonical owner first).

    :meth:`build` tokenizes every name once; :meth:`trie` is the prefix tree over
    all of them (values = entity rows) and :meth:`subset_trie` the tree of a few
    entities (INSGENEL-R)."""

    def __init__(self, ids: Sequence[str], names: Sequence[str],
                 aliases: Optional[Sequence[Sequence[str]]] = None):
        self.ids = list(ids)
        self.names = list(names)
        self.aliases = [list(a) for a in aliases] if aliases is not None else [[] for _ in ids]
        self.row_of = {k: i for i, k in enumerate(self.ids)}
        self.seqs: List[Tuple[int, ...]] = []       # every tokenized name (canonical first)
        self.seq_rows: List[int] = []               # its entity row
        self.canonical: List[Tuple[int, ...]] = []  # canonical name units per row
        self._by_row: Dict[int, List[int]] = {}
        self._trie: Optional[CompactPrefixTrie] = None
        self.skipped: List[str] = []

    @classmethod
    def from_records(cls, records: Sequence[Any], aliases: bool = True) -> "NameTable":
        names = canonical_names(records)
        alts = []
        for r, n in zip(records, names):
            extra = [r.name] if (r.name and r.name != n) else []
            extra.extend(a for a in (getattr(r, "aliases", None) or ()) if a)
            alts.append(list(dict.fromkeys(a.strip() for a in extra if a.strip()))
                        if aliases else [])
        return cls([r.id for r in records], names, alts)

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> Dict[str, Any]:
        return {"ids": self.ids, "names": self.names, "aliases": self.aliases}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "NameTable":
        return cls(data["ids"], data["names"], data.get("aliases"))

    def build(self, tokenizer: Any, splitter: Optional[Callable[[str], Any]] = None
              ) -> "NameTable":
        texts: List[str] = []
        rows: List[int] = []
        for row, (name, alts) in enumerate(zip(self.names, self.aliases)):
            for text in [name] + [a for a in alts if a != name]:
                texts.append(text)
                rows.append(row)
        units = name_units(split_words(texts, splitter), tokenizer)
        self.seqs, self.seq_rows, self.skipped = [], [], []
        self.canonical = [()] * len(self.ids)
        seen = set()
        for text, row, u in zip(texts, rows, units):
            if not u:
                self.skipped.append(text)
                continue
            key = (tuple(u), row)
            if key in seen:
                continue
            seen.add(key)
            if not self.canonical[row]:
                self.canonical[row] = tuple(u)
            self.seqs.append(tuple(u))
            self.seq_rows.append(row)
        self._by_row = defaultdict(list)
        for k, row in enumerate(self.seq_rows):
            self._by_row[row].append(k)
        self._trie = None
        return self

    def trie(self) -> CompactPrefixTrie:
        if self._trie is None:
            self._trie = CompactPrefixTrie.build(self.seqs, self.seq_rows)
        return self._trie

    def subset_trie(self, rows: Iterable[int]) -> CompactPrefixTrie:
        ks = [k for r in dict.fromkeys(rows) for k in self._by_row.get(r, ())]
        return CompactPrefixTrie.build([self.seqs[k] for k in ks], [self.seq_rows[k] for k in ks])

    def resolve(self, rows: Sequence[int], written: Sequence[int] = ()) -> List[int]:
        """Entity rows of a written name, the one whose canonical name it is first."""
        rows = list(dict.fromkeys(rows))
        written = tuple(written)
        rows.sort(key=lambda r: 0 if self.canonical[r] == written else 1)
        return rows


# --------------------------------------------------------------------------- grammar
def word_bounds(units: SourceUnits, lo: int = 0, hi: Optional[int] = None
                ) -> Tuple[List[bool], List[bool]]:
    """``(starts, ends)`` of units ``[lo, hi)``: whether a unit is the first / last
    unit of its spaCy token."""
    hi = len(units.ids) if hi is None else hi
    word = units.word
    starts = [k == 0 or word[k] != word[k - 1] for k in range(lo, hi)]
    ends = [k == len(word) - 1 or word[k] != word[k + 1] for k in range(lo, hi)]
    if starts:
        starts[0] = True
        ends[-1] = True
    return starts, ends


class MarkupGrammar:
    """What may be written for one segment of source ``units``.

    ``trie``: names of every KB entity (INSGENEL); or ``candidates``
    ``{start: {end: trie}}`` (INSGENEL-R): mentions may only be the given unit
    spans, each with the names of its own candidate entities. ``max_mention``
    limits a free mention's length in units (a word is never cut); ``max_length``
    the output length (mentions open only while the whole rest still fits). With
    ``copy`` a copied source token takes the score of the copy symbol (copy action:
    the model predicts "copy", the decoder is fed the real token)."""

    def __init__(self, units: Sequence[int], starts: Sequence[bool], ends: Sequence[bool],
                 ids: MarkupIds, trie: Optional[CompactPrefixTrie] = None, *,
                 candidates: Optional[Dict[int, Dict[int, CompactPrefixTrie]]] = None,
                 max_mention: int = 24, max_length: Optional[int] = None, copy: bool = False):
        if (trie is None) == (candidates is None):
            raise ValueError("MarkupGrammar needs either `trie` or `candidates`.")
        self.units = list(units)
        self.starts = list(starts)
        self.ends = list(ends)
        self.ids = ids
        self.trie = trie
        self.candidates = candidates
        self.max_mention = max_mention
        if copy and ids.copy < 0:
            raise ValueError(Errors.KBE353.format(name="MarkupGrammar", symbol=COPY, path="?"))
        self.copy_col = ids.copy if copy else None
        if candidates is not None:
            self.candidates = {s: {e: t for e, t in ends_.items() if t.n_nodes > 1 and e > s}
                               for s, ends_ in candidates.items()}
            self.candidates = {s: v for s, v in self.candidates.items() if v}
            self.max_end = {s: max(v) for s, v in self.candidates.items()}
            depth = max((t.max_depth for v in self.candidates.values() for t in v.values()),
                        default=0)
        else:
            depth = trie.max_depth
        self.name_depth = depth
        self.max_length = max_length if max_length is not None else math.inf
        self.markup = {ids.m_open, ids.m_close, ids.e_close}

    def initial(self) -> "MarkupState":
        return MarkupState(self)

    def can_open(self, pos: int, length: int) -> bool:
        if not self.starts[pos]:
            return False
        if self.candidates is not None:
            if pos not in self.candidates:
                return False
        elif self.trie.n_children[self.trie.root] == 0:
            return False
        # <{> + the rest of the source + <}[> + longest name + <]>
        return length + 1 + (len(self.units) - pos) + 2 + self.name_depth <= self.max_length

    def parse(self, tokens: Sequence[int], strict: bool = True) -> List[Link]:
        """Links of a markup sequence (replayed through the grammar). ``strict``:
        a token the grammar does not allow raises KBE357; else parsing stops there."""
        state = self.initial()
        for i, tok in enumerate(tokens):
            allowed = state.allowed()
            if tok not in allowed:
                if not strict:
                    break
                raise ValueError(Errors.KBE357.format(index=i, token=tok,
                                                      allowed=sorted(allowed)[:10]))
            state = state.advance(tok)
        return state.links()


class MarkupState(ConstraintState):
    """Grammar state: ``pos`` next source unit; ``open`` start of the open mention
    (-1: none); ``end``/``node``/``trie`` while writing its name (node -1: not)."""

    __slots__ = ("g", "pos", "open", "open_at", "end", "node", "trie", "length", "closed")

    def __init__(self, grammar: MarkupGrammar):
        self.g = grammar
        self.pos = 0
        self.open = -1
        self.open_at = -1
        self.end = -1
        self.node = -1
        self.trie: Optional[CompactPrefixTrie] = None
        self.length = 0
        self.closed: Any = None  # linked list (prev, Link)

    @property
    def finished(self) -> bool:  # type: ignore[override]
        return self.open < 0 and self.pos >= len(self.g.units)

    def _copy(self) -> "MarkupState":
        new = MarkupState.__new__(MarkupState)
        for name in MarkupState.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    def allowed(self) -> Dict[int, int]:
        g = self.g
        if self.node >= 0:
            toks, _ = self.trie.children(self.node)
            res = {int(t): int(t) for t in toks}
            if self.trie.is_terminal(self.node):
                res[g.ids.e_close] = g.ids.e_close
            return res
        res = {}
        n = len(g.units)
        pos = self.pos
        if self.open < 0:
            if pos < n:
                res[g.units[pos]] = g.units[pos] if g.copy_col is None else g.copy_col
                if g.can_open(pos, self.length):
                    res[g.ids.m_open] = g.ids.m_open
            return res
        span = pos - self.open
        if pos < n:
            if g.candidates is not None:
                more = g.max_end[self.open] > pos
            else:
                more = span < g.max_mention or not g.ends[pos - 1]
            if more:
                res[g.units[pos]] = g.units[pos] if g.copy_col is None else g.copy_col
        if span > 0 and g.ends[pos - 1] and (g.candidates is None or
                                             pos in g.candidates[self.open]):
            res[g.ids.m_close] = g.ids.m_close
        return res

    def allowed_arrays(self) -> Tuple[Any, Any]:
        """``(tokens, columns)`` as arrays; inside a name straight from the trie
        (no dict of the thousands of first tokens of KB names)."""
        import numpy

        if self.node >= 0:
            toks, _ = self.trie.children(self.node)
            if self.trie.is_terminal(self.node):
                toks = numpy.append(toks, self.g.ids.e_close)
            return toks, toks
        allowed = self.allowed()
        toks = numpy.fromiter(allowed.keys(), dtype=numpy.int64, count=len(allowed))
        cols = numpy.fromiter(allowed.values(), dtype=numpy.int64, count=len(allowed))
        return toks, cols

    def advance(self, token: int) -> "MarkupState":
        g = self.g
        s = self._copy()
        s.length += 1
        if s.node >= 0:
            if token == g.ids.e_close:
                link = (s.open, s.end, s.trie.node_values(s.node), s.open_at, s.length - 1)
                s.closed = (s.closed, link)
                s.open = s.open_at = s.end = s.node = -1
                s.trie = None
            else:
                nxt = s.trie.child(s.node, int(token))
                if nxt is None:
                    raise ValueError(Errors.KBE357.format(index=s.length - 1, token=token,
                                                          allowed=sorted(self.allowed())[:10]))
                s.node = nxt
            return s
        if s.open < 0 and token == g.ids.m_open:
            s.open = s.pos
            s.open_at = s.length - 1
        elif s.open >= 0 and token == g.ids.m_close:
            s.end = s.pos
            s.trie = g.trie if g.candidates is None else g.candidates[s.open][s.pos]
            s.node = s.trie.root
        else:
            s.pos += 1
        return s

    def proposal(self, n: int) -> List[int]:
        if self.node >= 0:
            return []
        return self.g.units[self.pos: self.pos + n]

    def links(self) -> List[Link]:
        out = []
        node = self.closed
        while node is not None:
            node, link = node
            out.append(link)
        return out[::-1]


def linearize(units: Sequence[int], mentions: Iterable[Tuple[int, int, Sequence[int]]],
              ids: MarkupIds, copy: bool = False) -> Tuple[List[int], List[int]]:
    """The target sequence: ``units`` with each mention ``(start, end, name units)``
    (non-overlapping, unit coordinates) written as ``<{> ... <}[> name <]>``; and the
    labels the model learns to predict (the same, with ``copy``: the copy symbol for
    every copied source token)."""
    by_start = {s: (e, name) for s, e, name in mentions}
    out: List[int] = []
    labels: List[int] = []
    pos = 0
    end_at: Dict[int, Sequence[int]] = {}
    while pos < len(units) or pos in end_at:
        if pos in end_at:
            name = [ids.m_close] + list(end_at.pop(pos)) + [ids.e_close]
            out.extend(name)
            labels.extend(name)
            continue
        if pos in by_start:
            e, name = by_start[pos]
            out.append(ids.m_open)
            labels.append(ids.m_open)
            end_at[e] = name
        out.append(units[pos])
        labels.append(ids.copy if copy else units[pos])
        pos += 1
    return out, labels


def render_markup(tokens: Sequence[int], tokenizer: Any, ids: MarkupIds) -> str:
    """Human-readable ``{mention}[entity name]`` text of a markup sequence."""
    pieces: List[str] = []
    buf: List[int] = []

    def flush():
        if buf:
            pieces.append(tokenizer.decode(buf, skip_special_tokens=False,
                                           clean_up_tokenization_spaces=True))
            buf.clear()

    for tok in tokens:
        if tok in (ids.m_open, ids.m_close, ids.e_close):
            flush()
            pieces.append({ids.m_open: " {", ids.m_close: "}[", ids.e_close: "] "}[tok])
        else:
            buf.append(tok)
    flush()
    text = "".join(pieces)
    return " ".join(text.replace("{ ", "{").replace(" }", "}").replace("[ ", "[")
                    .replace(" ]", "]").split())


# --------------------------------------------------------------------------- segments
def segments(units: SourceUnits, length: int, lo: int = 0, hi: Optional[int] = None
             ) -> List[Tuple[int, int]]:
    """Consecutive unit windows ``[a, b)`` of at most ``length`` units over
    ``[lo, hi)``, cut between spaCy tokens (a token longer than ``length`` units is
    cut)."""
    hi = len(units.ids) if hi is None else hi
    out = []
    a = lo
    word = units.word
    while a < hi:
        b = min(a + length, hi)
        if b < hi:
            c = b
            while c > a + 1 and word[c] == word[c - 1]:
                c -= 1
            if c > a + 1 or word[c] != word[c - 1]:
                b = c
        out.append((a, b))
        a = b
    return out


def unit_range(units: SourceUnits, start: int, end: int) -> Tuple[int, int]:
    """Units ``[lo, hi)`` of the tokens ``[start, end)`` (empty when they have none)."""
    span = units.word_span_to_units(start, end) if end > start else None
    return (span[0], span[1]) if span is not None else (0, 0)


def decision_candidates(units: Sequence[int], starts: Sequence[bool], ends: Sequence[bool],
                        surface: CompactPrefixTrie) -> Dict[Tuple[int, int], Tuple[int, ...]]:
    """INSGENEL-R surface-form matching: every unit span ``[s, e)`` that starts and
    ends at word boundaries and spells a name in ``surface`` (a trie of the
    candidate entities' names and aliases), with the entity rows it may denote."""
    out: Dict[Tuple[int, int], Tuple[int, ...]] = {}
    n = len(units)
    for s in range(n):
        if not starts[s]:
            continue
        node = surface.root
        for e in range(s, n):
            node = surface.child(node, units[e])
            if node is None:
                break
            if ends[e] and surface.is_terminal(node):
                out[(s, e + 1)] = surface.node_values(node)
    return out


def decision_spans(cands: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Candidate mention spans merged into maximal overlapping groups."""
    out: List[List[int]] = []
    for s, e in sorted(cands):
        if out and s < out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


# --------------------------------------------------------------------------- the HF model
@dataclass
class ELSettings:
    segment_length: int = 128
    max_mention_units: int = 24
    max_target_length: int = 512
    # "copy": copied source tokens are predicted as the copy symbol; "token": as themselves
    action: str = "copy"
    # training: softmax over the batch's tokens, the markup and this many sampled
    # other tokens (0: the whole vocabulary), several times cheaper on CPU
    train_negatives: int = 4096


class InsGenELModel:
    """A Hugging Face seq2seq model or causal LM + tokenizer with the markup symbols.

    Load with :meth:`load` (a model path/name, or None to warm-start an
    encoder-decoder from ``warm_start``, default the bundled MiniLM; nothing is
    downloaded), save with :meth:`save` (``config.json``, ``model.safetensors``,
    tokenizer files)."""

    def __init__(self, model: Any, tokenizer: Any, settings: ELSettings, device: Any = None,
                 name: str = "insgenel_linker", path: str = "?"):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.ids = markup_ids(tokenizer, name, path)
        self.causal = not getattr(model.config, "is_encoder_decoder", False)
        probe = [self.ids.m_open]
        full = tokenizer.build_inputs_with_special_tokens(probe)
        k = full.index(self.ids.m_open)
        self.prefix, self.suffix = list(full[:k]), list(full[k + 1:])
        self._check_lengths(name)

    # --- construction
    @classmethod
    def load(cls, model: Optional[str], settings: ELSettings, *, warm_start: Optional[str] = None,
             device: Any = None, decoder_layers: Optional[int] = None,
             local_files_only: bool = True, name: str = "insgenel_linker") -> "InsGenELModel":
        from ..core.torch_io import get_device

        device = get_device(device)
        with _quiet_transformers():
            if model is None:
                hf_model, tok = warm_start_encoder_decoder(warm_start, local_files_only,
                                                           decoder_layers=decoder_layers)
            else:
                hf_model, tok = load_generator(model, local_files_only)
            tok = ensure_word_tokenizer(tok, model or warm_start, local_files_only)
            added = add_markup_tokens(tok)
            if added or len(tok) > hf_model.get_output_embeddings().weight.shape[0]:
                resize_embeddings(hf_model, len(tok))
        return cls(hf_model.to(device).eval(), tok, settings, device, name, str(model or warm_start))

    @classmethod
    def from_dir(cls, path: Union[str, Path], settings: ELSettings, device: Any = None,
                 name: str = "insgenel_linker") -> "InsGenELModel":
        from ..core.torch_io import get_device

        device = get_device(device)
        with _quiet_transformers():
            hf_model, tok = load_generator(str(path), True)
        return cls(hf_model.to(device).eval(), tok, settings, device, name, str(path))

    def save(self, path: Union[str, Path]) -> None:
        """``save_pretrained`` with the weights' sha256 (checked by :meth:`from_dir`)."""
        from ..encoders.hf import save_hf_dir

        save_hf_dir(self.model, self.tokenizer, path)

    # --- limits
    @property
    def decoder_start(self) -> int:
        cfg = self.model.config
        start = getattr(cfg, "decoder_start_token_id", None)
        if start is None:
            start = getattr(getattr(cfg, "decoder", None), "bos_token_id", None)
        return int(start if start is not None else self.tokenizer.pad_token_id)

    def _positions(self, cfg: Any) -> Optional[int]:
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(cfg, key, None)
            if value:
                return int(value)
        return None

    def output_limit(self, n_prompt: int = 0) -> int:
        """Tokens the model may write after a prompt of ``n_prompt`` tokens."""
        cfg = self.model.config
        limit = self.settings.max_target_length
        if self.causal:
            pos = self._positions(cfg)
            return min(limit, pos - n_prompt) if pos else limit
        dec = getattr(cfg, "decoder", None)
        pos = self._positions(dec) if dec is not None else (
            self._positions(cfg) if getattr(cfg, "model_type", "") in (
                "bart", "mbart", "pegasus", "marian") else None)
        return min(limit, pos - 1) if pos else limit

    def _check_lengths(self, name: str) -> None:
        n = self.settings.segment_length
        cfg = self.model.config
        if self.causal:
            need = len(self.prefix) + n + 1 + n + 1
            limit = self._positions(cfg)
        else:
            enc = getattr(cfg, "encoder", cfg)
            need = len(self.prefix) + n + len(self.suffix)
            limit = (self._positions(enc) if getattr(enc, "position_embedding_type",
                                                     "absolute") == "absolute" else None)
            if limit is None or self.output_limit() < n + 1:
                need, limit = n + 1, self.output_limit()
        if limit is not None and need > limit:
            fit = n - (need - limit) // (2 if self.causal else 1)
            raise ValueError(Errors.KBE359.format(n=n, name=name, need=need, limit=limit,
                                                  fit=max(1, fit)))

    # --- documents
    def doc_units(self, doc: Any) -> SourceUnits:
        return source_units([t.text for t in doc], self.tokenizer)

    def prompt(self, units: Sequence[int]) -> List[int]:
        """Encoder input (seq2seq) or prompt (causal LM) of a segment."""
        if self.causal:
            return self.prefix + list(units) + [self.ids.sep]
        return self.prefix + list(units) + self.suffix

    # --- training
    @property
    def copy(self) -> bool:
        return self.settings.action == "copy"

    def grammar(self, units: Sequence[int], starts: Sequence[bool], ends: Sequence[bool],
                trie: Optional[CompactPrefixTrie] = None, *,
                candidates: Optional[Dict[int, Dict[int, CompactPrefixTrie]]] = None
                ) -> MarkupGrammar:
        return MarkupGrammar(units, starts, ends, self.ids, trie, candidates=candidates,
                             max_mention=self.settings.max_mention_units, copy=self.copy)

    def training_item(self, units: Sequence[int],
                      mentions: Iterable[Tuple[int, int, Sequence[int]]]) -> Dict[str, Any]:
        """``{"input", "target" (fed to the decoder), "labels" (predicted),
        "truncated"}`` of one segment."""
        target, labels = linearize(units, mentions, self.ids, self.copy)
        limit = self.output_limit(len(self.prompt(units)) if self.causal else 0)
        return {"input": self.prompt(units), "target": target[:limit],
                "labels": labels[:limit], "truncated": len(target) > limit}

    def train_columns(self, items: Sequence[Dict[str, Any]]) -> Optional[List[int]]:
        """Output columns of a training batch (sampled softmax): every token of the
        batch, the markup and ``train_negatives`` other tokens drawn with a seed taken
        from the batch (so a resumed run draws the same). None: full vocabulary."""
        import zlib

        import numpy

        k = self.settings.train_negatives
        vocab = int(self.model.get_output_embeddings().weight.shape[0])
        if k <= 0:
            return None
        cols = {self.ids.m_open, self.ids.m_close, self.ids.e_close, self.ids.sep}
        if self.ids.copy >= 0:
            cols.add(self.ids.copy)
        for it in items:
            cols.update(int(t) for t in it.get("labels", it["target"]))
        if len(cols) + k >= vocab:
            return None
        seed = zlib.crc32(repr([list(it["target"][:8]) for it in items]).encode())
        rng = numpy.random.RandomState(seed)
        cols.update(int(t) for t in rng.choice(vocab, size=k, replace=False))
        return sorted(cols)

    def loss(self, items: Sequence[Dict[str, Any]]) -> Any:
        """Mean token cross-entropy of the targets of a batch of training items
        (softmax over :meth:`train_columns`)."""
        import torch

        from ..core.decoding import column_index, restricted_output

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        dev = next(self.model.parameters()).device
        b = len(items)
        if self.causal:
            seqs = [list(it["input"]) + list(it["target"]) for it in items]
            n = max(len(s) for s in seqs)
            ids = torch.full((b, n), pad, dtype=torch.long)
            attn = torch.zeros((b, n), dtype=torch.long)
            labels = torch.full((b, n), -100, dtype=torch.long)
            for i, (it, s) in enumerate(zip(items, seqs)):
                ids[i, :len(s)] = torch.tensor(s)
                attn[i, :len(s)] = 1
                labels[i, len(it["input"]):len(s)] = torch.tensor(list(it.get("labels", it["target"])))
            columns = self.train_columns(items)
            with restricted_output(self.model, columns) as restricted:
                logits = self.model(input_ids=ids.to(dev), attention_mask=attn.to(dev),
                                    return_dict=True).logits[:, :-1]
                active = restricted.active
            labels = labels[:, 1:]
        else:
            n_in = max(len(it["input"]) for it in items)
            n_out = max(len(it["target"]) for it in items)
            ids = torch.full((b, n_in), pad, dtype=torch.long)
            attn = torch.zeros((b, n_in), dtype=torch.long)
            dec = torch.full((b, n_out), pad, dtype=torch.long)
            dec_attn = torch.zeros((b, n_out), dtype=torch.long)
            labels = torch.full((b, n_out), -100, dtype=torch.long)
            for i, it in enumerate(items):
                inp, tgt = list(it["input"]), list(it["target"])
                ids[i, :len(inp)] = torch.tensor(inp)
                attn[i, :len(inp)] = 1
                dec[i, :len(tgt)] = torch.tensor([self.decoder_start] + tgt[:-1])
                dec_attn[i, :len(tgt)] = 1
                labels[i, :len(tgt)] = torch.tensor(list(it.get("labels", tgt)))
            columns = self.train_columns(items)
            with restricted_output(self.model, columns) as restricted:
                logits = self.model(input_ids=ids.to(dev), attention_mask=attn.to(dev),
                                    decoder_input_ids=dec.to(dev),
                                    decoder_attention_mask=dec_attn.to(dev),
                                    return_dict=True).logits
                active = restricted.active
        if active:
            vocab = int(self.model.get_output_embeddings().weight.shape[0])
            col_of = torch.as_tensor(column_index(columns, vocab))
            mask = labels >= 0
            labels[mask] = col_of[labels[mask]]
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.to(dev).reshape(-1),
            ignore_index=-100)

    # --- decoding
    def decode(self, grammar: MarkupGrammar, *, n_propose: int = 0, skip_forced: bool = False,
               method: str = "greedy", beam_size: int = 4) -> Tuple[List[Link], Any]:
        """Decode one segment under ``grammar`` (its ``max_length`` is set here).
        Scores are log-probabilities of the unconstrained model."""
        import torch

        from ..core.decoding import HFCausalLMStepper, HFSeq2SeqStepper, LogProbStepper, decode

        prompt = self.prompt(grammar.units)
        dev = next(self.model.parameters()).device
        if self.causal:
            stepper = HFCausalLMStepper(self.model)
            start = prompt
            limit = self.output_limit(len(prompt))
        else:
            inp = torch.tensor([prompt], dtype=torch.long, device=dev)
            mask = torch.ones_like(inp)
            with torch.inference_mode():
                hidden = self.model.get_encoder()(input_ids=inp, attention_mask=mask,
                                                  return_dict=True).last_hidden_state
            stepper = HFSeq2SeqStepper(self.model, hidden, mask)
            start = [self.decoder_start]
            limit = self.output_limit()
        grammar.max_length = limit
        out = decode(LogProbStepper(stepper), grammar.initial(), start, limit, method=method,
                     beam_size=beam_size, n_propose=n_propose, skip_forced=skip_forced)
        return grammar.parse(out.tokens, strict=False), out


def link_score(link: Link, token_scores: Sequence[float],
               allowed_mass: Optional[Sequence[float]] = None) -> float:
    """Probability of the link's markup ``<{> mention <}[> name <]>`` under the model.

    Structure decisions (opening, each copied mention token against closing, the
    close, the end of the name) count renormalized over what the grammar allowed
    (``allowed_mass``); name tokens count with their unconstrained probability, so
    a name that the grammar forced on an unwilling model scores low. Tokens the
    grammar forced and nobody scored count as certain. Without scores (beam
    search): 1.0."""
    if not token_scores:
        return 1.0
    s, e, _, a, b = link
    mass = allowed_mass if allowed_mass else [0.0] * len(token_scores)
    name_from = a + 2 + (e - s)
    total = 0.0
    for k in range(a, b + 1):
        total += token_scores[k] if name_from <= k < b else token_scores[k] - mass[k]
    return float(math.exp(min(0.0, total)))
