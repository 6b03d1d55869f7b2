"""DenseKB: entity records + their vectors + a FAISS index + a manifest.

```python
from spacy_kbnlp.encoders.hf import HFEncoder
from spacy_kbnlp.kb.dense_kb import DenseKB
from spacy_kbnlp.kb.records import read_entities

encoder = HFEncoder()                       # bundled all-MiniLM-L6-v2
kb = DenseKB.build(read_entities("assets/demo/kb.jsonl"), encoder, preset="flat")
scores, ids = kb.search_text(["the capital of France"], k=5, encoder=encoder)
kb.to_disk("training/demo_kb")
kb = DenseKB.from_disk("training/demo_kb")  # vectors memory-mapped, checksums verified
kb.check_encoder(encoder)                   # KBE001 if built with another encoder / dim
```

On disk (no pickle): ``manifest.json``, ``records.jsonl`` (the entity JSONL schema,
row order), ``vectors.npy`` (float32 or float16, memory-mappable), ``keys.npy``
(the int64 index id of each row) and ``index/`` (``VectorIndex``: FAISS IO + JSON).

Rows and index ids: row ``i`` holds ``records[i]`` and ``vectors[i]``; its index id
``keys[i]`` is assigned once when the entity is added and never changes, and keys
increase with the row, so an index hit maps back to its row by binary search.
``add``/``remove``/``update`` change the index in place (no rebuild) and encode
only new or changed entity texts.
"""
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.util import registry

from ..about import __version__
from ..encoders.hf import canonical_name
from ..core.integrity import sha256_file
from ..errors import Errors, Warnings
from .index import INDEX_FILE, META_FILE, VectorIndex, normalize_rows, resolve_params
from .records import (DEFAULT_TEMPLATE, MANIFEST_FILE, RECORDS_FILE, EntityRecord, check_template,
                      dedupe_records, entity_text, read_entities, write_entities)

FORMAT_VERSION = 1
VECTORS_FILE = "vectors.npy"
KEYS_FILE = "keys.npy"
INDEX_DIR = "index"
DTYPES = ("float32", "float16")
CHECKSUM_FILES = (RECORDS_FILE, VECTORS_FILE, KEYS_FILE, f"{INDEX_DIR}/{INDEX_FILE}", f"{INDEX_DIR}/{META_FILE}")

PathLike = Union[str, Path]
Encoder = Any  # HFEncoder-like (encode/name/dim) or a function texts -> array


def _check_dtype(dtype: str) -> str:
    dtype = numpy.dtype(dtype).name if dtype not in DTYPES else dtype
    if dtype not in DTYPES:
        raise ValueError(Errors.KBE012.format(dtype=dtype))
    return dtype


def encoder_info(encoder: Encoder, encoder_name: Optional[str] = None) -> Dict[str, Any]:
    """Name (canonical), pooling, normalize and max_length of an encoder object;
    ``encoder_name`` names a plain function."""
    name = encoder_name if encoder_name is not None else getattr(encoder, "name", None)
    if name is None:
        raise ValueError(Errors.KBE015.format(obj=encoder))
    return {"encoder": canonical_name(name),
            "pooling": getattr(encoder, "pooling", None),
            "normalize": getattr(encoder, "normalize", None),
            "max_length": getattr(encoder, "max_length", None)}


def encode_texts(encoder: Encoder, texts: Sequence[str], *, batch_size: Optional[int] = None,
                 show_progress: bool = False, desc: str = "Encoding entities") -> numpy.ndarray:
    """Embed ``texts`` with an HFEncoder-like object (``encode(texts, batch_size=,
    show_progress=, desc=)``) or a plain function ``texts -> array``."""
    if hasattr(encoder, "encode"):
        try:
            out = encoder.encode(list(texts), batch_size=batch_size, show_progress=show_progress, desc=desc)
        except TypeError:  # an encoder without our keyword arguments
            out = encoder.encode(list(texts))
    elif callable(encoder):
        out = encoder(list(texts))
    else:
        raise ValueError(Errors.KBE015.format(obj=encoder))
    out = numpy.asarray(out, dtype="float32")
    if out.ndim != 2 or out.shape[0] != len(texts):
        raise ValueError(Errors.KBE002.format(shape=tuple(out.shape), what="the encoder output",
                                              expected=f"({len(texts)}, dim)"))
    return out


