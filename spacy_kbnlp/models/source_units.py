"""Documents as source units: the subword units of a seq2seq model's tokenizer, with
the map between words and units, sentence markers, segments and the gold mentions
inside them. Shared by seq2seq coreference (``models.seq2seq``) and generative
entity linking (``models.insgenel``)."""
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .coref_grammar import Mention

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

