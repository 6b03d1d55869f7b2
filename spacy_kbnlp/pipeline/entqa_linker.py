"""``entqa_linker``: end-to-end entity linking as question answering (EntQA).

For every passage of a document (``passage_length`` tokens every ``passage_stride``
tokens, plus a short document topic) the retriever finds the ``top_k`` entities of
a dense KB; the reader then looks for mentions of each candidate in the passage
(or rejects it) and a mention is linked when ``p_rerank * p_span > threshold``.
Overlapping and nested mentions are kept in ``doc.spans[spans_key]``; a
non-overlapping selection can go to ``doc.ents``.

Annotations (all JSON-like, so they survive ``DocBin`` and ``n_process>1``):

* ``doc.spans[spans_key]``: linked spans, label ``label``, ``kb_id_`` = entity id;
* ``doc._.kb_links``: one record per link ``{"start", "end", "kb_id", "label",
  "score", "candidates": [[kb_id, score], ...], "key"}``, read by the Span getters
  ``span._.link_score`` and ``span._.kb_candidates`` (ranked alternatives for the
  same span, scored like the link);
* ``doc._.entqa_candidates``: per passage ``{"start", "end", "candidates"}`` with the
  best ``store_candidates`` retrieval results.

Speed settings (all in the config): batching of passages across documents
(``batch_size``) and of reader sequences (``reader_batch_size``); the KB's entity
texts are encoded once (at initialize, stored in the component folder); adaptive K
(``adaptive_margin``: skip candidates whose retrieval score is that far below the
passage's best); the packed reader (``spacy_kbnlp.EntQAPackedReader.v1``); dynamic
int8 quantization on CPU (``quantize``, off by default: its activation scales are
computed per batch, so a doc's links depend on the docs batched with it). The
faithful mode is the paper's: K=100, one cross-encoder pass per candidate
(``configs/entqa_faithful.cfg``).
"""
import hashlib
import warnings
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy
import srsly
import torch
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config

from ..core.integrity import check_manifest, write_manifest
from ..errors import Errors, Warnings
from ..extensions import install_extensions
from ..models.passages import (Batch, Passage, check_topic, doc_pieces,
                               entity_pieces, make_passages, passage_query, special_ids,
                               word_pieces)
from ..linking.annotate import set_links
from ..linking.bundled import BUNDLED_SCORER
from ..linking.hinted import (PRIORS_FILE, SCORER_META, FinalScorer, LexicalIndex,
                              add_reader_features, alias_spans, hint_source_ready, merge_hints, hint_spans, mention_features)
from ..linking.priors import PriorTable
from ..models.onepass import load_onepass, save_onepass
from ..models.reader import (ReaderSpec, build_inputs, load_reader, quantize_dynamic,
                             reader_probs, save_reader, top_spans)
from ..models.retriever import (RetrieverSpec, encode_entity_texts, load_retriever,
                                save_retriever, topk_exhaustive)
from .base import KBPipe

FORMAT_VERSION = 1
CACHE_DIR = "entity_cache"
HINTS_DIR = "hints"
ONEPASS_DIR = "onepass"

DEFAULT_RETRIEVER = """
[model]
@architectures = "spacy_kbnlp.EntQARetriever.v1"
name = null
shared_encoder = true
pooling = "mean"
normalize = true
scale = 20.0
max_passage_pieces = 64
max_entity_pieces = 32

[model.score]
@misc = "spacy_kbnlp.DualScore.v1"
"""
DEFAULT_READER = """
[model]
@architectures = "spacy_kbnlp.EntQAPackedReader.v1"
name = null
max_passage_pieces = 64
max_entity_pieces = 16
max_span_words = 10
candidates_per_sequence = 16
"""
DEFAULT_RETRIEVER_MODEL = Config().from_str(DEFAULT_RETRIEVER)["model"]
DEFAULT_READER_MODEL = Config().from_str(DEFAULT_READER)["model"]


