"""EntQA reader (Chapter 6.2.2): find the mentions of each candidate entity in a
passage, or reject it with the [CLS] span.

Two registered architectures share one output contract, inputs and decoding:

* ``spacy_kbnlp.EntQAReader.v1`` (faithful): one cross-encoder pass per
  (passage, candidate): ``[CLS] passage [SEP] topic [SEP] entity [SEP]``;
  start/end logits ``w^T H_i`` and the rerank logit ``w_rerank^T H_[CLS]``.
* ``spacy_kbnlp.EntQAPackedReader.v1`` (fast, ReLiK-style packing): one pass per
  passage and up to ``candidates_per_sequence`` candidates,
  ``[CLS] passage [SEP] topic [SEP] [ENT] e_1 [ENT] e_2 ... [SEP]``; candidate k is
  represented by the mean state ``M_k`` of its segment (marker + entity text; every
  segment starts at the same position id, so candidate order carries no signal),
  start/end logits are bilinear ``(U M_k)^T (V H_i)`` (U, V start as identity) and
  the rerank logit is ``w^T M_k``.

For every (passage, candidate) pair both return word-level start/end logits over
positions ``0..W`` (0 = [CLS] = "not mentioned") and one rerank logit; the rerank
distribution is normalized over the K candidates of a passage. Decoding keeps the
top-P spans per candidate that are more probable than the [CLS] span, and links
a span when ``p_rerank * p_span > threshold``.
"""
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.util import registry

from ..encoders.hf import load_encoder_model, save_hf_dir
from ..errors import Errors
from .passages import Batch, Passage, passage_body, special_ids
from .retriever import (load_heads, multilabel_softmax_loss, read_spec, run_encoder,
                        save_heads)

READER_FORMAT = 1
MARKER = "[ENT]"
NEG_INF = float("-inf")


@dataclass
class ReaderSpec:
    """A registered reader architecture: what to build, not the weights."""

    name: Optional[str] = None
    packed: bool = False
    max_passage_pieces: int = 64
    max_entity_pieces: int = 32
    max_span_words: int = 10
    candidates_per_sequence: int = 16
    # saved weights to start from (a bundled model's reference): set by
    # spacy_kbnlp.BundledEntQAReader.v1, not part of the saved spec
    weights: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("weights")
        return out

    @property
    def architecture(self) -> str:
        """The registered name of this spec's architecture."""
        return READER_ARCHITECTURES[self.packed]

    def check_saved(self, saved: "ReaderSpec", path: Union[str, Path], name: str) -> None:
        """KBE161 when a reader saved at ``path`` is of another architecture than
        this (configured) spec: the config decides what runs."""
        if saved.packed != self.packed:
            raise ValueError(Errors.KBE161.format(what="reader", path=path, name=name,
                                                  saved=saved.architecture,
                                                  configured=self.architecture))

    def build(self, path: Optional[Union[str, Path]] = None, device=None, *,
              name: str = "entqa_linker"):
        """The reader: pretrained encoder from ``self.name`` (local path or the
        bundled MiniLM) with fresh heads, or the weights saved under ``path``, which
        must be of this architecture (KBE161; ``name``: the component, for the
        message); ``path`` defaults to ``weights`` (a bundled model's reference)."""
        from ..core.bundled import resolve_bundled

        path = path if path is not None else resolve_bundled(self.weights)
        if path is not None:
            model = load_reader(path, device=device)
            self.check_saved(model.spec, path, name)
            return model
        from ..core.torch_io import get_device
        from ..encoders.hf import resolve_model_path

        tok, enc = load_encoder_model(resolve_model_path(self.name), self.name)
        cls = PackedReader if self.packed else CrossReader
        if self.packed and MARKER not in tok.get_vocab():
            tok.add_special_tokens({"additional_special_tokens": [MARKER]})
            _resize_quietly(enc, len(tok))
        return cls(self, enc, tok).to(get_device(device)).eval()


