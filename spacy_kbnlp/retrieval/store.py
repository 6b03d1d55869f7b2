"""Demonstration store: annotated Docs as retrievable in-context demonstrations.

Each demonstration keeps ``id``, ``key`` (leave-one-out key, see
``render.doc_key``), ``text``, ``input`` (the rendered input, ``render_input``),
``target`` (the annotation in the documented target format, ``render_target``)
and ``labels`` (the labels it carries; relation labels are directed by text order).
Retrieval is BM25 over the inputs (``bm25s``) or dense: inputs embedded by an
encoder (``HFEncoder``; the bundled MiniLM or a RUIE-trained bi-encoder) in the
foundation's FAISS ``VectorIndex`` (row number = vector id).

On disk (``to_disk``)::

    manifest.json    format version, task, input format, encoder name, dim, count
    records.jsonl    one demonstration per line
    index/           the VectorIndex (FAISS IO), only when built with an encoder

The BM25 index is rebuilt from the records on load.
"""
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.tokens import Doc

from ..errors import Errors
from .bm25 import BM25Index
from .render import (INPUT_FORMATS, TASKS, doc_key, doc_labels, render_input, render_target)

FORMAT_VERSION = 1
RETRIEVERS = ("bm25", "dense")
Hit = Tuple[int, float]


def _check(value: str, options: Sequence[str], err) -> str:
    if value not in options:
        raise ValueError(err.format(value=value, options=", ".join(options)))
    return value


def demonstration_record(doc: Doc, task: str = "re", input_format: str = "marked",
                         idx: int = 0) -> Dict[str, Any]:
    """The store record of one annotated Doc."""
    source = doc._.source if isinstance(doc._.source, dict) else {}
    return {
        "id": str(source.get("id", idx)),
        "key": doc_key(doc),
        "text": doc.text,
        "input": render_input(doc, input_format),
        "target": render_target(doc, task),
        "labels": doc_labels(doc, task),
    }


