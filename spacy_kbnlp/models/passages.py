"""Passage inputs shared by the EntQA retriever and reader.

A document is tokenized into word pieces once (``DocPieces``); passages are token
windows from ``core.windows`` (EntQA: L=32, S=16 spaCy tokens) and carry a short
document-level topic (the first line of the document, or its first token, as in
the paper's Appendix D.2). Model inputs are assembled from cached piece ids, so
neither a passage nor an entity text is tokenized twice.

Word-level spans: a passage of ``n`` words has positions ``0..n``; position 0 is
the [CLS] "not mentioned" slot and word ``i`` is position ``i + 1``. A word's
start logit is read at its first piece and its end logit at its last piece.
Words without pieces (whitespace tokens) can start or end no span.
"""
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc

from ..core.windows import token_windows
from ..errors import Errors

TOPICS = ("first_line", "first_token", "none")


@dataclass
class DocPieces:
    """Word pieces of every token of one Doc (lists of ids, [] for whitespace)."""

    pieces: List[List[int]]
    topic: List[int]


@dataclass
class Passage:
    """One window ``doc[start:end]`` of document ``doc_index``."""

    doc_index: int
    start: int
    end: int
    pieces: List[List[int]] = field(repr=False)
    topic: List[int] = field(repr=False)

    @property
    def n_words(self) -> int:
        return self.end - self.start


def special_ids(tokenizer) -> Tuple[int, int, int]:
    """(cls, sep, pad) ids, with BOS/EOS as fallbacks for models without CLS/SEP."""
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if cls is None or sep is None:
        raise ValueError(Errors.KBE208.format(name=getattr(tokenizer, "name_or_path", tokenizer)))
    return int(cls), int(sep), int(pad)


def check_topic(topic: str) -> str:
    if topic not in TOPICS:
        raise ValueError(Errors.KBE209.format(topic=topic, options=", ".join(TOPICS)))
    return topic


def word_pieces(tokenizer, words: Sequence[str], max_word_pieces: int = 16) -> List[List[int]]:
    """Piece ids per word, in one tokenizer call; a word keeps at most
    ``max_word_pieces`` pieces (pathological tokens such as long URLs)."""
    out: List[List[int]] = [[] for _ in words]
    if not words:
        return out
    # whitespace-only words give no pieces; the tokenizer rejects empty strings
    idx = [i for i, w in enumerate(words) if w.strip()]
    if not idx:
        return out
    enc = tokenizer([words[i] for i in idx], is_split_into_words=True, add_special_tokens=False,
                    verbose=False)
    for piece, wid in zip(enc["input_ids"], enc.word_ids()):
        if wid is None:
            continue
        target = out[idx[wid]]
        if len(target) < max_word_pieces:
            target.append(int(piece))
    return out


def doc_pieces(tokenizer, doc: Doc, topic: str = "first_line", topic_length: int = 12,
               max_word_pieces: int = 16) -> DocPieces:
    """Tokenize ``doc`` once and pick its topic pieces."""
    check_topic(topic)
    pieces = word_pieces(tokenizer, [t.text for t in doc], max_word_pieces)
    topic_ids: List[int] = []
    if topic != "none":
        for token, p in zip(doc, pieces):
            if topic == "first_line" and "\n" in token.text and topic_ids:
                break
            topic_ids.extend(p)
            if topic == "first_token" and topic_ids:
                break
            if len(topic_ids) >= topic_length:
                break
        topic_ids = topic_ids[:topic_length]
    return DocPieces(pieces, topic_ids)


def make_passages(doc_index: int, doc: Doc, dp: DocPieces, length: int, stride: int,
                  span: Optional[Tuple[int, int]] = None) -> List[Passage]:
    """Windows over ``doc`` (or over the token range ``span``), skipping windows
    without a single word piece (whitespace only)."""
    lo, hi = span if span is not None else (0, len(doc))
    out = []
    for s, e in token_windows(hi - lo, length, stride):
        s, e = s + lo, e + lo
        if not any(dp.pieces[i] for i in range(s, e)):
            continue
        out.append(Passage(doc_index, s, e, dp.pieces[s:e], dp.topic))
    return out


def passage_body(passage: Passage, max_pieces: int) -> Tuple[List[int], List[int], List[int]]:
    """Piece ids of the passage text (at most ``max_pieces``), and for each word the
    offset of its first and last piece inside them (-1 where the word has none or
    was cut off)."""
    ids: List[int] = []
    first: List[int] = []
    last: List[int] = []
    for p in passage.pieces:
        if p and len(ids) + len(p) <= max_pieces:
            first.append(len(ids))
            ids.extend(p)
            last.append(len(ids) - 1)
        else:
            first.append(-1)
            last.append(-1)
    return ids, first, last


@dataclass
class Batch:
    """Padded model inputs (numpy; the models turn them into tensors)."""

    input_ids: numpy.ndarray
    attention_mask: numpy.ndarray
    token_type_ids: numpy.ndarray
    position_ids: Optional[numpy.ndarray] = None

    @classmethod
    def pad(cls, seqs: List[List[int]], types: List[List[int]], pad_id: int,
            positions: Optional[List[List[int]]] = None) -> "Batch":
        n = max((len(s) for s in seqs), default=1)
        ids = numpy.full((len(seqs), n), pad_id, dtype="int64")
        mask = numpy.zeros((len(seqs), n), dtype="int64")
        tt = numpy.zeros((len(seqs), n), dtype="int64")
        pos = None if positions is None else numpy.zeros((len(seqs), n), dtype="int64")
        for i, (s, t) in enumerate(zip(seqs, types)):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
            tt[i, : len(t)] = t
            if pos is not None:
                pos[i, : len(s)] = positions[i]
        return cls(ids, mask, tt, pos)

    def to_torch(self, device) -> Dict[str, "torch.Tensor"]:
        import torch

        out = {
            "input_ids": torch.from_numpy(self.input_ids).to(device),
            "attention_mask": torch.from_numpy(self.attention_mask).to(device),
            "token_type_ids": torch.from_numpy(self.token_type_ids).to(device),
        }
        if self.position_ids is not None:
            out["position_ids"] = torch.from_numpy(self.position_ids).to(device)
        return out


def passage_query(passage: Passage, cls: int, sep: int, max_pieces: int) -> List[int]:
    """Retriever input ``[CLS] passage [SEP] topic [SEP]``."""
    body, _, _ = passage_body(passage, max_pieces)
    out = [cls] + body + [sep]
    if passage.topic:
        out += passage.topic + [sep]
    return out


def entity_pieces(tokenizer, texts: Iterable[str], max_pieces: int) -> List[List[int]]:
    """Piece ids of entity texts (no special tokens), truncated to ``max_pieces``."""
    texts = [t if t else " " for t in texts]
    if not texts:
        return []
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_pieces)
    return [list(map(int, ids)) for ids in enc["input_ids"]]


def entity_input(pieces: List[int], cls: int, sep: int) -> List[int]:
    """Entity encoder input ``[CLS] text [SEP]``."""
    return [cls] + pieces + [sep]