def _resize_quietly(encoder, size: int) -> None:
    """``resize_token_embeddings`` (the new row drawn around the mean embedding)
    without transformers' note about how it initializes the row."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        encoder.resize_token_embeddings(size)
    finally:
        hf_logging.set_verbosity(level)


READER_ARCHITECTURES = {False: "spacy_kbnlp.EntQAReader.v1",
                       True: "spacy_kbnlp.EntQAPackedReader.v1"}


def saved_reader_config(path: Union[str, Path]) -> Dict[str, Any]:
    """The config block (``@architectures`` and settings) of the reader saved at
    ``path``, e.g. to add an ``entqa_linker`` that runs it."""
    spec = ReaderSpec(**read_spec(Path(path), "reader")["spec"])
    block = {"@architectures": spec.architecture, **spec.to_dict()}
    block.pop("packed")
    if not spec.packed:
        block.pop("candidates_per_sequence")
    return block


@registry.architectures("spacy_kbnlp.EntQAReader.v1")
def entqa_reader(
    name: Optional[str] = None,
    max_passage_pieces: int = 64,
    max_entity_pieces: int = 32,
    max_span_words: int = 10,
) -> ReaderSpec:
    """Faithful EntQA reader: one cross-encoder pass per (passage, candidate),
    warm-started from ``name`` (a local HF encoder; None = bundled MiniLM)."""
    return ReaderSpec(name=name, packed=False, max_passage_pieces=max_passage_pieces,
                      max_entity_pieces=max_entity_pieces, max_span_words=max_span_words)


@registry.architectures("spacy_kbnlp.EntQAPackedReader.v1")
def entqa_packed_reader(
    name: Optional[str] = None,
    max_passage_pieces: int = 64,
    max_entity_pieces: int = 16,
    max_span_words: int = 10,
    candidates_per_sequence: int = 16,
) -> ReaderSpec:
    """Packed EntQA reader: one pass scores up to ``candidates_per_sequence``
    candidates of a passage (ReLiK-style), each behind an ``[ENT]`` marker."""
    return ReaderSpec(name=name, packed=True, max_passage_pieces=max_passage_pieces,
                      max_entity_pieces=max_entity_pieces, max_span_words=max_span_words,
                      candidates_per_sequence=candidates_per_sequence)


@registry.architectures("spacy_kbnlp.BundledEntQAReader.v1")
def bundled_entqa_reader() -> ReaderSpec:
    """The reader bundled with the package (``spacy_kbnlp/assets/entqa_reader``: a
    per-candidate reader stored as its rank-16 int8 difference from MiniLM), as
    ``entqa_linker``'s ``reader``: ``nlp.initialize()`` loads its weights."""
    from ..core.bundled import bundled_ref, resolve_bundled

    ref = bundled_ref("entqa_reader")
    meta = read_spec(Path(resolve_bundled(ref)), "reader")
    return ReaderSpec(**meta["spec"], weights=ref)


# ---------------------------------------------------------------- inputs

@dataclass
class ReaderInputs:
    """Padded sequences plus the bookkeeping that maps outputs to pairs.

    ``pairs[r] = (passage_index, candidate_index)`` is the pair of output row r;
    ``first``/``last`` (rows, W) give each word's first/last piece position in
    the row's sequence (-1: no piece); ``markers`` (packed only, sequences x
    candidates_per_sequence) the marker positions (-1: padding) and ``seg_lens``
    the length of each candidate segment (marker + entity pieces)."""

    batch: Batch
    first: numpy.ndarray
    last: numpy.ndarray
    pairs: List[Tuple[int, int]]
    markers: Optional[numpy.ndarray] = None
    seq_rows: Optional[numpy.ndarray] = None
    seg_lens: Optional[numpy.ndarray] = None


def _word_positions(firsts: List[List[int]], lasts: List[List[int]], offset: int, width: int):
    f = numpy.full((len(firsts), width), -1, dtype="int64")
    la = numpy.full((len(firsts), width), -1, dtype="int64")
    for i, (a, b) in enumerate(zip(firsts, lasts)):
        a = numpy.asarray(a, dtype="int64")
        b = numpy.asarray(b, dtype="int64")
        f[i, : len(a)] = numpy.where(a >= 0, a + offset, -1)
        la[i, : len(b)] = numpy.where(b >= 0, b + offset, -1)
    return f, la


