"""A lean decoder stepper for Hugging Face encoder-decoders with a BERT decoder
(``EncoderDecoderModel`` + ``BertLMHeadModel``, the warm-started MiniLM of
``seq2seq_coref``).

:class:`BertDecoderStepper` has the interface of
:class:`~spacy_kbnlp.core.decoding.HFSeq2SeqStepper` (``reset``, ``step``,
``step_numpy``, ``crop``, ``reorder``, ``col_of``) and computes the same logits with
the model's own weights, but:

* the self-attention keys/values live in buffers allocated once per batch and
  written in place (Hugging Face's cache concatenates, copying the whole cache at
  every step: quadratic in the output length, and the main cost of a large batch);
* the cross-attention keys/values of the encoder states are computed once;
* the output layer is restricted to ``columns`` once, not at every step;
* no module dispatch, signature inspection or mask building per step.

:func:`bert_decoder_stepper` returns one when the model has this layout and None
otherwise (callers then use ``HFSeq2SeqStepper``). The logits equal the Hugging
Face forward pass up to floating-point rounding (tested).
"""
from typing import Any, List, Optional, Sequence

import numpy

from .decoding import column_index


def supports(model: Any) -> bool:
    """Whether ``model`` is an encoder-decoder with a plain BERT decoder that this
    stepper reproduces (absolute positions, cross-attention, no projection between
    encoder and decoder, GELU-family activations, an nn.Linear output layer)."""
    dec = getattr(model, "decoder", None)
    cfg = getattr(dec, "config", None)
    if cfg is None or getattr(model, "enc_to_dec_proj", None) is not None:
        return False
    if getattr(cfg, "model_type", "") != "bert" or not getattr(cfg, "add_cross_attention", False):
        return False
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        return False
    if getattr(cfg, "chunk_size_feed_forward", 0):
        return False
    return hasattr(dec, "bert") and hasattr(dec, "cls")