@Language.factory(
    "entqa_linker",
    assigns=["doc.ents", "doc.spans", "doc._.kb_links", "doc._.entqa_candidates"],
    default_config={
        "retriever": DEFAULT_RETRIEVER_MODEL,
        "reader": DEFAULT_READER_MODEL,
        "kb": None,
        "passage_length": 32,
        "passage_stride": 16,
        "topic": "first_line",
        "topic_length": 12,
        "top_k": 32,
        "adaptive_margin": 4.0,
        "min_k": 4,
        "top_p": 3,
        "threshold": 0.05,
        "one_entity_per_span": True,
        "batch_size": 64,
        "reader_batch_size": 64,
        "quantize": False,
        "device": None,
        "spans_key": "entqa",
        "label": "ENTITY",
        "set_ents": True,
        "overwrite_ents": False,
        "n_alternatives": 5,
        "store_candidates": 10,
        "mention_hints": "ents",
        "alias_mentions": True,
        "context_length": 64,
        "hint_threshold": None,
        "n_prior": 8,
        "n_lexical": 8,
        "n_dense": 8,
        "n_context": 4,
        "scorer": {"@scorers": "spacy_kbnlp.el_scorer.v1"},
    },
    default_score_weights={"el_micro_f": 1.0, "el_micro_p": 0.0, "el_micro_r": 0.0},
)
def make_entqa_linker(
    nlp: Language,
    name: str,
    retriever: RetrieverSpec,
    reader: ReaderSpec,
    kb: Optional[str],
    passage_length: int,
    passage_stride: int,
    topic: str,
    topic_length: int,
    top_k: int,
    adaptive_margin: Optional[float],
    min_k: int,
    top_p: int,
    threshold: float,
    one_entity_per_span: bool,
    batch_size: int,
    reader_batch_size: int,
    quantize: bool,
    device: Optional[str],
    spans_key: str,
    label: str,
    set_ents: bool,
    overwrite_ents: bool,
    n_alternatives: int,
    store_candidates: int,
    mention_hints: Optional[str],
    alias_mentions: bool,
    context_length: int,
    hint_threshold: Optional[float],
    n_prior: int,
    n_lexical: int,
    n_dense: int,
    n_context: int,
    scorer: Optional[Callable],
) -> "EntQALinker":
    return EntQALinker(
        nlp.vocab, retriever, reader, name, kb=kb, passage_length=passage_length,
        passage_stride=passage_stride, topic=topic, topic_length=topic_length, top_k=top_k,
        adaptive_margin=adaptive_margin, min_k=min_k, top_p=top_p, threshold=threshold,
        one_entity_per_span=one_entity_per_span, batch_size=batch_size,
        reader_batch_size=reader_batch_size, quantize=quantize, device=device,
        spans_key=spans_key, label=label, set_ents=set_ents, overwrite_ents=overwrite_ents,
        n_alternatives=n_alternatives, store_candidates=store_candidates,
        mention_hints=mention_hints, alias_mentions=alias_mentions,
        context_length=context_length, hint_threshold=hint_threshold,
        n_prior=n_prior, n_lexical=n_lexical, n_dense=n_dense, n_context=n_context, scorer=scorer)


@dataclass
class DocLinks:
    """Predictions for one Doc: ``links[(start, end, kb_id)] = (score, alternatives)``
    and the retrieval results per passage."""

    links: Dict[Tuple[int, int, str], Tuple[float, List[List[Any]]]] = field(default_factory=dict)
    passages: List[Dict[str, Any]] = field(default_factory=list)
    labels: Dict[Tuple[int, int], str] = field(default_factory=dict)

    def add(self, start: int, end: int, kb_id: str, score: float, alts: List[List[Any]]) -> None:
        key = (start, end, kb_id)
        if key not in self.links or score > self.links[key][0]:
            self.links[key] = (score, alts)

    def final(self, one_entity_per_span: bool) -> List[Tuple[int, int, str, float, List[List[Any]]]]:
        """Links sorted by position; with ``one_entity_per_span`` only the best
        entity of each span is kept (its rivals stay among the alternatives)."""
        items = [(s, e, k, sc, alts) for (s, e, k), (sc, alts) in self.links.items()]
        if one_entity_per_span:
            best: Dict[Tuple[int, int], Tuple[int, int, str, float, List[List[Any]]]] = {}
            for it in items:
                key = (it[0], it[1])
                if key not in best or it[3] > best[key][3]:
                    best[key] = it
            items = list(best.values())
        return sorted(items, key=lambda x: (x[0], x[1], -x[3], x[2]))