def build_inputs(spec: ReaderSpec, tokenizer, passages: Sequence[Passage],
                 candidates: Sequence[Sequence[List[int]]]) -> ReaderInputs:
    """Reader inputs for ``passages`` and, per passage, the piece ids of its
    candidate entity texts (already truncated to ``spec.max_entity_pieces``)."""
    cls, sep, pad = special_ids(tokenizer)
    width = max((p.n_words for p in passages), default=1)
    seqs: List[List[int]] = []
    types: List[List[int]] = []
    firsts: List[List[int]] = []
    lasts: List[List[int]] = []
    pairs: List[Tuple[int, int]] = []
    marker_rows: List[List[int]] = []
    seq_rows: List[List[int]] = []
    positions: List[List[int]] = []
    seg_lens: List[List[int]] = []
    marker_id = tokenizer.convert_tokens_to_ids(MARKER) if spec.packed else None
    for pi, (passage, cands) in enumerate(zip(passages, candidates)):
        body, first, last = passage_body(passage, spec.max_passage_pieces)
        head = [cls] + body + [sep] + (passage.topic + [sep] if passage.topic else [])
        if not spec.packed:
            for ci, ent in enumerate(cands):
                ent = ent[: spec.max_entity_pieces]
                seqs.append(head + ent + [sep])
                types.append([0] * len(head) + [1] * (len(ent) + 1))
                firsts.append(first)
                lasts.append(last)
                pairs.append((pi, ci))
            continue
        step = max(1, spec.candidates_per_sequence)
        for c0 in range(0, len(cands), step):
            seq = list(head)
            pos = list(range(len(head)))
            markers = []
            rows = []
            lens = []
            for ci in range(c0, min(c0 + step, len(cands))):
                markers.append(len(seq))
                segment = [marker_id] + cands[ci][: spec.max_entity_pieces]
                lens.append(len(segment))
                seq.extend(segment)
                # every candidate segment starts at the same position: the order of
                # the candidates carries no information
                pos.extend(range(len(head), len(head) + len(segment)))
                rows.append(len(pairs))
                pairs.append((pi, ci))
            seq.append(sep)
            pos.append(len(head) + 1 + spec.max_entity_pieces)
            seqs.append(seq)
            positions.append(pos)
            types.append([0] * len(head) + [1] * (len(seq) - len(head)))
            firsts.append(first)
            lasts.append(last)
            marker_rows.append(markers)
            seq_rows.append(rows)
            seg_lens.append(lens)
    if not seqs:
        batch = Batch.pad([[cls, sep]], [[0, 0]], pad)
    else:
        batch = Batch.pad(seqs, types, pad, positions if spec.packed else None)
    f, la = _word_positions(firsts, lasts, 1, width)
    out = ReaderInputs(batch, f, la, pairs)
    if spec.packed:
        m = max((len(r) for r in marker_rows), default=1)
        mk = numpy.full((len(marker_rows), m), -1, dtype="int64")
        rw = numpy.full((len(marker_rows), m), -1, dtype="int64")
        ln = numpy.zeros((len(marker_rows), m), dtype="int64")
        for i, (a, b, c) in enumerate(zip(marker_rows, seq_rows, seg_lens)):
            mk[i, : len(a)] = a
            rw[i, : len(b)] = b
            ln[i, : len(c)] = c
        out.seg_lens = ln
        out.markers, out.seq_rows = mk, rw
    return out


def _gather_words(token_logits, positions):
    """(R, T) token logits -> (R, W+1) word logits; column 0 is [CLS]."""
    idx = torch.as_tensor(positions, device=token_logits.device)
    words = token_logits.gather(1, idx.clamp(min=0))
    words = words.masked_fill(idx < 0, NEG_INF)
    return torch.cat([token_logits[:, :1], words], dim=1)


# ---------------------------------------------------------------- models

