"""``demo_retriever``: per-document in-context demonstrations (RUIE retrieval stage).

For each Doc the component retrieves the ``top_k`` demonstrations of its
``DemoStore`` and writes them, best first, to ``doc._.demonstrations`` as
``{"id", "text", "input", "target", "labels", "score"}``. Retrievers:

* ``bm25``: BM25 (``bm25s``) over the rendered inputs;
* ``dense``: the store's FAISS index queried with ``encoder``: the bundled MiniLM
  (zero-shot) or a RUIE-trained bi-encoder (``python -m spacy_kbnlp train-ruie``).

With ``leave_one_out`` (default) a Doc whose text is in the store never retrieves
itself (or a duplicate of its text), so the component can annotate training data.
The store comes from ``[initialize.components.<name>] store_path`` (built with
``python -m spacy_kbnlp build-demo-store``) or is built from the training examples.
It is saved inside the component directory, together with a non-default encoder.
"""
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

import srsly
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from spacy.vocab import Vocab

from ..encoders.hf import DEFAULT_ENCODER, HFEncoder
from ..errors import Errors, Warnings
from ..extensions import install_extensions
from ..retrieval.render import doc_key, render_input
from ..retrieval.store import RETRIEVERS, DemoStore
from .base import KBPipe

DEFAULT_ENCODER_CFG = {"@misc": "spacy_kbnlp.HFEncoder.v1", "name": None}


@Language.factory(
    "demo_retriever",
    assigns=["doc._.demonstrations"],
    default_config={"retriever": "bm25", "top_k": 5, "encoder": DEFAULT_ENCODER_CFG, "task": "re",
                    "input_format": "marked", "leave_one_out": True, "overwrite": True,
                    "preset": "flat"},
    default_score_weights={},
)
def make_demo_retriever(nlp: Language, name: str, retriever: str, top_k: int, encoder: HFEncoder,
                        task: str, input_format: str, leave_one_out: bool, overwrite: bool,
                        preset: str) -> "DemoRetriever":
    return DemoRetriever(nlp.vocab, name, retriever=retriever, top_k=top_k, encoder=encoder,
                         task=task, input_format=input_format, leave_one_out=leave_one_out,
                         overwrite=overwrite, preset=preset)


def save_encoder(encoder: HFEncoder, path: Path) -> None:
    """Write a (trained) encoder as a Hugging Face directory with safetensors weights."""
    from ..encoders.hf import save_hf_dir

    save_hf_dir(encoder.model, encoder.tokenizer, path)


class DemoRetriever(KBPipe):
    #: derived from the store (its rendering) and saved with it
    DERIVED = ("format_version", "task", "input_format")
    def __init__(self, vocab: Vocab, name: str, *, retriever: str, top_k: int,
                 encoder: Optional[HFEncoder], task: str, input_format: str,
                 leave_one_out: bool, overwrite: bool, preset: str):
        """Settings as in the factory's ``default_config`` (their one definition)."""
        install_extensions()
        if retriever not in RETRIEVERS:
            raise ValueError(Errors.KBE300.format(value=retriever, options=", ".join(RETRIEVERS)))
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(Errors.KBE312.format(value=top_k, setting="top_k",
                                                  why="give a positive integer"))
        self.vocab = vocab
        self.name = name
        self.scorer = None
        self.encoder = encoder if encoder is not None else HFEncoder()
        self.store: Optional[DemoStore] = None
        self._warned_empty = False
        self._saved_encoder: Dict[str, Any] = {}
        self.cfg: Dict[str, Any] = {"retriever": retriever, "top_k": top_k, "task": task,
                                    "input_format": input_format, "leave_one_out": leave_one_out,
                                    "overwrite": overwrite, "preset": preset, "format_version": 1}

    # --- set-up
    def initialize(self, get_examples: Optional[Callable[[], Iterable[Example]]] = None, *,
                   nlp: Optional[Language] = None,
                   store_path: Optional[Union[str, Path]] = None) -> None:
        """Load the store from ``store_path`` or build it from the gold side of
        ``get_examples()``; embed it when the retriever is dense."""
        if store_path is not None:
            self.set_store(DemoStore.from_disk(store_path), path=store_path)
            return
        validate_get_examples(get_examples, "DemoRetriever.initialize")
        docs = [eg.reference for eg in get_examples()]
        store = DemoStore.from_docs(docs, task=self.cfg["task"],
                                    input_format=self.cfg["input_format"],
                                    preset=self.cfg["preset"])
        self.set_store(store)

    def set_store(self, store: DemoStore, path: Union[str, Path] = "<memory>") -> None:
        """Use ``store``; for the dense retriever embed it with the component's encoder
        unless it already was (then the encoders must match, KBE302)."""
        if self.cfg["retriever"] == "dense" and len(store):
            if store.index is None:
                store.build_dense(self.encoder)
            else:
                store.check_encoder(self.encoder, path)
        self.store = store
        self.cfg["input_format"] = store.input_format
        self.cfg["task"] = store.task

    # --- prediction
    def predict(self, docs: List[Doc]) -> List[List[Dict[str, Any]]]:
        """Top-k demonstration records with ``score`` per doc (no Doc is changed)."""
        if self.store is None:
            raise ValueError(Errors.KBE304.format(name=self.name))
        if not len(self.store):
            if not self._warned_empty:
                warnings.warn(Warnings.KBW301.format(name=self.name))
                self._warned_empty = True
            return [[] for _ in docs]
        queries = [render_input(doc, self.store.input_format) for doc in docs]
        excl = [doc_key(doc) for doc in docs] if self.cfg["leave_one_out"] else None
        hits = self.store.search(queries, self.cfg["top_k"], retriever=self.cfg["retriever"],
                                 encoder=self.encoder, exclude_keys=excl)
        out = []
        for doc_hits in hits:
            recs = []
            for row, score in doc_hits:
                rec = self.store.records[row]
                recs.append({"id": rec["id"], "text": rec["text"], "input": rec["input"],
                             "target": rec["target"], "labels": list(rec["labels"]),
                             "score": round(float(score), 6)})
            out.append(recs)
        return out

    def set_annotations(self, docs: List[Doc], preds: List[List[Dict[str, Any]]]) -> None:
        for doc, recs in zip(docs, preds):
            if self.cfg["overwrite"] or not doc._.demonstrations:
                doc._.demonstrations = recs

    # --- serialization
    def _has_own_encoder(self) -> bool:
        return self.encoder.name != DEFAULT_ENCODER

    def derived_cfg(self) -> Dict[str, Any]:
        return dict(super().derived_cfg(), encoder=self.encoder.name,
                    encoder_pooling=self.encoder.pooling)

    def read_cfg(self, path: Path) -> None:
        super().read_cfg(path)
        self._saved_encoder = srsly.read_json(path) if path.exists() else {}

    def serializers(self) -> Dict[str, Callable[[Path], None]]:
        out: Dict[str, Callable[[Path], None]] = {}
        if self.store is not None:
            out["store"] = self.store.to_disk
        if self._has_own_encoder():
            out["encoder"] = lambda p: save_encoder(self.encoder, p)
        return out

    def deserializers(self) -> Dict[str, Callable[[Path], None]]:
        return {"encoder": self._read_encoder, "store": self._read_store}

    def _read_encoder(self, p: Path) -> None:
        if p.exists():
            saved = self._saved_encoder
            self.encoder = HFEncoder(str(p), pooling=saved.get("encoder_pooling", "mean"))
            self.encoder.name = saved.get("encoder", self.encoder.name)

    def _read_store(self, p: Path) -> None:
        if p.exists():
            self.store = DemoStore.from_disk(p)