class BertDecoderStepper:
    """Incremental steps of a BERT decoder over fixed encoder states (see the module
    docstring). ``encoder_hidden`` (batch, source, hidden), ``attention_mask``
    (batch, source) of the encoder input; ``columns``: vocab ids whose logits are
    computed (None: all); ``input_embedder``: as in ``HFSeq2SeqStepper`` (turns fed
    ids into input embeddings, follows ``reset``/``crop``/``reorder``)."""

    PAD_SLOTS = 64

    def __init__(self, model: Any, encoder_hidden: Any, attention_mask: Any,
                 columns: Optional[Sequence[int]] = None, input_embedder: Any = None,
                 max_length: int = 512):
        import torch

        self.model = model
        self.input_embedder = input_embedder
        dec = model.decoder
        cfg = dec.config
        self.n_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.emb = dec.bert.embeddings
        self.layers = list(dec.bert.encoder.layer)
        head = dec.cls.predictions
        self.transform = head.transform
        weight, bias = head.decoder.weight, head.decoder.bias
        vocab = int(weight.shape[0])
        self.columns = list(columns) if columns is not None else None
        with torch.inference_mode():
            if self.columns is not None:
                idx = torch.as_tensor(self.columns, dtype=torch.long, device=weight.device)
                self.out_w = weight.index_select(0, idx)
                self.out_b = bias.index_select(0, idx) if bias is not None else None
            else:
                self.out_w, self.out_b = weight, bias
        self.col_of = column_index(self.columns, vocab)
        self.max_length = min(int(max_length) + 1, int(cfg.max_position_embeddings))
        self.n_positions = int(cfg.max_position_embeddings)
        # slots past the last position hold the padding of ragged rows (``step_ragged``)
        self.slots = self.max_length + self.PAD_SLOTS
        self._base_hidden, self._base_mask = encoder_hidden, attention_mask
        self.reset()

    # --- state
    def reset(self) -> None:
        import torch

        self.length = 0
        self.rows = int(self._base_hidden.shape[0])
        self.cross: List[Any] = []
        h = self._base_hidden
        with torch.inference_mode():
            for layer in self.layers:
                att = layer.crossattention.self
                self.cross.append((self._heads(att.key(h)).contiguous(),
                                   self._heads(att.value(h)).contiguous()))
        self.cross_mask = self._mask(self._base_mask, h.dtype)
        self.keys: List[Any] = [None] * len(self.layers)    # allocated by the first step
        self.values: List[Any] = [None] * len(self.layers)
        if self.input_embedder is not None:
            self.input_embedder.reset()

    @staticmethod
    def _mask(mask: Any, dtype: Any) -> Any:
        """Additive cross-attention mask (batch, 1, 1, source) in the states' ``dtype``,
        None without padding."""
        import torch

        if mask is None or bool(mask.all()):
            return None
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask == 0, float("-inf"))[:, None, None, :]

    def _heads(self, x: Any) -> Any:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)

    def _alloc(self, rows: int, like: Any) -> Any:
        """A key or value buffer (batch, position, head, head_dim): a row's positions can
        be written one by one (``step_ragged``); attention reads it transposed."""
        import torch

        return torch.zeros((rows, self.slots, self.n_heads, self.head_dim), dtype=like.dtype,
                           device=like.device)

    # --- steps
    def step(self, ids: Any) -> Any:
        """Logits ``(batch, len, columns)`` for decoder input ``ids`` (batch, len)."""
        import torch

        if not torch.is_tensor(ids):
            ids = torch.tensor([list(ids)], dtype=torch.long)
        ids = ids.to(self._base_hidden.device)
        b, m = ids.shape
        if b != self.rows:  # beams of one source fanning out
            self.reorder([0] * b)
        t0 = self.length
        if t0 + m > self.max_length:
            raise ValueError(f"BertDecoderStepper: {t0 + m} decoder positions exceed the model's "
                             f"{self.max_length}")
        with torch.inference_mode():
            x = self._embed(ids, slice(t0, t0 + m))
            causal = None
            if m > 1:
                q_pos = torch.arange(t0, t0 + m, device=x.device)[:, None]
                causal = torch.arange(t0 + m, device=x.device)[None, :] <= q_pos
            logits = self._layers(x, (slice(None), slice(t0, t0 + m)), t0 + m, causal)
        self.length = t0 + m
        return logits

    def step_ragged(self, ids: Any, lengths: Sequence[int],
                    fed: Optional[Sequence[int]] = None) -> Any:
        """Logits ``(batch, len, columns)`` where row ``r`` continues after its own
        ``lengths[r]`` cached positions (rows of a batch that accepted different numbers
        of speculative tokens). ``fed[r]``: how many of row ``r``'s ids are real (the
        rest pad the row to the batch's width; None: all). Padding is not computed
        through the linear layers, its keys/values are not written and its logits are
        zero; attention may read stale slots for it, never for a real position, so
        every real position's logits are those of :meth:`step`."""
        import torch

        if not torch.is_tensor(ids):
            ids = torch.tensor(ids, dtype=torch.long)
        ids = ids.to(self._base_hidden.device)
        b, m = ids.shape
        start = torch.as_tensor(list(lengths), dtype=torch.long, device=ids.device)
        pos = start[:, None] + torch.arange(m, device=ids.device)[None, :]  # (batch, m)
        real = None
        if fed is not None and min(fed) < m:
            real = torch.arange(m, device=ids.device)[None, :] < torch.as_tensor(
                list(fed), dtype=torch.long, device=ids.device)[:, None]
        end = int(pos.max() if real is None else pos[real].max()) + 1
        if end > self.slots:
            raise ValueError(f"BertDecoderStepper: {end} decoder positions exceed the "
                             f"{self.slots} it holds (propose fewer tokens)")
        with torch.inference_mode():
            # padding past the model's positions: any position (its output is not read)
            x = self._embed(ids, pos.clamp(max=self.n_positions - 1))
            # query i of row r sees the row's positions up to its own
            mask = (torch.arange(end, device=ids.device)[None, None, :] <= pos[:, :, None])[:, None]
            rows = torch.arange(b, device=ids.device)[:, None].expand(b, m)
            logits = self._layers(x, (rows, pos), end, mask, real)
        self.length = end
        return logits

    def _embed(self, ids: Any, positions: Any) -> Any:
        """Input embeddings of ``ids`` at ``positions`` (a slice or a (batch, len) index)."""
        emb = self.emb
        x = self.input_embedder(ids) if self.input_embedder is not None else emb.word_embeddings(ids)
        x = x + emb.token_type_embeddings.weight[0] + emb.position_embeddings.weight[positions]
        return emb.LayerNorm(x)

    def _layers(self, x: Any, where: Any, end: int, self_mask: Any, real: Any = None) -> Any:
        """The decoder layers and output head over input embeddings ``x`` (batch, m,
        hidden): new keys/values are written at ``buffer[where]`` (an index over batch
        and position) and attention reads the first ``end`` positions under ``self_mask``.
        ``real`` (batch, m; None: all): the positions computed; the linear layers run on
        them alone (packed), attention on the padded batch."""
        import torch.nn.functional as F

        b, m, width = x.shape
        flat = None if real is None else real.reshape(-1).nonzero().squeeze(1)
        if flat is not None:
            where = (where[0].reshape(-1)[flat], where[1].reshape(-1)[flat])
        x = x.reshape(b * m, width) if flat is None else x.reshape(b * m, width).index_select(0, flat)

        def heads(t: Any) -> Any:  # packed (n, hidden) -> (batch, heads, m, head_dim)
            if flat is not None:
                t = t.new_zeros((b * m, t.shape[-1])).index_copy_(0, flat, t)
            return self._heads(t.view(b, m, -1))

        def packed(a: Any) -> Any:  # attention output (batch, heads, m, head_dim) -> (n, hidden)
            a = a.transpose(1, 2).reshape(b * m, -1)
            return a if flat is None else a.index_select(0, flat)

        kv_shape = (-1, self.n_heads, self.head_dim) if flat is not None else (
            b, m, self.n_heads, self.head_dim)
        for i, layer in enumerate(self.layers):
            att = layer.attention.self
            q = heads(att.query(x))
            if self.keys[i] is None:
                self.keys[i], self.values[i] = self._alloc(b, q), self._alloc(b, q)
            self.keys[i][where] = att.key(x).view(kv_shape)
            self.values[i][where] = att.value(x).view(kv_shape)
            a = F.scaled_dot_product_attention(q, self.keys[i][:, :end].transpose(1, 2),
                                               self.values[i][:, :end].transpose(1, 2),
                                               attn_mask=self_mask)
            out = layer.attention.output
            x = out.LayerNorm(out.dense(packed(a)) + x)
            catt = layer.crossattention.self
            ck, cv = self.cross[i]
            a = F.scaled_dot_product_attention(heads(catt.query(x)), ck, cv,
                                               attn_mask=self.cross_mask)
            out = layer.crossattention.output
            x = out.LayerNorm(out.dense(packed(a)) + x)
            h = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
            x = layer.output.LayerNorm(layer.output.dense(h) + x)
        logits = F.linear(self.transform(x), self.out_w, self.out_b)
        if flat is not None:
            logits = logits.new_zeros((b * m, logits.shape[-1])).index_copy_(0, flat, logits)
        return logits.view(b, m, -1)

    def crop_rows(self, lengths: Sequence[int]) -> None:
        """Set each row's cached length (after ``step_ragged``)."""
        self.length = max(int(x) for x in lengths) if len(lengths) else 0
        if self.input_embedder is not None:
            self.input_embedder.crop_rows(list(lengths))

    def step_numpy(self, ids: Sequence[int]) -> numpy.ndarray:
        """Logits ``(len, columns)`` as float32 numpy for one sequence."""
        return self.step(ids)[0].float().cpu().numpy()

    def crop(self, length: int) -> None:
        self.length = min(self.length, int(length))
        if self.input_embedder is not None:
            self.input_embedder.crop(length)

    def _take(self, buffer: Any, idx: Any) -> Any:
        """Rows ``idx`` of a key/value buffer: the cached positions copied, the slots
        after them zero (read only under a mask, so they must be finite)."""
        import torch

        n = min(self.length, buffer.shape[1])
        out = torch.empty((len(idx),) + tuple(buffer.shape[1:]), dtype=buffer.dtype,
                          device=buffer.device)
        out[:, :n] = buffer[:, :n].index_select(0, idx)
        out[:, n:] = 0
        return out

    def reorder(self, index: Sequence[int]) -> None:
        import torch

        idx = torch.as_tensor(list(index), dtype=torch.long, device=self._base_hidden.device)
        with torch.inference_mode():
            self.keys = [None if k is None else self._take(k, idx) for k in self.keys]
            self.values = [None if v is None else self._take(v, idx) for v in self.values]
            self.cross = [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in self.cross]
            if self.cross_mask is not None:
                self.cross_mask = self.cross_mask.index_select(0, idx)
        self.rows = len(index)
        if self.input_embedder is not None:
            self.input_embedder.reorder(list(index))


def bert_decoder_stepper(model: Any, encoder_hidden: Any, attention_mask: Any,
                         columns: Optional[Sequence[int]] = None, input_embedder: Any = None,
                         max_length: int = 512) -> Optional[BertDecoderStepper]:
    """A :class:`BertDecoderStepper` for ``model``, or None when its layout is not
    the one this stepper reproduces (see :func:`supports`)."""
    if not supports(model):
        return None
    return BertDecoderStepper(model, encoder_hidden, attention_mask, columns=columns,
                              input_embedder=input_embedder, max_length=max_length)