class CrossReader(torch.nn.Module):
    """Faithful reader: ``w_start``, ``w_end`` and ``w_rerank`` on one joint encoding
    per (passage, candidate)."""

    def __init__(self, spec: ReaderSpec, encoder, tokenizer):
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.tokenizer = tokenizer
        dim = int(encoder.config.hidden_size)
        self.qa = torch.nn.Linear(dim, 2)
        self.rank = torch.nn.Linear(dim, 1)
        for lin in (self.qa, self.rank):
            lin.weight.data.normal_(0.0, 0.02)
            lin.bias.data.zero_()

    def forward(self, inputs: ReaderInputs):
        """Word-level (start, end) logits (pairs, W+1) and rerank logits (pairs,)."""
        device = next(self.encoder.parameters()).device
        hidden = run_encoder(self.encoder, inputs.batch.to_torch(device))
        logits = self.qa(hidden)
        start = _gather_words(logits[..., 0], inputs.first)
        end = _gather_words(logits[..., 1], inputs.last)
        rank = self.rank(hidden[:, 0]).squeeze(-1)
        return start, end, rank


class PackedReader(torch.nn.Module):
    """Packed reader: bilinear span heads conditioned on each candidate's marker."""

    def __init__(self, spec: ReaderSpec, encoder, tokenizer):
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.tokenizer = tokenizer
        dim = int(encoder.config.hidden_size)
        self.start_q = torch.nn.Linear(dim, dim)
        self.start_k = torch.nn.Linear(dim, dim)
        self.end_q = torch.nn.Linear(dim, dim)
        self.end_k = torch.nn.Linear(dim, dim)
        # identity start: a mention scores by the similarity of its tokens to the
        # candidate's marker state (which attends to the entity text)
        for lin in (self.start_q, self.start_k, self.end_q, self.end_k):
            torch.nn.init.eye_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        self.rank = torch.nn.Linear(dim, 1)
        self.rank.weight.data.normal_(0.0, 0.02)
        self.rank.bias.data.zero_()
        self._scale = 1.0 / math.sqrt(dim)

    def forward(self, inputs: ReaderInputs):
        device = next(self.encoder.parameters()).device
        hidden = run_encoder(self.encoder, inputs.batch.to_torch(device))  # (S, T, d)
        markers = torch.as_tensor(inputs.markers, device=device)  # (S, C)
        valid = markers >= 0
        # candidate k = mean state of its segment ([ENT] + entity pieces)
        lens = torch.as_tensor(inputs.seg_lens, device=device)
        pos = torch.arange(hidden.shape[1], device=device)
        seg = ((pos[None, None, :] >= markers[..., None]) &
               (pos[None, None, :] < (markers + lens)[..., None]) & valid[..., None])
        segf = seg.to(hidden.dtype)
        mk = torch.einsum("sct,std->scd", segf, hidden) / segf.sum(-1, keepdim=True).clamp(min=1)
        n_pairs = len(inputs.pairs)
        rows = torch.as_tensor(inputs.seq_rows, device=device)[valid]  # pair row of each marker
        order = torch.empty(n_pairs, dtype=torch.long, device=device)
        order[rows] = torch.arange(n_pairs, device=device)
        outs = []
        for q, k, pos in ((self.start_q, self.start_k, inputs.first),
                          (self.end_q, self.end_k, inputs.last)):
            tok = torch.einsum("scd,std->sct", q(mk), k(hidden)) * self._scale  # (S, C, T)
            s, c, t = tok.shape
            pos_rep = numpy.repeat(pos, c, axis=0)
            words = _gather_words(tok.reshape(s * c, t), pos_rep).reshape(s, c, -1)
            outs.append(words[valid][order])
        rank = self.rank(mk).squeeze(-1)[valid][order]
        return outs[0], outs[1], rank


# ---------------------------------------------------------------- loss + decoding

def group_by_passage(values, pairs: Sequence[Tuple[int, int]], n_passages: int):
    """(pairs,) -> (passages, max candidates) with -inf padding, and the index map."""
    n_c = max((c for _, c in pairs), default=-1) + 1
    idx = numpy.full((n_passages, max(n_c, 1)), -1, dtype="int64")
    for r, (p, c) in enumerate(pairs):
        idx[p, c] = r
    t = torch.as_tensor(idx, device=values.device)
    out = values[t.clamp(min=0)].masked_fill(t < 0, NEG_INF)
    return out, t


