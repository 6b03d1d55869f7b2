"""Seq2seq coreference model (Zhang, Wiseman & Stratos 2023; dissertation ch. 7, app. E):
:class:`Seq2SeqCorefModel` ties the coreference grammar (``models.coref_grammar``)
and the source units (``models.source_units``) to a Hugging Face tokenizer and
seq2seq model; its compact form (a difference from the seeded warm start) is in
``models.seq2seq_compact`` and the Hugging Face loaders in ``models.hf_loading``.
The names other modules import from here are re-exported.
"""
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import Errors
from ..errors import Warnings
from .coref_grammar import (  # noqa: F401  (some re-exported)
    CorefGrammar, CorefState, Mention, Vocab, add_markup_tokens, build_vocab, check_spec,
    group_clusters, limit_clusters, linearize, merge_segment_clusters, name_match_merge,
    pronoun_units)
from .coref_linker import PairLinker
from .hf_loading import (_quiet_transformers, ensure_word_tokenizer, load_seq2seq,
                         resize_embeddings, warm_start_encoder_decoder)
from .seq2seq_compact import COMPACT_SPEC
from .source_units import (  # noqa: F401  (some re-exported)
    SourceUnits, doc_mentions, segment_examples, segment_units, source_units, windows_of)


@dataclass
class ModelSettings:
    representation: str = "full"
    action: str = "copy"
    max_clusters: int = 100
    segment_length: int = 256
    max_target_length: int = 512
    # decoder input = token embedding + encoder state of the next source unit to copy
    aligned_input: bool = False


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
        # warm-started and neither trained nor loaded: predicts nothing useful (KBW170)
        self.warm_only = False
        self._warned = False
        # decode with core.bert_decoder where the layout allows (False: Hugging Face's forward)
        self.lean_decoder = True
        # prediction-time constraint: a pronoun may not join a cluster of another class
        self.pronoun_agreement = False
        self._pronouns: Optional[Dict[int, str]] = None

    # --- construction
    @classmethod
    def load(cls, model: Optional[str], settings: ModelSettings, *, warm_start: Optional[str] = None,
             device: Any = None, local_files_only: bool = True,
             decoder_layers: Optional[int] = None) -> "Seq2SeqCorefModel":
        """``model``: a seq2seq model path/name; None -> an encoder-decoder warm-started
        from ``warm_start`` (None: the bundled MiniLM) whose decoder keeps the first
        ``decoder_layers`` layers (None: all)."""
        from ..core.bundled import resolve_bundled
        from ..core.torch_io import get_device

        model = resolve_bundled(model)
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
        out = cls(hf_model.to(device).eval(), tok, settings, device)
        out.warm_only = model is None
        return out

    @classmethod
    def from_dir(cls, path: Union[str, Path], settings: ModelSettings, device: Any = None
                 ) -> "Seq2SeqCorefModel":
        """A model written by :meth:`save`: its compact form, or the full model after
        checking its weights against ``sha256.json`` (``load_seq2seq``)."""
        from ..core.torch_io import get_device

        if (Path(path) / COMPACT_SPEC).exists():
            return cls.from_compact(path, settings, device=device)
        device = get_device(device)
        with _quiet_transformers():
            hf_model, tok = load_seq2seq(str(path), True)
        return cls(hf_model.to(device).eval(), tok, settings, device)

    @staticmethod
    def is_saved_model(path: Union[str, Path]) -> bool:
        """Whether ``path`` holds a model :meth:`from_dir` reads."""
        return any((Path(path) / name).exists() for name in ("config.json", COMPACT_SPEC))

    def save(self, path: Union[str, Path]) -> None:
        """The compact files the model was loaded from if it was not trained since
        (a few MB), else the full model (``save_pretrained``) with ``sha256.json``."""
        from ..core.delta import write_source
        from ..encoders.hf import save_hf_dir

        if not write_source(self.model, path):
            save_hf_dir(self.model, self.tokenizer, path)

    # --- compact form: the difference from a seeded warm start (models.seq2seq_compact)
    @classmethod
    def seeded_warm_start(cls, settings: ModelSettings, *, seed: int,
                          warm_start: Optional[str] = None,
                          decoder_layers: Optional[int] = None) -> "Seq2SeqCorefModel":
        """See :func:`models.seq2seq_compact.seeded_warm_start`."""
        from .seq2seq_compact import seeded_warm_start

        return seeded_warm_start(cls, settings, seed=seed, warm_start=warm_start,
                                 decoder_layers=decoder_layers)

    def save_compact(self, path: Union[str, Path], *, seed: int, warm_start: Optional[str] = None,
                     decoder_layers: Optional[int] = None, rank: int = 16) -> Dict[str, Any]:
        """See :func:`models.seq2seq_compact.save_compact`."""
        from .seq2seq_compact import save_compact

        return save_compact(self, path, seed=seed, warm_start=warm_start,
                            decoder_layers=decoder_layers, rank=rank)

    @classmethod
    def from_compact(cls, path: Union[str, Path], settings: ModelSettings,
                     device: Any = None) -> "Seq2SeqCorefModel":
        """See :func:`models.seq2seq_compact.load_compact`."""
        from .seq2seq_compact import load_compact

        return load_compact(cls, path, settings, device=device)

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

    def grammar(self, units: Sequence[int], *, decoding: bool = False) -> CorefGrammar:
        """The grammar of a segment; ``decoding`` adds the prediction-time constraints
        (pronoun agreement when ``pronoun_agreement`` is on), never used on gold."""
        s = self.settings
        agreement = None
        if decoding and self.pronoun_agreement:
            if self._pronouns is None:
                self._pronouns = pronoun_units(self.tokenizer)
            agreement = self._pronouns
        return CorefGrammar(units, self.vocab, representation=s.representation, action=s.action,
                            max_length=self.decoder_limit(), max_clusters=s.max_clusters,
                            agreement=agreement)

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

        self.warm_only = False  # trained from here on
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

    def aligned_embeddings(self, ids: Any, hidden: Any, positions: Any, rows: Any = None) -> Any:
        """Decoder input embeddings of ``ids`` (batch, len) plus the encoder states at
        ``positions`` (batch, len): what the decoder reads under ``aligned_input``.
        ``rows`` (batch,): the row of ``hidden`` each row of ``ids`` reads (None: the
        same row)."""
        import torch

        emb = self.model.get_decoder().get_input_embeddings()(ids)
        positions = positions.clamp(max=hidden.shape[1] - 1)
        if rows is None:
            rows = torch.arange(ids.shape[0], device=ids.device)
        return emb + hidden[rows[:, None], positions].to(emb.dtype)

    # --- prediction
    def stepper(self, hidden: Any, mask: Any, embedder: Any = None) -> Any:
        """The decoder stepper over encoder states ``hidden``: the lean BERT decoder
        (``core.bert_decoder``) where the model has that layout and ``lean_decoder``
        is on, else Hugging Face's forward pass with its cache (``HFSeq2SeqStepper``);
        both give the same logits."""
        from ..core.bert_decoder import bert_decoder_stepper
        from ..core.decoding import HFSeq2SeqStepper

        columns = self.output_columns()
        lean = (bert_decoder_stepper(self.model, hidden, mask, columns=columns,
                                     input_embedder=embedder, max_length=self.decoder_limit())
                if self.lean_decoder else None)
        return lean if lean is not None else HFSeq2SeqStepper(
            self.model, hidden, mask, columns=columns, input_embedder=embedder)

    def _prepare(self, segments: Sequence[Sequence[int]], mention_bias: float
                 ) -> Tuple[List[CorefGrammar], Any]:
        """The decoding grammars of ``segments`` and a stepper over their encoder states
        (one padded batch)."""
        import torch

        from ..core.decoding import BiasedStepper

        grammars = [self.grammar(ids, decoding=True) for ids in segments]
        inputs = [self.encoder_input(ids) for ids in segments]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        dev = next(self.model.parameters()).device
        inp = torch.full((len(inputs), max(len(x) for x in inputs)), pad, dtype=torch.long)
        mask = torch.zeros_like(inp)
        for i, x in enumerate(inputs):
            inp[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        inp, mask = inp.to(dev), mask.to(dev)
        with torch.inference_mode():
            hidden = self.model.get_encoder()(input_ids=inp, attention_mask=mask,
                                              return_dict=True).last_hidden_state
        embedder = PointerEmbedder(self, grammars, hidden) if self.settings.aligned_input else None
        stepper = self.stepper(hidden, mask, embedder)
        if mention_bias:
            stepper = BiasedStepper(stepper, {self.vocab.m_open: mention_bias})
        return grammars, stepper

    def decode_segment(self, ids: Sequence[int], *, method: str = "greedy", beam_size: int = 4,
                       n_propose: int = 0, mention_bias: float = 0.0) -> Tuple[List[Mention], Any]:
        """Mentions ``(start, end, cluster)`` of one segment (segment coordinates) and
        the :class:`~spacy_kbnlp.core.decoding.DecodeOutput`. ``mention_bias`` is added
        to the logit of ``<m>`` (> 0: open mentions more readily)."""
        from ..core.decoding import decode

        (grammar,), stepper = self._prepare([ids], mention_bias)
        out = decode(stepper, grammar.initial(), [self.decoder_start], grammar.max_length,
                     method=method, beam_size=beam_size, n_propose=n_propose)
        mentions, _ = grammar.parse(out.tokens)
        return mentions, out

    def decode_segments(self, segments: Sequence[Sequence[int]], *, n_propose: int = 0,
                        mention_bias: float = 0.0) -> List[Tuple[List[Mention], Any]]:
        """:meth:`decode_segment` with greedy decoding for several segments in one
        batch: the same mentions, far fewer forward passes for a long document.
        ``n_propose`` > 0: copy-speculative in the batch where the stepper has
        ``step_ragged`` (``batched_greedy_decode``), else plain greedy."""
        from ..core.decoding import batched_greedy_decode

        if len(segments) == 1:
            return [self.decode_segment(segments[0], n_propose=n_propose,
                                        mention_bias=mention_bias)]
        grammars, stepper = self._prepare(segments, mention_bias)
        limit = min(g.max_length for g in grammars)
        initial = [g.initial() for g in grammars]
        ragged = hasattr(getattr(stepper, "inner", stepper), "step_ragged")
        outs = batched_greedy_decode(stepper, initial, [self.decoder_start], limit,
                                     n_propose=n_propose if ragged else 0)
        return [(g.parse(o.tokens)[0], o) for g, o in zip(grammars, outs)]

    def n_segments(self, doc: Any, stride: int) -> int:
        """How many segments :meth:`predict_docs` cuts ``doc`` into."""
        return len(windows_of(self.doc_units(doc), self.settings.segment_length, stride))

    def segment_jobs(self, doc_units: Sequence[SourceUnits], stride: int) -> List[Tuple[int, int, int]]:
        """``(doc index, start, end)`` of every segment of the docs, in document order:
        the segments :meth:`predict_docs` decodes."""
        return [(d, start, end) for d, units in enumerate(doc_units)
                for start, end in windows_of(units, self.settings.segment_length, stride)]

    def predict_doc(self, doc: Any, **kwargs: Any) -> List[List[Tuple[int, int]]]:
        """Clusters of ``doc`` (:meth:`predict_docs` of one document)."""
        return self.predict_docs([doc], **kwargs)[0]

    def predict_docs(self, docs: Sequence[Any], *, stride: int, method: str = "greedy",
                     beam_size: int = 4, n_propose: int = 0, mention_bias: float = 0.0,
                     batch_segments: int = 1, merge: str = "union", name_match: bool = False,
                     linker: Optional[PairLinker] = None, link_threshold: float = 0.2,
                     stats: Optional[Dict[str, Any]] = None,
                     record: Optional[List[List[int]]] = None,
                     progress: Optional[Callable[[int, int], None]] = None
                     ) -> List[List[List[Tuple[int, int]]]]:
        """Clusters of token spans ``(start, end)`` per doc. Each doc is cut into
        segments of ``segment_length`` units every ``stride`` units; the segments of
        all ``docs`` are decoded ``batch_segments`` at a time (greedy decoding in one
        batch; 1: one by one, with ``n_propose`` copy-speculative tokens or ``method``
        beam), so memory stays bounded by one batch; a doc's segment clusters are then
        merged (``merge``: ``agreement`` or ``union``, see ``merge_segment_clusters``),
        and with ``name_match`` clusters sharing a name are joined (``name_match_merge``).
        With a ``linker`` (``coref_linker.PairLinker``) the mentions are then re-clustered
        from the segments' and the merged clusters (best-first over ``link_threshold``;
        its singletons included).
        ``record`` receives each segment's decoded tokens in document order (to
        compare decoding modes); ``progress(done, total)`` is called after each batch."""
        stats = stats if stats is not None else defaultdict(int)
        if self.warm_only and not self._warned:
            import warnings

            warnings.warn(Warnings.KBW170.format(name="seq2seq_coref"))
            self._warned = True
        doc_units = [self.doc_units(doc) for doc in docs]
        jobs = self.segment_jobs(doc_units, stride)
        batch = max(1, int(batch_segments)) if method == "greedy" else 1
        per_segment: List[List[List[List[Tuple[int, int]]]]] = [[] for _ in docs]
        windows: List[List[Tuple[int, int]]] = [[] for _ in docs]
        for first in range(0, len(jobs), batch):
            chunk = jobs[first:first + batch]
            segs = [segment_units(doc_units[d], start, end, self.markers) for d, start, end in chunk]
            if len(segs) > 1:
                decoded = self.decode_segments([ids for ids, _ in segs], n_propose=n_propose,
                                               mention_bias=mention_bias)
            else:
                decoded = [self.decode_segment(segs[0][0], method=method, beam_size=beam_size,
                                               n_propose=n_propose, mention_bias=mention_bias)]
            for (d, start, end), (ids, where), (mentions, out) in zip(chunk, segs, decoded):
                units = doc_units[d]
                stats["segments"] += 1
                stats["tokens"] += len(out.tokens)
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
                per_segment[d].append(group_clusters(spans))
                windows[d].append(units.unit_span_to_words(start, end) or (0, 0))
            stats["forward"] += max(out.n_forward for _, out in decoded)
            if progress is not None:
                progress(min(first + batch, len(jobs)), len(jobs))
        out = [merge_segment_clusters(segments, wins, merge=merge)
               for segments, wins in zip(per_segment, windows)]
        if name_match:
            out = [name_match_merge(clusters, [t.text for t in doc])
                   for doc, clusters in zip(docs, out)]
        if linker is not None:
            out = [linker.link(segments, clusters, [t.text for t in doc], link_threshold)
                   for doc, segments, clusters in zip(docs, per_segment, out)]
        return out


class PointerEmbedder:
    """Decoder inputs under ``aligned_input``: each fed token's embedding plus the
    encoder state of the source unit the grammar will copy next. Replays the fed
    tokens through each row's grammar and follows the stepper's cache through
    ``crop`` and ``reorder``. ``grammars[k]`` and ``hidden[k]`` belong to source
    ``k`` (one source: beam rows; several: a batch of segments)."""

    def __init__(self, model: Seq2SeqCorefModel, grammars: Sequence[CorefGrammar], hidden: Any):
        self.model = model
        self.grammars = list(grammars)
        self.hidden = hidden
        self.offset = len(model.prefix)
        self.reset()

    def reset(self) -> None:
        self.rows: List[List[CorefState]] = [[] for _ in self.grammars]
        self.source: List[int] = list(range(len(self.grammars)))  # source of each row

    def crop(self, length: int) -> None:
        self.rows = [r[:length] for r in self.rows]

    def crop_rows(self, lengths: Sequence[int]) -> None:
        self.rows = [r[:n] for r, n in zip(self.rows, lengths)]

    def reorder(self, index: Sequence[int]) -> None:
        self.rows = [list(self.rows[i]) for i in index]
        self.source = [self.source[i] for i in index]

    def __call__(self, ids: Any) -> Any:
        import torch

        if ids.shape[0] != len(self.rows):  # beams of one source fanning out
            self.rows = [list(self.rows[0]) for _ in range(ids.shape[0])]
            self.source = [self.source[0]] * ids.shape[0]
        positions = []
        for b, row in enumerate(ids.tolist()):
            states = self.rows[b]
            grammar = self.grammars[self.source[b]]
            pos = []
            for tok in row:
                if not states:
                    state = grammar.initial()       # the start token
                else:
                    prev = states[-1]
                    state = prev.advance(tok) if not prev.finished and tok in prev.allowed() else prev
                states.append(state)
                pos.append(self.offset + min(state.pos, len(grammar.units)))
            positions.append(pos)
        src = torch.as_tensor(self.source, dtype=torch.long, device=self.hidden.device)
        return self.model.aligned_embeddings(ids, self.hidden,
                                             torch.tensor(positions, device=ids.device), rows=src)