class DenseKB:
    """Entity records, their vectors and a FAISS index over them (see the module doc)."""

    def __init__(
        self,
        records: List[EntityRecord],
        vectors: numpy.ndarray,
        index: VectorIndex,
        keys: numpy.ndarray,
        *,
        encoder: str,
        template: str = DEFAULT_TEMPLATE,
        dtype: str = "float32",
        pooling: Optional[str] = None,
        normalize: bool = True,
        max_length: Optional[int] = None,
        next_key: Optional[int] = None,
    ):
        self._records = list(records)
        self._vectors = vectors
        self.index = index
        self.keys = numpy.asarray(keys, dtype="int64")
        self.encoder_name = canonical_name(encoder)
        check_template(template)
        self.template = template
        self.dtype = _check_dtype(dtype)
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.next_key = int(next_key if next_key is not None else (self.keys.max() + 1 if len(self.keys) else 0))
        self.encoder: Optional[Encoder] = None  # attached encoder for search_text/add/update
        self._row = {r.id: i for i, r in enumerate(self._records)}

    # --- construction
    @classmethod
    def build(
        cls,
        records: Iterable[EntityRecord],
        encoder: Encoder,
        *,
        preset: str = "flat",
        template: str = DEFAULT_TEMPLATE,
        dtype: str = "float32",
        batch_size: Optional[int] = None,
        show_progress: bool = True,
        encoder_name: Optional[str] = None,
        seed: int = 0,
        **index_params: Any,
    ) -> "DenseKB":
        """Encode ``entity_text(record, template)`` of every record with ``encoder``
        and index the vectors with ``preset``. ``encoder`` is an HFEncoder-like
        object or a function ``texts -> array`` (then give ``encoder_name``)."""
        records = _unique(records)
        if not records:
            raise ValueError(Errors.KBE026.format(where=""))
        info = encoder_info(encoder, encoder_name)
        check_template(template)
        _check_dtype(dtype)
        # fail on a bad preset or parameter before the (long) encoding
        resolve_params(preset, int(getattr(encoder, "dim", 0) or 0), len(records), index_params)
        texts = [entity_text(r, template) for r in records]
        vectors = encode_texts(encoder, texts, batch_size=batch_size, show_progress=show_progress)
        kb = cls.from_vectors(records, vectors, encoder_name=info["encoder"], preset=preset,
                              template=template, dtype=dtype, pooling=info["pooling"],
                              max_length=info["max_length"], seed=seed, show_progress=show_progress,
                              **index_params)
        kb.encoder = encoder if hasattr(encoder, "encode") else None
        return kb

    @classmethod
    def from_vectors(
        cls,
        records: Iterable[EntityRecord],
        vectors: Any,
        *,
        encoder_name: str,
        preset: str = "flat",
        template: str = DEFAULT_TEMPLATE,
        dtype: str = "float32",
        pooling: Optional[str] = None,
        normalize: bool = True,
        max_length: Optional[int] = None,
        seed: int = 0,
        show_progress: bool = False,
        **index_params: Any,
    ) -> "DenseKB":
        """A KB over precomputed ``vectors`` (row i belongs to record i). With
        ``normalize`` (default) rows are L2-normalized, so scores are cosines."""
        records = _unique(records)
        arr = _store_vectors(vectors, len(records), _check_dtype(dtype), normalize)
        keys = numpy.arange(len(records), dtype="int64")
        index = _build_index(arr, keys, preset, seed=seed, show_progress=show_progress, **index_params)
        return cls(records, arr, index, keys, encoder=encoder_name, template=template, dtype=dtype,
                   pooling=pooling, normalize=normalize, max_length=max_length, next_key=len(records))

    # --- re-encoding (e.g. after fine-tuning the encoder)
    def reencode(
        self,
        encoder: Encoder,
        *,
        encoder_name: Optional[str] = None,
        template: Optional[str] = None,
        batch_size: Optional[int] = None,
        show_progress: bool = True,
        preset: Optional[str] = None,
        **index_params: Any,
    ) -> "DenseKB":
        """Re-embed every entity with ``encoder`` (object or function + ``encoder_name``)
        and rebuild the index (same preset and parameters unless given). Keys stay."""
        info = encoder_info(encoder, encoder_name)
        if template is not None:
            check_template(template)
            self.template = template
        vectors = encode_texts(encoder, self.texts(), batch_size=batch_size, show_progress=show_progress)
        self.set_vectors(vectors, encoder_name=info["encoder"], pooling=info["pooling"],
                         max_length=info["max_length"], preset=preset, **index_params)
        self.encoder = encoder if hasattr(encoder, "encode") else None
        return self

    def set_vectors(
        self,
        vectors: Any,
        *,
        encoder_name: str,
        pooling: Optional[str] = None,
        max_length: Optional[int] = None,
        preset: Optional[str] = None,
        **index_params: Any,
    ) -> None:
        """Replace all vectors (row order) by precomputed ones of a (new) encoder
        and rebuild the index."""
        self._vectors = _store_vectors(vectors, len(self), self.dtype, self.normalize)
        self.encoder_name = canonical_name(encoder_name)
        self.pooling = pooling
        self.max_length = max_length
        self.rebuild_index(preset, **index_params)

    def rebuild_index(self, preset: Optional[str] = None, *, seed: int = 0, **index_params: Any) -> None:
        """Rebuild the index from the stored vectors (e.g. after the KB grew a lot,
        or with another preset). Without arguments the requested preset and its
        explicit parameters are kept."""
        if preset is None:
            preset = self.index.requested_preset
            index_params = {**self.index.requested_params, **index_params}
        self.index = _build_index(self._vectors, self.keys, preset, seed=seed, **index_params)

    # --- lookups
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, eid: object) -> bool:
        return eid in self._row

    def __iter__(self):
        return iter(self._records)

    @property
    def ids(self) -> List[str]:
        """Entity ids in row order."""
        return [r.id for r in self._records]

    @property
    def records(self) -> List[EntityRecord]:
        return list(self._records)

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def preset(self) -> str:
        return self.index.preset

    def get(self, eid: str) -> EntityRecord:
        return self._records[self.row(eid)]

    def record_at(self, row: int) -> EntityRecord:
        """The record of row ``row`` (e.g. of a ``search_rows`` hit)."""
        return self._records[row]

    def row(self, eid: str) -> int:
        try:
            return self._row[eid]
        except KeyError:
            raise KeyError(Errors.KBE003.format(ids=[eid], n=len(self))) from None

    def rows(self, ids: Iterable[str]) -> numpy.ndarray:
        ids = list(ids)
        missing = [i for i in ids if i not in self._row]
        if missing:
            raise KeyError(Errors.KBE003.format(ids=missing[:10], n=len(self)))
        return numpy.asarray([self._row[i] for i in ids], dtype="int64")

    @property
    def vectors(self) -> numpy.ndarray:
        """All vectors as float32 ``(n, dim)``: the stored (possibly memory-mapped)
        array when it is float32, else a float32 copy."""
        return self._vectors if self._vectors.dtype == numpy.float32 else self._vectors.astype("float32")

    @property
    def stored_vectors(self) -> numpy.ndarray:
        """The vectors as stored (float16 or float32, possibly memory-mapped)."""
        return self._vectors

    def get_vectors(self, ids: Iterable[str]) -> numpy.ndarray:
        """float32 vectors of ``ids``."""
        return numpy.asarray(self._vectors[self.rows(ids)], dtype="float32")

    def vector(self, eid: str) -> numpy.ndarray:
        return numpy.asarray(self._vectors[self.row(eid)], dtype="float32")

    def text(self, eid: str) -> str:
        return entity_text(self.get(eid), self.template)

    def texts(self) -> List[str]:
        """Entity texts by the template, in row order."""
        return [entity_text(r, self.template) for r in self._records]

    # --- search
    def search_rows(self, query_vectors: Any, k: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """``(scores float32 [n, k'], rows int64 [n, k'])`` with ``k' = min(k, len)``;
        rows are -1 (score -inf) where an approximate index found fewer."""
        q = numpy.asarray(query_vectors, dtype="float32")
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(Errors.KBE002.format(shape=tuple(q.shape), what="the KB",
                                                  expected=f"(n, {self.dim})"))
        if self.normalize:
            q = normalize_rows(q.copy())
        kk = min(int(k), len(self))
        if kk <= 0:
            return numpy.zeros((q.shape[0], 0), "float32"), numpy.zeros((q.shape[0], 0), "int64")
        scores, labels = self.index.search(q, kk)
        rows = numpy.searchsorted(self.keys, labels)
        rows = numpy.minimum(rows, len(self) - 1)
        found = (labels >= 0) & (self.keys[rows] == labels)
        return scores, numpy.where(found, rows, -1)

    def search(self, query_vectors: Any, k: int) -> Tuple[numpy.ndarray, List[List[str]]]:
        """Top-``k`` entities per query vector, best first: ``(scores float32 [n, k'],
        ids)`` where ``ids[i]`` lists entity id strings (``k' = min(k, len(kb))``;
        an approximate index may return fewer, then the scores row ends in -inf)."""
        scores, rows = self.search_rows(query_vectors, k)
        recs = self._records
        return scores, [[recs[r].id for r in row if r >= 0] for row in rows.tolist()]

    def search_text(self, texts: Sequence[str], k: int, encoder: Optional[Encoder] = None,
                    **encode_kwargs) -> Tuple[numpy.ndarray, List[List[str]]]:
        """Encode ``texts`` with ``encoder`` (default: the attached one; checked
        against the manifest) and search."""
        encoder = self._encoder(encoder)
        return self.search(encode_texts(encoder, list(texts), desc="Encoding queries", **encode_kwargs), k)

    def _encoder(self, encoder: Optional[Encoder]) -> Encoder:
        encoder = encoder if encoder is not None else self.encoder
        if encoder is None:
            raise ValueError(Errors.KBE016.format(kb_encoder=self.encoder_name))
        if hasattr(encoder, "encode"):
            self.check_encoder(encoder)
        return encoder

    def check_encoder(self, encoder: Encoder, *, user: str = "the caller", where: str = "") -> None:
        """KBE001 unless ``encoder`` (object with ``name`` and ``dim``, or a
        ``(name, dim)`` pair) is the encoder the KB was built with."""
        if isinstance(encoder, tuple):
            name, dim, pooling = canonical_name(encoder[0]), int(encoder[1]), None
        else:
            name, dim = canonical_name(getattr(encoder, "name", None)), int(encoder.dim)
            pooling = getattr(encoder, "pooling", None)
        same_pooling = pooling is None or self.pooling is None or pooling == self.pooling
        if name != self.encoder_name or dim != self.dim or not same_pooling:
            show = (lambda n, p: n if same_pooling else f"{n}, {p} pooling")
            raise ValueError(Errors.KBE001.format(
                where=f" at {where}" if where else "", kb_encoder=show(self.encoder_name, self.pooling),
                kb_dim=self.dim, user=user, encoder=show(name, pooling), dim=dim))

    # --- incremental changes
    def add(self, records: Iterable[EntityRecord], vectors: Any = None, *,
            encoder: Optional[Encoder] = None, show_progress: bool = False) -> None:
        """Add new entities (KBE004 for ids already present). Without ``vectors``
        their texts are encoded with ``encoder`` (or the attached one)."""
        records = _unique(records)
        if not records:
            return
        dup = [r.id for r in records if r.id in self._row]
        if dup:
            raise ValueError(Errors.KBE004.format(ids=dup[:10]))
        if vectors is None:
            vectors = encode_texts(self._encoder(encoder), [entity_text(r, self.template) for r in records],
                                   show_progress=show_progress)
        arr = _store_vectors(vectors, len(records), self.dtype, self.normalize, dim=self.dim)
        keys = numpy.arange(self.next_key, self.next_key + len(records), dtype="int64")
        self.index.add(arr, keys)
        self.next_key += len(records)
        start = len(self._records)
        self._records.extend(records)
        self._vectors = numpy.concatenate([numpy.asarray(self._vectors), arr])
        self.keys = numpy.concatenate([self.keys, keys])
        for i, r in enumerate(records):
            self._row[r.id] = start + i

    def remove(self, ids: Iterable[str]) -> None:
        """Remove entities by id (KBE003 for unknown ids); other keys stay."""
        rows = numpy.unique(self.rows(ids))
        if not rows.size:
            return
        self.index.remove(self.keys[rows])
        keep = numpy.ones(len(self), dtype=bool)
        keep[rows] = False
        self._records = [r for r, k in zip(self._records, keep) if k]
        self._vectors = numpy.asarray(self._vectors)[keep]
        self.keys = self.keys[keep]
        self._row = {r.id: i for i, r in enumerate(self._records)}

    def update(self, records: Iterable[EntityRecord], vectors: Any = None, *,
               encoder: Optional[Encoder] = None, show_progress: bool = False) -> int:
        """Replace existing records (KBE003 for unknown ids). Without ``vectors``
        only records whose entity text changed are re-encoded; returns how many
        vectors changed."""
        records = _unique(records)
        rows = self.rows(r.id for r in records)
        if vectors is not None:
            arr = _store_vectors(vectors, len(records), self.dtype, self.normalize, dim=self.dim)
            changed = list(range(len(records)))
        else:
            changed = [i for i, (r, row) in enumerate(zip(records, rows))
                       if entity_text(r, self.template) != entity_text(self._records[row], self.template)]
            arr = None
            if changed:
                texts = [entity_text(records[i], self.template) for i in changed]
                arr = _store_vectors(encode_texts(self._encoder(encoder), texts, show_progress=show_progress),
                                     len(changed), self.dtype, self.normalize, dim=self.dim)
        for r, row in zip(records, rows):
            self._records[row] = r
        if changed:
            changed_rows = rows[changed]
            if not self._vectors.flags.writeable:
                self._vectors = numpy.array(self._vectors)
            self._vectors[changed_rows] = arr
            self.index.update(arr, self.keys[changed_rows])
        return len(changed)

    # --- serialization
    @property
    def manifest(self) -> Dict[str, Any]:
        """The manifest without checksums (those are computed by ``to_disk``)."""
        return {
            "format_version": FORMAT_VERSION,
            "spacy_kbnlp_version": __version__,
            "encoder": self.encoder_name,
            "dim": self.dim,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "template": self.template,
            "preset": self.index.preset,
            "requested_preset": self.index.requested_preset,
            "index_params": self.index.params,
            "count": len(self),
            "dtype": self.dtype,
            "next_key": self.next_key,
        }

    def to_disk(self, path: PathLike) -> None:
        """Write the KB folder (see the module doc). Files are written to temporary
        names and moved into place, so a KB memory-mapped from ``path`` stays valid."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _atomic_write(path / RECORDS_FILE, lambda p: write_entities(self._records, p))
        _atomic_write(path / VECTORS_FILE, lambda p: numpy.save(p, numpy.asarray(self._vectors, dtype=self.dtype)))
        _atomic_write(path / KEYS_FILE, lambda p: numpy.save(p, self.keys))
        self.index.to_disk(path / INDEX_DIR)
        manifest = self.manifest
        manifest["checksum"] = {name: sha256_file(path / name) for name in CHECKSUM_FILES}
        manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        srsly.write_json(path / MANIFEST_FILE, manifest)

    @classmethod
    def from_disk(cls, path: PathLike, *, mmap: bool = True, verify: bool = True) -> "DenseKB":
        """Load a KB folder. ``mmap`` memory-maps the vectors; ``verify`` checks the
        files against the manifest's checksums (KBE010)."""
        path = Path(path)
        missing = [n for n in (MANIFEST_FILE, RECORDS_FILE, VECTORS_FILE, KEYS_FILE, INDEX_DIR)
                   if not (path / n).exists()]
        if missing:
            raise FileNotFoundError(Errors.KBE008.format(path=path, missing=", ".join(missing)))
        empty = [n for n in (MANIFEST_FILE, RECORDS_FILE, VECTORS_FILE, KEYS_FILE)
                 if (path / n).stat().st_size == 0]
        if empty:
            raise ValueError(Errors.KBE028.format(path=path / empty[0]))
        VectorIndex.check_files(path / INDEX_DIR)
        manifest = srsly.read_json(path / MANIFEST_FILE)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(Errors.KBE009.format(path=path, found=manifest.get("format_version"),
                                                  expected=FORMAT_VERSION))
        if verify:
            for name, expected in (manifest.get("checksum") or {}).items():
                found = sha256_file(path / name)
                if found != expected:
                    raise ValueError(Errors.KBE010.format(path=path / name, expected=expected, found=found))
        else:
            import warnings

            warnings.warn(Warnings.KBW003.format(path=path))
        records = read_entities(path / RECORDS_FILE)
        vectors = numpy.load(path / VECTORS_FILE, mmap_mode="r" if mmap else None)
        keys = numpy.load(path / KEYS_FILE)
        count, dim = int(manifest["count"]), int(manifest["dim"])
        if vectors.shape != (count, dim) or len(records) != count or keys.shape != (count,):
            raise ValueError(Errors.KBE022.format(path=path, n=vectors.shape[0], dim=vectors.shape[-1],
                                                  count=len(records), kb_dim=dim))
        index = VectorIndex.from_disk(path / INDEX_DIR)
        if index.ntotal != count or index.dim != dim:
            raise ValueError(Errors.KBE022.format(path=path / INDEX_DIR, n=index.ntotal, dim=index.dim,
                                                  count=count, kb_dim=dim))
        return cls(records, vectors, index, keys, encoder=manifest["encoder"], template=manifest["template"],
                   dtype=manifest["dtype"], pooling=manifest.get("pooling"),
                   normalize=manifest.get("normalize", True), max_length=manifest.get("max_length"),
                   next_key=manifest.get("next_key"))

    def to_bytes(self) -> bytes:
        """The KB folder's files in one msgpack blob."""
        from ..core.torch_io import folder_to_bytes

        return folder_to_bytes(self.to_disk)

    @classmethod
    def from_bytes(cls, data: bytes, *, verify: bool = True) -> "DenseKB":
        from ..core.torch_io import folder_from_bytes

        return folder_from_bytes(data, lambda tmp: cls.from_disk(tmp, mmap=False, verify=verify))

    def info(self, path: Optional[PathLike] = None) -> Dict[str, Any]:
        """Manifest, counts and (for a folder) the disk size."""
        out = dict(self.manifest)
        out["aliases"] = sum(len(r.aliases) for r in self._records)
        out["with_description"] = sum(1 for r in self._records if r.description)
        out["index_ntotal"] = self.index.ntotal
        if path is not None:
            out["disk_bytes"] = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        return out

    def __repr__(self) -> str:
        return (f"DenseKB(n={len(self)}, dim={self.dim}, encoder={self.encoder_name!r}, "
                f"preset={self.index.preset!r}, dtype={self.dtype!r})")


def _unique(records: Iterable[EntityRecord]) -> List[EntityRecord]:
    return dedupe_records(((r, f"records[{i}]") for i, r in enumerate(records)), "error")


def _store_vectors(vectors: Any, n: int, dtype: str, normalize: bool, dim: Optional[int] = None) -> numpy.ndarray:
    arr = numpy.asarray(vectors)
    if arr.ndim != 2 or arr.shape[0] != n or (dim is not None and arr.shape[1] != dim):
        raise ValueError(Errors.KBE002.format(shape=tuple(arr.shape), what=f"{n} entities",
                                              expected=f"({n}, {dim if dim is not None else 'dim'})"))
    out = numpy.array(arr, dtype="float32")
    if normalize:
        normalize_rows(out)
    return out.astype(dtype) if dtype != "float32" else out


def _build_index(vectors: numpy.ndarray, keys: numpy.ndarray, preset: str, **params: Any) -> VectorIndex:
    if not len(keys):
        index = VectorIndex.empty(vectors.shape[1], preset, **params)
        return index
    return VectorIndex.build(vectors, keys, preset, **params)


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    tmp = target.with_name(target.name + ".tmp")
    if target.suffix == ".npy":  # numpy.save appends .npy to other names
        tmp = target.with_name(target.stem + ".tmp.npy")
    write(tmp)
    os.replace(tmp, target)


class DenseKBLoader:
    """What ``spacy_kbnlp.DenseKBFromDisk.v1`` returns: call it (optionally with the
    pipeline's vocab, like ``spacy.KBFromFile.v1`` loaders) to load the KB."""

    def __init__(self, path: PathLike, mmap: bool = True, verify: bool = True):
        self.path = Path(path)
        self.mmap = mmap
        self.verify = verify

    def __call__(self, vocab: Any = None) -> DenseKB:
        return DenseKB.from_disk(self.path, mmap=self.mmap, verify=self.verify)

    def __repr__(self) -> str:
        return f"DenseKBLoader({str(self.path)!r})"


@registry.misc("spacy_kbnlp.DenseKBFromDisk.v1")
def dense_kb_from_disk(path: Path, mmap: bool = True, verify: bool = True) -> DenseKBLoader:
    """Registered KB loader for ``[initialize.components.X]``:
    ``kb_loader = {"@misc": "spacy_kbnlp.DenseKBFromDisk.v1", "path": ${paths.kb}}``."""
    return DenseKBLoader(path, mmap=mmap, verify=verify)