def reader_loss(start, end, rank, pairs, n_passages: int, gold_start, gold_end, gold_cand):
    """EntQA reader objective (6.2): the log-likelihood of the gold candidates under
    the rerank softmax over each passage's K candidates, plus that of the gold start
    and end positions of every (passage, candidate) pair (position 0, the [CLS] span,
    for a candidate that is not mentioned), each under its own softmax: the
    distributions decoding uses. Mean of the three terms."""
    gs = torch.as_tensor(gold_start, device=start.device)
    ge = torch.as_tensor(gold_end, device=start.device)
    ls = multilabel_softmax_loss(start, gs, start > NEG_INF)
    le = multilabel_softmax_loss(end, ge, end > NEG_INF)
    grouped, idx = group_by_passage(rank, pairs, n_passages)
    gc = torch.as_tensor(numpy.asarray(gold_cand, dtype=bool), device=start.device)
    gold_grouped = gc[idx.clamp(min=0)] & (idx >= 0)
    lr = multilabel_softmax_loss(grouped, gold_grouped, idx >= 0)
    return (ls + le + lr) / 3.0


@dataclass
class ReaderOutput:
    """Probabilities of one batch, on the CPU as numpy arrays."""

    start_logp: numpy.ndarray  # (pairs, W+1)
    end_logp: numpy.ndarray
    rerank_p: numpy.ndarray    # (pairs,) normalized over each passage's candidates
    pairs: List[Tuple[int, int]]


def reader_probs(start, end, rank, pairs, n_passages: int) -> ReaderOutput:
    sl = torch.log_softmax(start.float(), dim=-1)
    el = torch.log_softmax(end.float(), dim=-1)
    grouped, idx = group_by_passage(rank.float(), pairs, n_passages)
    probs = torch.softmax(grouped, dim=-1)
    rp = numpy.zeros(len(pairs), dtype="float32")
    idx_np = idx.cpu().numpy()
    pr = probs.cpu().numpy()
    sel = idx_np >= 0
    rp[idx_np[sel]] = pr[sel]
    return ReaderOutput(sl.cpu().numpy(), el.cpu().numpy(), rp, list(pairs))


def top_spans(start_logp: numpy.ndarray, end_logp: numpy.ndarray, max_len: int,
              top_p: int) -> List[List[Tuple[int, int, float]]]:
    """Per row, up to ``top_p`` spans ``(start_word, end_word_exclusive, p_span)``
    more probable than the [CLS] span, best first; a span nested in or
    overlapping a better span of the same row is skipped."""
    n, w1 = start_logp.shape
    w = w1 - 1
    out: List[List[Tuple[int, int, float]]] = [[] for _ in range(n)]
    if n == 0 or w == 0 or top_p <= 0:
        return out
    null = start_logp[:, 0] + end_logp[:, 0]
    # cheap filter: best start + best end must beat the null span
    best = start_logp[:, 1:].max(1) + end_logp[:, 1:].max(1)
    rows = numpy.nonzero(best > null)[0]
    if rows.size == 0:
        return out
    i = numpy.arange(w)
    band = (i[None, :] >= i[:, None]) & (i[None, :] - i[:, None] < max_len)
    for r in rows:
        scores = start_logp[r, 1:, None] + end_logp[r, None, 1:]
        scores = numpy.where(band & (scores > null[r]), scores, -numpy.inf)
        flat = scores.ravel()
        k = min(flat.size, 4 * top_p)
        cand = numpy.argpartition(-flat, k - 1)[:k]
        cand = cand[numpy.argsort(-flat[cand], kind="stable")]
        chosen: List[Tuple[int, int, float]] = []
        for c in cand:
            v = flat[c]
            if not numpy.isfinite(v):
                break
            s, e = divmod(int(c), w)
            if any(not (e < cs or s >= ce) for cs, ce, _ in chosen):
                continue
            chosen.append((s, e + 1, float(numpy.exp(v))))
            if len(chosen) >= top_p:
                break
        out[r] = chosen
    return out


# ---------------------------------------------------------------- (de)serialization