class DemoStore:
    """Demonstrations + BM25 + (optional) dense FAISS index. See the module doc."""

    def __init__(self, records: Optional[List[Dict[str, Any]]] = None, *, task: str = "re",
                 input_format: str = "marked", encoder_name: Optional[str] = None,
                 dim: int = 0, preset: str = "flat"):
        self.task = _check(task, TASKS, Errors.KBE301)
        if input_format not in INPUT_FORMATS:
            raise ValueError(Errors.KBE312.format(value=input_format, setting="input_format",
                                                  why=f"choose one of {', '.join(INPUT_FORMATS)}"))
        self.input_format = input_format
        self.records: List[Dict[str, Any]] = list(records or [])
        self.encoder_name = encoder_name
        self.dim = dim
        self.preset = preset
        self.index = None  # VectorIndex or None
        self._bm25: Optional[BM25Index] = None
        self._rows_by_key: Dict[str, List[int]] = {}
        self._reindex_keys()

    # --- building
    @classmethod
    def from_docs(cls, docs: Iterable[Doc], *, task: str = "re", input_format: str = "marked",
                  encoder=None, preset: str = "flat", show_progress: bool = False) -> "DemoStore":
        """Store of ``docs``; with ``encoder`` (an ``HFEncoder``) also the dense index."""
        store = cls(task=task, input_format=input_format, preset=preset)
        store.records = [demonstration_record(doc, task, input_format, i)
                         for i, doc in enumerate(docs)]
        store._reindex_keys()
        if encoder is not None:
            store.build_dense(encoder, show_progress=show_progress)
        return store

    def build_dense(self, encoder, *, show_progress: bool = False) -> "DemoStore":
        """(Re)embed every input with ``encoder`` and rebuild the dense index."""
        vectors = encoder.encode([r["input"] for r in self.records], show_progress=show_progress,
                                 desc="Embedding demonstrations")
        self.set_vectors(vectors, encoder.name, int(encoder.dim))
        return self

    def set_vectors(self, vectors: numpy.ndarray, encoder_name: str, dim: int) -> None:
        from ..kb.index import VectorIndex

        self.encoder_name = encoder_name
        self.dim = dim
        self.index = VectorIndex.build(numpy.ascontiguousarray(vectors, dtype="float32"),
                                       ids=numpy.arange(len(vectors), dtype="int64"),
                                       preset=self.preset) if len(vectors) else None

    def _reindex_keys(self) -> None:
        self._rows_by_key = {}
        for i, rec in enumerate(self.records):
            self._rows_by_key.setdefault(rec["key"], []).append(i)
        self._bm25 = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            self._bm25 = BM25Index([r["input"] for r in self.records])
        return self._bm25

    def check_encoder(self, encoder, path: Union[str, Path] = "<memory>") -> None:
        """KBE302 when the dense index was built with another encoder than ``encoder``."""
        if self.index is None:
            raise ValueError(Errors.KBE305)
        if encoder.name != self.encoder_name or int(encoder.dim) != int(self.dim):
            raise ValueError(Errors.KBE302.format(path=path, store_encoder=self.encoder_name,
                                                  store_dim=self.dim, encoder=encoder.name,
                                                  dim=encoder.dim))

    # --- search
    def search(self, queries: Sequence[str], k: int, *, retriever: str = "bm25", encoder=None,
               exclude_keys: Optional[Sequence[Optional[str]]] = None,
               query_vectors: Optional[numpy.ndarray] = None) -> List[List[Hit]]:
        """Top-``k`` ``(row, score)`` per query, best first, leaving out every row whose
        key is the query's entry of ``exclude_keys`` (leave-one-out)."""
        _check(retriever, RETRIEVERS, Errors.KBE300)
        nq = len(queries)
        if nq == 0 or k <= 0 or not self.records:
            return [[] for _ in range(nq)]
        excl = list(exclude_keys) if exclude_keys is not None else [None] * nq
        extra = max((len(self._rows_by_key.get(key, ())) for key in excl if key), default=0)
        kk = min(k + extra, len(self.records))
        if retriever == "bm25":
            scores, rows = self.bm25.search(queries, kk)
        else:
            if self.index is None:
                raise ValueError(Errors.KBE305)
            if query_vectors is None:
                query_vectors = encoder.encode(list(queries))
            scores, rows = self.index.search(numpy.ascontiguousarray(query_vectors, dtype="float32"), kk)
        out: List[List[Hit]] = []
        for i in range(nq):
            hits = [(int(r), float(s)) for r, s in zip(rows[i], scores[i])
                    if r >= 0 and (excl[i] is None or self.records[int(r)]["key"] != excl[i])]
            out.append(hits[:k])
        return out

    # --- serialization
    def to_disk(self, path: Union[str, Path]) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "manifest.json", {
            "format_version": FORMAT_VERSION, "task": self.task, "input_format": self.input_format,
            "encoder": self.encoder_name, "dim": self.dim, "preset": self.preset,
            "count": len(self.records), "dense": self.index is not None})
        srsly.write_jsonl(path / "records.jsonl", self.records)
        if self.index is not None:
            self.index.to_disk(path / "index")

    @classmethod
    def from_disk(cls, path: Union[str, Path]) -> "DemoStore":
        path = Path(path)
        if not (path / "manifest.json").exists() or not (path / "records.jsonl").exists():
            raise FileNotFoundError(Errors.KBE303.format(path=path,
                                                         files="manifest.json, records.jsonl"))
        manifest = srsly.read_json(path / "manifest.json")
        store = cls(list(srsly.read_jsonl(path / "records.jsonl")), task=manifest["task"],
                    input_format=manifest["input_format"], encoder_name=manifest.get("encoder"),
                    dim=int(manifest.get("dim") or 0), preset=manifest.get("preset", "flat"))
        if manifest.get("dense") and (path / "index").exists():
            from ..kb.index import VectorIndex

            store.index = VectorIndex.from_disk(path / "index")
        return store