def _keep_own(alts: List[List[Any]], own: str, score: float, n: int) -> List[List[Any]]:
    """The best ``n`` of the ranked ``alts``, with the linked entity ``own`` kept
    last if it falls outside them (entities whose best span lies elsewhere can
    outscore the link on its span)."""
    top = alts[:n]
    if n > 0 and all(kb_id != own for kb_id, _ in top):
        top = top[: n - 1] + [[own, score]]
    return top


class RetrieverEntityEncoder:
    """The retriever's entity tower as a DenseKB encoder (``name``, ``dim``,
    ``encode``), so that the KB stores exactly the vectors the dual score uses."""

    def __init__(self, model, name: str):
        self.model = model
        self.name = name
        self.pooling = model.spec.pooling
        self.normalize = model.spec.normalize
        self.max_length = model.spec.max_entity_pieces

    @property
    def dim(self) -> int:
        return int(self.model.entity_model.config.hidden_size)

    def encode(self, texts: Sequence[str], *, batch_size: Optional[int] = None,
               show_progress: bool = False, desc: str = "Encoding entities") -> numpy.ndarray:
        pieces = entity_pieces(self.model.tokenizer, texts, self.model.spec.max_entity_pieces)
        reps, _ = encode_entity_texts(self.model, pieces, batch_size=batch_size or 64,
                                      show_progress=show_progress)
        return reps[:, 0] if len(texts) else numpy.zeros((0, self.dim), dtype="float32")


def retriever_fingerprint(model) -> str:
    """A name for the retriever's entity encoding: its spec and the weights of the
    entity tower and score head, hashed."""
    digest = hashlib.sha256(json.dumps(model.spec.to_dict(), sort_keys=True).encode("utf8"))
    state = {**{f"e.{k}": v for k, v in model.entity_model.state_dict().items()},
             **{f"s.{k}": v for k, v in model.score_fn.state_dict().items()}}
    for key in sorted(state):
        digest.update(key.encode("utf8"))
        digest.update(state[key].detach().float().cpu().numpy().tobytes())
    return f"entqa-retriever-{digest.hexdigest()[:16]}"