def save_reader(model, path: Union[str, Path], *, delta: bool = False,
                half: bool = False, int8: bool = False, rank: Optional[int] = None) -> None:
    """Write ``spec.json``, ``encoder/`` (HF config, safetensors, tokenizer) and
    ``heads.safetensors``, each weights file with its sha256 in the spec.

    A reader loaded from a compact save (``delta.safetensors``, e.g. the bundled
    one) and not trained since is written as that save again, not expanded.
    ``delta``: write only what differs from the base encoder the spec names
    (``delta.safetensors``: the heads, the trained layers and the rows of added
    tokens) instead of a full copy; loading rebuilds the base and applies it. A
    reader trained with ``trainable_layers`` 2 on MiniLM is ~8 MB so, not 90.
    ``half``: store the delta in float16. ``int8``: store each changed weight
    matrix as its difference from the base, int8 with one scale per row (the
    differences are small, so the error is far below the weights' own scale): a
    fully fine-tuned MiniLM reader in ~12 MB. ``rank``: keep only the ``rank``
    largest singular directions of each changed matrix's difference (truncated
    SVD, as a LoRA adapter would hold it), both factors int8, and the heads int8
    too: a rank-8 MiniLM reader in ~1 MB (implies ``delta`` and ``int8``)."""
    from ..core.delta import base_reference, write_delta, write_source
    from ..core.integrity import weights_files

    path = Path(path)
    if not (delta or rank is not None) and write_source(model, path):
        return
    path.mkdir(parents=True, exist_ok=True)
    meta: Dict[str, Any] = {"format": READER_FORMAT, "spec": model.spec.to_dict()}
    if rank is not None:
        delta = int8 = True
    if delta:
        tensors, meta["base_check"] = _delta_from_base(model, half=half, int8=int8, rank=rank)
        meta["delta"] = True
        meta["base"] = base_reference(model.spec.name)
        meta["delta_sha256"] = write_delta(tensors, path)
    else:
        save_hf_dir(model.encoder, model.tokenizer, path / "encoder")
        save_heads(model, path / "heads.safetensors", ("encoder",))
        meta["sha256"] = weights_files(path)
    (path / "spec.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_reader(path: Union[str, Path], device=None):
    """Rebuild a reader saved by ``save_reader`` (offline, local files only), after
    checking its weights against the sha256 in its spec."""
    from ..core.delta import DELTA_FILE, remember_source
    from ..core.integrity import check_files
    from ..core.torch_io import get_device

    path = Path(path)
    meta = read_spec(path, "reader")
    spec = ReaderSpec(**meta["spec"])
    if meta.get("delta"):
        model = spec.build(device="cpu")
        _apply_delta(model, path, meta)
        remember_source(model, path, ["spec.json", DELTA_FILE])
        return model.to(get_device(device)).eval()
    check_files(path, meta.get("sha256"))
    tok, enc = load_encoder_model(str(path / "encoder"), str(path))
    model = (PackedReader if spec.packed else CrossReader)(spec, enc, tok)
    load_heads(model, path / "heads.safetensors", ("encoder",), device)
    return model.to(get_device(device)).eval()


def _delta_from_base(model, *, half: bool, int8: bool = False, rank: Optional[int] = None
                     ) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """``core.delta.delta_from_base`` against a fresh build of the reader's spec:
    only the pretrained encoder is a base (the heads start random, so they are
    stored whole)."""
    from ..core.delta import delta_from_base

    base = model.spec.build(device="cpu").state_dict()
    return delta_from_base(model.state_dict(), base, has_base=lambda n: n.startswith("encoder."),
                           half=half, int8=int8, rank=rank)


def _apply_delta(model, path: Path, meta: Dict[str, Any]) -> None:
    from ..core.delta import load_saved_delta
    from ..errors import Errors

    load_saved_delta(model.state_dict(), path, meta, lambda bad: Errors.KBE213.format(
        path=path, name=model.spec.name or "bundled MiniLM", tensors=", ".join(bad[:3])))


def quantize_dynamic(model):
    """Dynamic int8 quantization of every ``Linear`` (CPU inference only)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.cpu(), {torch.nn.Linear},
                                                      dtype=torch.qint8)