class EntQALinker(KBPipe):
    """EntQA entity linker: dense retriever over a KB + reader (see the module doc)."""

    default_batch_size = 128

    def __init__(self, vocab: Vocab, retriever: RetrieverSpec, reader: ReaderSpec,
                 name: str, *, kb: Optional[str], passage_length: int, passage_stride: int,
                 topic: str, topic_length: int, top_k: int, adaptive_margin: Optional[float],
                 min_k: int, top_p: int, threshold: float, one_entity_per_span: bool,
                 batch_size: int, reader_batch_size: int, quantize: bool,
                 device: Optional[str], spans_key: str, label: str, set_ents: bool,
                 overwrite_ents: bool, n_alternatives: int, store_candidates: int,
                 mention_hints: Optional[str], alias_mentions: bool, context_length: int,
                 hint_threshold: Optional[float], n_prior: int, n_lexical: int, n_dense: int,
                 n_context: int, scorer: Optional[Callable]):
        """Settings as in the factory's ``default_config`` (their one definition)."""
        install_extensions()
        self.vocab = vocab
        self.name = name
        self.retriever_spec = retriever
        self.reader_spec = reader
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "kb": None if kb is None else str(kb), "passage_length": passage_length,
            "passage_stride": passage_stride, "topic": topic, "topic_length": topic_length,
            "top_k": top_k, "adaptive_margin": adaptive_margin, "min_k": min_k, "top_p": top_p,
            "threshold": threshold, "one_entity_per_span": one_entity_per_span,
            "batch_size": batch_size, "reader_batch_size": reader_batch_size,
            "quantize": quantize, "device": device, "spans_key": spans_key, "label": label,
            "set_ents": set_ents, "overwrite_ents": overwrite_ents,
            "n_alternatives": n_alternatives, "store_candidates": store_candidates,
            "mention_hints": mention_hints, "alias_mentions": alias_mentions,
            "context_length": context_length,
            "hint_threshold": hint_threshold, "n_prior": n_prior, "n_lexical": n_lexical,
            "n_dense": n_dense, "n_context": n_context,
            "format_version": FORMAT_VERSION,
        }
        self.check_settings()
        self.retriever = None
        self.reader = None
        self.kb = None
        self.entity_cache: Optional[Tuple[numpy.ndarray, numpy.ndarray]] = None
        self._fingerprint: Optional[str] = None
        self._runtime_reader = None
        self._runtime_retriever = None
        self._ent_pieces: Dict[int, List[int]] = {}
        self._ids: List[str] = []
        self._same_tokenizer = False
        self.priors: Optional[PriorTable] = None
        self.final_scorer: Optional[FinalScorer] = None
        self._lexical: Optional[LexicalIndex] = None
        self._warned_score = False
        self.onepass = None  # optional one-pass reader (models/onepass.py): extra scorer features

    # ------------------------------------------------------------ settings
    def check_settings(self) -> None:
        c = self.cfg
        check_topic(c["topic"])

        def bad(setting, why):
            return ValueError(Errors.KBE205.format(setting=setting, value=c[setting],
                                                   name=self.name, why=why))

        self.check_ints(("passage_length", "passage_stride", "top_k", "min_k", "top_p",
                         "batch_size", "reader_batch_size", "context_length"), 1, bad)
        if c["passage_stride"] > c["passage_length"]:
            raise bad("passage_stride", "the stride cannot exceed passage_length")
        if not 0.0 <= float(c["threshold"]) < 1.0:
            raise bad("threshold", "a probability threshold in [0, 1)")
        if c["adaptive_margin"] is not None and float(c["adaptive_margin"]) < 0:
            raise bad("adaptive_margin", "give a non-negative margin or null")
        if c["hint_threshold"] is not None and not 0.0 <= float(c["hint_threshold"]) < 1.0:
            raise bad("hint_threshold", "a probability threshold in [0, 1), or null for the "
                                        "one calibrated with the final scorer")
        self.check_ints(("n_prior", "n_lexical", "n_dense", "n_context"), 0, bad)
        if c["mention_hints"] is not None and (not isinstance(c["mention_hints"], str)
                                               or not c["mention_hints"].strip()):
            raise ValueError(Errors.KBE218.format(value=c["mention_hints"], name=self.name))

    @property
    def is_initialized(self) -> bool:
        return self.retriever is not None and self.reader is not None and self.kb is not None

    def _require(self) -> None:
        if not self.is_initialized:
            raise ValueError(Errors.KBE200.format(name=self.name))

    def torch_modules(self) -> List[Any]:
        return [m for m in (self.retriever, self.reader, self.onepass) if m is not None]

    def on_moved(self, device) -> None:
        self._set_runtime()

    # ------------------------------------------------------------ set-up
    def initialize(
        self,
        get_examples: Optional[Callable[[], Iterable[Example]]] = None,
        *,
        nlp: Optional[Language] = None,
        kb_loader: Optional[Callable[..., Any]] = None,
        retriever_path: Optional[str] = None,
        reader_path: Optional[str] = None,
        reencode_kb: bool = False,
    ) -> None:
        """Load the models and the KB.

        ``retriever_path``/``reader_path``: folders written by ``entqa train-retriever``
        / ``train-reader`` (default: warm start from the architectures' ``name``).
        ``kb_loader``: e.g. ``spacy_kbnlp.DenseKBFromDisk.v1`` (default: the ``kb``
        setting, else the KB the component already has, e.g. loaded with it). With ``reencode_kb`` a KB built with another encoder is re-encoded
        with the retriever (once); otherwise such a KB is an error (KBE001)."""
        if get_examples is not None:
            validate_get_examples(get_examples, "EntQALinker.initialize")
        from ..kb.dense_kb import DenseKB

        device = self.device
        self.retriever = self.retriever_spec.build(retriever_path, device=device)
        self.reader = self.reader_spec.build(reader_path, device=device, name=self.name)
        self.retriever_spec, self.reader_spec = self.retriever.spec, self.reader.spec
        if kb_loader is not None:
            kb = kb_loader(self.vocab) if callable(kb_loader) else kb_loader
        elif self.cfg["kb"]:
            kb = DenseKB.from_disk(self.cfg["kb"])
        elif self.kb is not None:  # loaded with the pipeline: keep it
            kb = self.kb
        else:
            raise ValueError(Errors.KBE200.format(name=self.name))
        self.set_kb(kb, reencode=reencode_kb)

    def set_kb(self, kb, *, reencode: bool = False) -> None:
        """Use ``kb`` (a DenseKB): check (or re-encode) its vectors for the dual score,
        or compute the entity cache of the other score functions. Entity texts are
        encoded here, once."""
        if len(kb) == 0:
            raise ValueError(Errors.KBE204.format(name=self.name))
        self._fingerprint = retriever_fingerprint(self.retriever)
        if self.retriever.spec.score.kind == "dual":
            adapter = RetrieverEntityEncoder(self.retriever, self._fingerprint)
            if reencode and kb.encoder_name != self._fingerprint:
                kb.reencode(adapter, show_progress=False)
            kb.check_encoder(adapter, user=f"component '{self.name}'")
            self.entity_cache = None
        else:
            pieces = entity_pieces(self.retriever.tokenizer, kb.texts(),
                                   self.retriever.spec.max_entity_pieces)
            self.entity_cache = encode_entity_texts(self.retriever, pieces,
                                                    device=self.device)
        self.kb = kb
        self.priors = PriorTable().add_kb(kb)
        self._after_load()

    def _after_load(self) -> None:
        self._lexical = None
        self._ent_pieces = {}
        self._ids = self.kb.ids
        rt, rd = self.retriever.tokenizer, self.reader.tokenizer
        self._same_tokenizer = (type(rt) is type(rd) and rt.vocab_size == rd.vocab_size and
                                word_pieces(rt, ["Zürich", "linking"]) ==
                                word_pieces(rd, ["Zürich", "linking"]))
        self._set_runtime()

    def _set_runtime(self) -> None:
        """The models that predict: int8-quantized copies on CPU with ``quantize``."""
        self._runtime_reader = self.reader
        self._runtime_retriever = self.retriever
        if self.cfg["quantize"] and self.device.type == "cpu":
            self._runtime_reader = quantize_dynamic(self.reader)
            self._runtime_retriever = quantize_dynamic(self.retriever)

    # ------------------------------------------------------------ prediction
    def _entity_pieces(self, row: int) -> List[int]:
        got = self._ent_pieces.get(row)
        if got is None:
            text = self.kb.text(self._ids[row])
            got = entity_pieces(self.reader.tokenizer, [text], self.reader.spec.max_entity_pieces)[0]
            self._ent_pieces[row] = got
        return got

    def passages(self, docs: Sequence[Doc], skip: Sequence[bool] = ()
                 ) -> Iterator[Tuple[Passage, Optional[Passage]]]:
        """(retriever passage, reader passage) pairs over every doc (but those whose
        ``skip`` is true), as :meth:`retrieve` takes them; the reader's is None when
        both models share a tokenizer."""
        self._require()
        c = self.cfg
        for i, doc in enumerate(docs):
            if not doc.text.strip() or (skip and skip[i]):
                continue
            dp = doc_pieces(self.retriever.tokenizer, doc, c["topic"], c["topic_length"])
            dp2 = None if self._same_tokenizer else doc_pieces(self.reader.tokenizer, doc,
                                                               c["topic"], c["topic_length"])
            ps = make_passages(i, doc, dp, c["passage_length"], c["passage_stride"])
            ps2 = (make_passages(i, doc, dp2, c["passage_length"], c["passage_stride"])
                   if dp2 is not None else [None] * len(ps))
            yield from zip(ps, ps2)

    def retrieve(self, passages: Sequence[Passage]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Top-``top_k`` (scores, KB rows) per passage (rows -1 where fewer)."""
        self.place()
        model = self._runtime_retriever
        cls, sep, pad = special_ids(self.retriever.tokenizer)
        seqs = [passage_query(p, cls, sep, self.retriever.spec.max_passage_pieces) for p in passages]
        batch = Batch.pad(seqs, [[0] * len(s) for s in seqs], pad).to_torch(self.device)
        k = min(self.cfg["top_k"], len(self.kb))
        with torch.inference_mode():
            p, pm = model.encode_passages(batch)
            if self.entity_cache is None:
                scores, rows = self.kb.search_rows(p[:, 0].float().cpu().numpy(), k)
                scale = self.retriever.score_fn.scale
                return numpy.where(rows >= 0, scores * scale, -numpy.inf), rows
            reps, mask = self.entity_cache
            return topk_exhaustive(model, p, pm, reps, mask, k)

    def _select(self, scores: numpy.ndarray, rows: numpy.ndarray) -> List[List[int]]:
        """Candidates per passage after adaptive K (score within ``adaptive_margin``
        of the best, at least ``min_k``)."""
        margin = self.cfg["adaptive_margin"]
        out = []
        for s, r in zip(scores, rows):
            keep = [int(x) for x in r if x >= 0]
            if margin is not None and keep:
                n = int(numpy.sum(s[: len(keep)] >= s[0] - float(margin)))
                keep = keep[: max(n, self.cfg["min_k"])]
            out.append(keep)
        return out

    def _read(self, passages: Sequence[Passage], cands: Sequence[Sequence[int]],
              result: List[DocLinks]) -> None:
        """Run the reader over ``passages`` with their candidate rows and add the
        links above the threshold to ``result``."""
        c = self.cfg
        spec = self.reader.spec
        per_seq = 1 if not spec.packed else spec.candidates_per_sequence
        groups: List[List[int]] = [[]]
        n_seqs = 0
        for i, cand in enumerate(cands):
            need = -(-len(cand) // per_seq) if cand else 0
            if groups[-1] and n_seqs + need > c["reader_batch_size"]:
                groups.append([])
                n_seqs = 0
            groups[-1].append(i)
            n_seqs += need
        ids = self._ids
        for group in groups:
            group = [i for i in group if cands[i]]
            if not group:
                continue
            gp = [passages[i] for i in group]
            gc = [[self._entity_pieces(r) for r in cands[i]] for i in group]
            inputs = build_inputs(spec, self.reader.tokenizer, gp, gc)
            with torch.inference_mode():
                start, end, rank = self._runtime_reader(inputs)
            out = reader_probs(start, end, rank, inputs.pairs, len(gp))
            spans = top_spans(out.start_logp, out.end_logp, spec.max_span_words, c["top_p"])
            by_passage: Dict[int, List[int]] = {}
            for r, (pi, _) in enumerate(out.pairs):
                by_passage.setdefault(pi, []).append(r)
            for r, (pi, ci) in enumerate(out.pairs):
                for s, e, p_span in spans[r]:
                    score = float(out.rerank_p[r]) * p_span
                    if score <= c["threshold"]:
                        continue
                    passage = gp[pi]
                    alts = []
                    for r2 in by_passage[pi]:
                        p2 = float(out.rerank_p[r2] * numpy.exp(out.start_logp[r2, s + 1] +
                                                                out.end_logp[r2, e]))
                        alts.append([ids[cands[group[pi]][out.pairs[r2][1]]], p2])
                    own = ids[cands[group[pi]][ci]]
                    alts.sort(key=lambda x: -x[1])
                    alts = _keep_own(alts, own, score, c["n_alternatives"])
                    result[passage.doc_index].add(passage.start + s, passage.start + e,
                                                  own, score, alts)

    # ------------------------------------------------------------ hinted mode
    @property
    def kb_ids(self) -> List[str]:
        """Entity ids of the KB in row order."""
        self._require()
        return self._ids

    @property
    def lexical(self) -> LexicalIndex:
        """Exact names/aliases and BM25 over them (built once per KB)."""
        if self._lexical is None:
            self._lexical = LexicalIndex(self.kb)
        return self._lexical

    def get_final_scorer(self) -> FinalScorer:
        """The fitted final scorer, or the one that ships in the package."""
        if self.final_scorer is None:
            self.final_scorer = FinalScorer.from_disk(BUNDLED_SCORER)
        return self.final_scorer

    @property
    def hint_threshold(self) -> float:
        """``hint_threshold``, or (null) the threshold calibrated with the final scorer."""
        if self.cfg["hint_threshold"] is not None:
            return float(self.cfg["hint_threshold"])
        return float(self.get_final_scorer().meta.get("hint_threshold", 0.5))

    def set_priors(self, priors: PriorTable) -> None:
        self.priors = priors

    def set_final_scorer(self, scorer: FinalScorer, threshold: Optional[float] = None) -> None:
        self.final_scorer = scorer
        if threshold is not None:
            scorer.meta["hint_threshold"] = float(threshold)
            self.cfg["hint_threshold"] = None  # the scorer's own calibrated threshold

    def hinted_mentions(self, docs: Sequence[Doc], priors: Optional[PriorTable] = None):
        """Hinted mentions of ``docs`` with their candidates and features
        (:func:`spacy_kbnlp.linking.hinted.mention_features`); docs without hints
        have none."""
        c = self.cfg
        self.place()
        priors = priors if priors is not None else self.priors
        spans = [merge_hints(d, hint_spans(d, c["mention_hints"]), priors) for d in docs]
        if c["alias_mentions"]:
            spans = [sorted(ss + alias_spans(d, priors, ss), key=lambda x: (x.start, x.end))
                     if hint_source_ready(d, c["mention_hints"]) else ss
                     for d, ss in zip(docs, spans)]
        mentions = mention_features(
            self.kb, priors, self.lexical, self.retriever,
            docs, spans, context_length=c["context_length"],
            max_pieces=min(512, 2 * c["context_length"] + 2), batch_size=c["batch_size"],
            n_prior=c["n_prior"], n_lexical=c["n_lexical"], n_dense=c["n_dense"],
            n_context=c["n_context"], device=self.device)
        if self.onepass is not None and mentions:
            add_reader_features(self.onepass, mentions, self.kb.vectors)
        return mentions

    def set_onepass(self, reader) -> None:
        """Use a one-pass reader's scores as final-scorer features (None: no reader)."""
        self.onepass = reader

    def _link_hinted(self, docs: Sequence[Doc], result: List[DocLinks]) -> None:
        scorer = self.get_final_scorer()
        scorer.check(has_reader=self.onepass is not None)
        ids = self._ids
        threshold = self.hint_threshold
        n_alt = self.cfg["n_alternatives"]
        for m in self.hinted_mentions(docs):
            probs = scorer.link_probs(m.features)
            order = numpy.argsort(-probs, kind="stable")
            best = int(order[0])
            if probs[best] <= threshold:
                continue
            alts = [[ids[m.rows[o]], float(probs[o])] for o in order[:n_alt]]
            result[m.doc_index].add(m.start, m.end, ids[m.rows[best]], float(probs[best]), alts)
            if m.label:
                result[m.doc_index].labels[(m.start, m.end)] = m.label

    def predict(self, docs: Iterable[Doc]) -> List[DocLinks]:
        """Links of every doc (does not touch the docs). Docs with mention hints
        (``mention_hints``) take the hinted path; the others are retrieved and read,
        their passages processed together in batches of ``batch_size``, so memory
        stays bounded for long documents."""
        self._require()
        self.place()
        docs = list(docs)
        result = [DocLinks() for _ in docs]
        hinted = [hint_source_ready(d, self.cfg["mention_hints"]) for d in docs]
        if any(hinted) and self.retriever.spec.score.kind != "dual":
            if not self._warned_score:
                warnings.warn(Warnings.KBW201.format(name=self.name,
                                                     kind=self.retriever.spec.score.kind))
                self._warned_score = True
            hinted = [False] * len(docs)
        if any(hinted):
            self._link_hinted(docs, result)  # docs without hints have no hinted spans
        ids = self._ids
        bs = self.cfg["batch_size"]
        store = self.cfg["store_candidates"]
        chunk: List[Tuple[Passage, Optional[Passage]]] = []

        def flush():
            ps = [p for p, _ in chunk]
            scores, rows = self.retrieve(ps)
            cands = self._select(scores, rows)
            for p, s, cand in zip(ps, scores, cands):
                result[p.doc_index].passages.append(
                    {"start": p.start, "end": p.end,
                     "candidates": [[ids[r], float(x)] for r, x in zip(cand[:store], s)]})
            self._read([q if q is not None else p for p, q in chunk], cands, result)
            chunk.clear()

        for pair in self.passages(docs, hinted):
            chunk.append(pair)
            if len(chunk) >= bs:
                flush()
        if chunk:
            flush()
        return result

    def set_annotations(self, docs: Iterable[Doc], preds: List[DocLinks]) -> None:
        c = self.cfg
        for doc, pred in zip(docs, preds):
            set_links(doc, pred.final(c["one_entity_per_span"]), key=c["spans_key"],
                      label=c["label"], set_ents=c["set_ents"],
                      overwrite_ents=c["overwrite_ents"], labels=pred.labels)
            doc._.entqa_candidates = pred.passages

    # ------------------------------------------------------------ scoring
    def score_settings(self, settings: Dict[str, Any]) -> Dict[str, Any]:
        """``el_*`` scores of ``doc.spans[spans_key]``, InKB relative to this KB."""
        if self.kb is not None and settings.get("kb_ids") is None:
            settings["kb_ids"] = set(self._ids)
        return settings

    # ------------------------------------------------------------ serialization
    def before_save(self) -> None:
        self._require()

    def serializers(self) -> Dict[str, Callable[[Path], None]]:
        return {"retriever": lambda p: save_retriever(self.retriever, p),
                "reader": lambda p: save_reader(self.reader, p),
                "kb": lambda p: self.kb.to_disk(p),
                CACHE_DIR: self._write_cache,
                HINTS_DIR: self._write_hints}

    def _write_cache(self, cache: Path) -> None:
        if self.entity_cache is None:
            return
        cache.mkdir(exist_ok=True)
        numpy.save(cache / "reps.npy", self.entity_cache[0].astype("float16"))
        numpy.save(cache / "mask.npy", self.entity_cache[1])
        srsly.write_json(cache / "meta.json", {"retriever": self._fingerprint,
                                               "count": len(self.kb)})
        write_manifest(cache)

    def _write_hints(self, hints: Path) -> None:
        hints.mkdir(exist_ok=True)
        if self.priors is not None:
            srsly.write_gzip_json(hints / PRIORS_FILE, self.priors.to_dict())
        if self.final_scorer is not None:
            self.final_scorer.to_disk(hints)
        if self.onepass is not None:
            save_onepass(self.onepass, hints / ONEPASS_DIR)

    def deserializers(self) -> Dict[str, Callable[[Path], None]]:
        return {"retriever": self._read_retriever, "reader": self._read_reader,
                "kb": self._read_kb, CACHE_DIR: self._read_cache, HINTS_DIR: self._read_hints}

    def _read_retriever(self, p: Path) -> None:
        self.retriever = load_retriever(p, device=self.device)

    def _read_reader(self, p: Path) -> None:
        reader = load_reader(p, device=self.device)
        self.reader_spec.check_saved(reader.spec, p, self.name)
        self.reader = reader

    def _read_kb(self, p: Path) -> None:
        from ..kb.dense_kb import DenseKB

        self.kb = DenseKB.from_disk(p)

    def _read_cache(self, cache: Path) -> None:
        self._fingerprint = retriever_fingerprint(self.retriever)
        if self.retriever.spec.score.kind == "dual":
            self.entity_cache = None
            return
        meta = srsly.read_json(cache / "meta.json")
        if meta.get("retriever") != self._fingerprint:
            raise ValueError(Errors.KBE211.format(name=self.name, cache=meta.get("retriever"),
                                                  retriever=self._fingerprint))
        check_manifest(cache)
        self.entity_cache = (numpy.load(cache / "reps.npy").astype("float32"),
                             numpy.load(cache / "mask.npy"))

    def _read_hints(self, hints: Path) -> None:
        self.final_scorer = (FinalScorer.from_disk(hints) if (hints / SCORER_META).exists()
                             else None)
        self.onepass = (load_onepass(hints / ONEPASS_DIR, device=self.device)
                        if (hints / ONEPASS_DIR / "spec.json").exists() else None)
        self.priors = (PriorTable.from_dict(srsly.read_gzip_json(hints / PRIORS_FILE))
                       if (hints / PRIORS_FILE).exists() else None)

    def after_load(self, path: Path) -> None:
        self.retriever_spec, self.reader_spec = self.retriever.spec, self.reader.spec
        if self.retriever.spec.score.kind == "dual":
            self.kb.check_encoder(RetrieverEntityEncoder(self.retriever, self._fingerprint),
                                  user=f"component '{self.name}'")
        if self.priors is None:
            self.priors = PriorTable().add_kb(self.kb)
        self._after_load()

    def after_bytes(self, path: Path) -> None:
        from ..kb.dense_kb import DenseKB

        # the KB was memory-mapped from the temporary folder: load it into memory
        self.kb = DenseKB.from_disk(path / "kb", mmap=False)
        self._after_load()
