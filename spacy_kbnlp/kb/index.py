"""The one FAISS layer of the project: named presets, stable int64 ids, incremental
updates, search parameters and FAISS IO (no pickle).

The metric is the inner product; store L2-normalized vectors (or pass
``normalize=True``) so that scores are cosines.

Presets (``PRESETS``; parameters in brackets, ``None`` = chosen from ``n``):

* ``flat``     exact search (``IndexFlatIP``).
* ``hnsw``     HNSW graph over full vectors [M=32, ef_construction=64, ef_search=128].
* ``sq8``      exact scan over 8-bit scalar-quantized codes (4x smaller than flat).
* ``ivf_flat`` inverted lists over full vectors [nlist ~ 4 sqrt(n), nprobe ~ nlist/128, >= 16].
* ``ivf_sq8``  inverted lists over 8-bit codes [nlist, nprobe].
* ``ivf_pq``   inverted lists over product-quantized codes [nlist, nprobe, m, nbits=8].

Trained presets (``sq8``, ``ivf_*``) train on a random sample of ``train_size``
vectors. Where there are too few vectors to train (``min_train``) the index falls
back to ``flat`` with warning KBW001, so a 1-entity KB works with every preset.

Ids are caller-given int64 (>= 0) and stay stable across ``add``/``remove``/
``update``: ``IndexIDMap2`` for flat, sq8 and hnsw, the native ids of IVF. HNSW
cannot delete nodes, so removed entries become tombstones (their label is set to a
negative value and a search selector skips them); ``compact()`` rebuilds without
them, and happens on its own once half of the nodes are tombstones.
"""
import math
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import numpy
import srsly

from ..errors import Errors, Warnings

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
META_FILE = "index.json"
ADD_CHUNK = 65536
MAX_LABEL = 2**62  # labels >= this (and all negatives) are reserved
PRESETS: Dict[str, Dict[str, Any]] = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 64, "ef_search": 128},
    "sq8": {"train_size": None},
    "ivf_flat": {"nlist": None, "nprobe": None, "train_size": None},
    "ivf_sq8": {"nlist": None, "nprobe": None, "train_size": None},
    "ivf_pq": {"nlist": None, "nprobe": None, "m": None, "nbits": 8, "train_size": None},
}
SEARCH_PARAMS = ("nprobe", "ef_search")
MIN_POINTS_PER_CENTROID = 39  # FAISS's own guidance for k-means
SQ_MIN_TRAIN = 256


def auto_nlist(n: int) -> int:
    """About 4 * sqrt(n) inverted lists (a power of two), with at least 39
    training points per list; at least 1."""
    if n <= 0:
        return 1
    target = 2 ** int(round(math.log2(max(1.0, 4 * math.sqrt(n)))))
    return max(1, min(target, n // MIN_POINTS_PER_CENTROID))


def auto_nprobe(nlist: int) -> int:
    """Lists visited per query: 1/128 of them, at least 16 (all when fewer). On the
    1M-vector benchmark (nlist 4096, ivf_sq8, the mixture fitted to MiniLM entity
    vectors; benchmarks/results/kb_scale.json) recall@100 was 0.665 / 0.814 / 0.916 /
    0.970 at nprobe 16 / 32 / 64 / 128 (p50 0.4 / 0.7 / 1.6 / 7.7 ms): raise ``nprobe``
    where recall matters more than latency."""
    return min(nlist, max(16, nlist // 128))


def auto_pq_m(dim: int) -> int:
    """Sub-quantizers: 4 dimensions each (2-dimensional ones train very slowly in
    FAISS: 298 s vs 20 s for 384-d on 51k vectors), else another divisor of ``dim``."""
    for sub in (4, 2, 3, 1):
        if dim % sub == 0:
            return dim // sub
    return dim


def _as_float32(vectors: Any, dim: Optional[int] = None, what: str = "the index") -> numpy.ndarray:
    arr = numpy.asarray(vectors)
    if arr.ndim == 1 and dim is not None and arr.shape[0] == dim:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        raise ValueError(Errors.KBE002.format(shape=tuple(arr.shape), what=what,
                                              expected=f"(n, {dim if dim is not None else 'dim'})"))
    return numpy.ascontiguousarray(arr, dtype="float32")


def normalize_rows(x: numpy.ndarray) -> numpy.ndarray:
    """L2-normalize the rows of a float32 array in place (zero rows stay zero)."""
    norms = numpy.linalg.norm(x, axis=1, keepdims=True)
    numpy.divide(x, norms, out=x, where=norms > 0)
    return x


def _as_ids(ids: Any, n: int) -> numpy.ndarray:
    arr = numpy.ascontiguousarray(numpy.asarray(ids, dtype="int64").reshape(-1))
    if arr.shape[0] != n:
        raise ValueError(Errors.KBE011.format(n_ids=arr.shape[0], n_vectors=n))
    if arr.size and (arr.min() < 0 or arr.max() >= MAX_LABEL):
        raise ValueError(Errors.KBE024.format(name="ids", value=int(arr.min() if arr.min() < 0 else arr.max()),
                                              why="vector ids must be in [0, 2**62)"))
    return arr


def resolve_params(preset: str, dim: int, n: int, params: Dict[str, Any]) -> Dict[str, Any]:
    """The preset's defaults, overridden by ``params``, with the automatic values
    filled in for ``n`` training vectors. Raises KBE007 / KBE013."""
    if preset not in PRESETS:
        raise ValueError(Errors.KBE007.format(preset=preset, options=", ".join(PRESETS)))
    for key in params:
        if key not in PRESETS[preset]:
            raise ValueError(Errors.KBE013.format(name=key, value=params[key], preset=preset,
                                                  why=f"the preset takes {', '.join(PRESETS[preset]) or 'no parameters'}"))
    for key, value in params.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(Errors.KBE013.format(name=key, value=value, preset=preset,
                                                  why="it must be a positive integer"))
    out = {**PRESETS[preset], **{k: v for k, v in params.items() if v is not None}}
    if "nlist" in out:
        out["nlist"] = int(out["nlist"] or auto_nlist(n))
        out["nprobe"] = int(out["nprobe"] or auto_nprobe(out["nlist"]))
    if preset == "ivf_pq":
        out["m"] = int(out["m"] or auto_pq_m(dim))
        if dim and dim % out["m"]:
            raise ValueError(Errors.KBE013.format(name="m", value=out["m"], preset=preset,
                                                  why=f"it must divide the dimension {dim}"))
    if "train_size" in out:
        need = min_train(preset, out)
        default = max(need, 50 * out.get("nlist", 1), 20_000)
        out["train_size"] = int(min(n, out["train_size"] or default))
    return out


def min_train(preset: str, params: Dict[str, Any]) -> int:
    """How many vectors a preset needs to train (0: no training)."""
    if preset == "sq8" or preset == "ivf_sq8":
        return max(SQ_MIN_TRAIN, MIN_POINTS_PER_CENTROID * params.get("nlist", 1))
    if preset == "ivf_flat":
        return MIN_POINTS_PER_CENTROID * params["nlist"]
    if preset == "ivf_pq":
        return MIN_POINTS_PER_CENTROID * max(params["nlist"], 2 ** params["nbits"])
    return 0


def _new_faiss_index(preset: str, dim: int, p: Dict[str, Any]):
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    if preset == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if preset == "hnsw":
        base = faiss.IndexHNSWFlat(dim, int(p["M"]), ip)
        base.hnsw.efConstruction = int(p["ef_construction"])
        base.hnsw.efSearch = int(p["ef_search"])
        return faiss.IndexIDMap2(base)
    if preset == "sq8":
        return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip))
    quantizer = faiss.IndexFlatIP(dim)
    if preset == "ivf_flat":
        index = faiss.IndexIVFFlat(quantizer, dim, p["nlist"], ip)
    elif preset == "ivf_sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, p["nlist"], faiss.ScalarQuantizer.QT_8bit, ip)
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, p["nlist"], p["m"], p["nbits"], ip)
        index.pq.cp.min_points_per_centroid = 1  # we check the sample size ourselves
    index.cp.spherical = True  # centroids on the unit sphere, for inner product
    index.cp.min_points_per_centroid = 1
    index.nprobe = p["nprobe"]
    return index


class VectorIndex:
    """A FAISS index with a named preset and stable int64 ids.

    Build with ``VectorIndex.build(vectors, ids=None, preset="flat", **params)``;
    ``search(queries, k)`` returns ``(scores float32 [n, k], ids int64 [n, k])``,
    best first, padded with id -1 (score -inf) where fewer than ``k`` are found.
    """

    def __init__(self, index: Any, preset: str, params: Dict[str, Any], dim: int, *,
                 requested_preset: Optional[str] = None, requested_params: Optional[Dict[str, Any]] = None,
                 normalize: bool = False, n_deleted: int = 0, next_id: int = 0):
        self.index = index
        self.preset = preset
        self.requested_preset = requested_preset or preset
        # the parameters the caller gave (``params`` adds the automatic ones)
        self.requested_params = dict(requested_params or {})
        self.params = dict(params)
        self.dim = int(dim)
        self.normalize = bool(normalize)
        self.n_deleted = int(n_deleted)  # HNSW tombstones
        self.next_id = int(next_id)

    # --- construction
    @classmethod
    def empty(cls, dim: int, preset: str = "flat", *, normalize: bool = False, **params) -> "VectorIndex":
        """An empty index. Trained presets cannot take vectors before training, so
        an empty index of such a preset is a flat one (KBW001 on ``build``)."""
        resolved = resolve_params(preset, dim, 0, params)
        if min_train(preset, resolved):
            return cls(_new_faiss_index("flat", dim, {}), "flat", {}, dim, requested_preset=preset,
                       requested_params=params, normalize=normalize)
        return cls(_new_faiss_index(preset, dim, resolved), preset, resolved, dim,
                   requested_params=params, normalize=normalize)

    @classmethod
    def build(
        cls,
        vectors: Any,
        ids: Optional[Iterable[int]] = None,
        preset: str = "flat",
        *,
        dim: Optional[int] = None,
        normalize: bool = False,
        seed: int = 0,
        show_progress: bool = False,
        **params: Any,
    ) -> "VectorIndex":
        """Build an index of ``preset`` over ``vectors`` (``(n, dim)``, any float
        dtype, memory-mapped arrays welcome: they are read in chunks).

        ``ids`` default to ``0..n-1``. ``params`` override the preset's defaults
        (``PRESETS``); trained presets train on ``train_size`` random vectors and
        fall back to ``flat`` (KBW001) when ``n`` is below what they need."""
        arr = numpy.asarray(vectors)
        if arr.ndim != 2:
            raise ValueError(Errors.KBE002.format(shape=tuple(arr.shape), what="the index",
                                                  expected="(n, dim)"))
        n, d = arr.shape
        if dim is not None and d != dim:
            raise ValueError(Errors.KBE020.format(dim=dim, found=d))
        ids_arr = numpy.arange(n, dtype="int64") if ids is None else _as_ids(ids, n)
        resolved = resolve_params(preset, d, n, params)
        need = min_train(preset, resolved)
        if need and n < need:
            warnings.warn(Warnings.KBW001.format(preset=preset, need=need, n=n))
            self = cls(_new_faiss_index("flat", d, {}), "flat", {}, d, requested_preset=preset,
                       requested_params=params, normalize=normalize)
        else:
            self = cls(_new_faiss_index(preset, d, resolved), preset, resolved, d,
                       requested_params=params, normalize=normalize)
            if need:
                self._train(arr, resolved["train_size"], seed)
        self.add(arr, ids_arr, show_progress=show_progress)
        return self

    def _train(self, arr: numpy.ndarray, size: int, seed: int) -> None:
        n = arr.shape[0]
        rows = numpy.sort(numpy.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
        sample = self._prepare(arr[rows])
        self.index.train(sample)

    def _prepare(self, vectors: Any) -> numpy.ndarray:
        x = _as_float32(vectors, self.dim)
        return normalize_rows(x.copy()) if self.normalize else x

    # --- properties
    @property
    def ntotal(self) -> int:
        """Number of live vectors."""
        return int(self.index.ntotal) - self.n_deleted

    def __len__(self) -> int:
        return self.ntotal

    @property
    def is_ivf(self) -> bool:
        return self.preset.startswith("ivf_")

    def _hnsw(self):
        import faiss

        return faiss.downcast_index(self.index.index).hnsw

    # --- updates
    def add(self, vectors: Any, ids: Optional[Iterable[int]] = None, *, show_progress: bool = False) -> numpy.ndarray:
        """Add vectors under ``ids`` (default: the next free ids); returns the ids.

        Ids must not be in the index already (not checked: use ``update``)."""
        arr = numpy.asarray(vectors)
        if arr.ndim == 1 and arr.shape[0] == self.dim:
            arr = arr.reshape(1, -1)
        n = arr.shape[0] if arr.ndim == 2 else -1
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(Errors.KBE020.format(dim=self.dim, found=arr.shape[-1] if arr.ndim else arr.shape))
        ids_arr = (numpy.arange(self.next_id, self.next_id + n, dtype="int64")
                   if ids is None else _as_ids(ids, n))
        starts = range(0, n, ADD_CHUNK)
        if show_progress and n > ADD_CHUNK:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"Indexing ({self.preset})", unit="chunk")
        for s in starts:
            self.index.add_with_ids(self._prepare(arr[s: s + ADD_CHUNK]), ids_arr[s: s + ADD_CHUNK])
        if n:
            self.next_id = max(self.next_id, int(ids_arr.max()) + 1)
        return ids_arr

    def remove(self, ids: Iterable[int]) -> int:
        """Remove the vectors with these ids; returns how many were removed
        (ids not in the index are ignored)."""
        import faiss

        ids_arr = numpy.unique(numpy.asarray(list(ids) if not hasattr(ids, "__array__") else ids,
                                             dtype="int64").reshape(-1))
        if not ids_arr.size or not self.index.ntotal:
            return 0
        if self.preset == "hnsw":
            labels = faiss.vector_to_array(self.index.id_map)
            pos = numpy.flatnonzero(numpy.isin(labels, ids_arr))
            if not pos.size:
                return 0
            labels[pos] = -(pos.astype("int64") + 2)  # unique negative tombstones, never -1
            faiss.copy_array_to_vector(labels, self.index.id_map)
            self.index.construct_rev_map()
            self.n_deleted += int(pos.size)
            if self.n_deleted * 2 > self.index.ntotal:
                self.compact()
            return int(pos.size)
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids_arr)))

    def update(self, vectors: Any, ids: Iterable[int]) -> None:
        """Replace the vectors of ``ids`` (upsert: ids not in the index are added)."""
        arr = _as_float32(vectors, self.dim)
        ids_arr = _as_ids(ids, arr.shape[0])
        self.remove(ids_arr)
        self.add(arr, ids_arr)

    def live_ids(self) -> numpy.ndarray:
        """The ids in the index (sorted)."""
        import faiss

        if self.is_ivf:
            inv = self.index.invlists
            parts = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
                     for i in range(inv.nlist) if inv.list_size(i)]
            return numpy.sort(numpy.concatenate(parts)) if parts else numpy.zeros(0, "int64")
        labels = faiss.vector_to_array(self.index.id_map)
        return numpy.sort(labels[labels >= 0])

    def compact(self) -> None:
        """Rebuild an HNSW index without its tombstones (other presets delete in place)."""
        if self.preset != "hnsw" or not self.n_deleted:
            return
        import faiss

        labels = faiss.vector_to_array(self.index.id_map)
        live = labels >= 0
        vectors = self.index.index.reconstruct_n(0, self.index.ntotal)[live]
        self.index = _new_faiss_index("hnsw", self.dim, self.params)
        self.n_deleted = 0
        if live.any():
            self.index.add_with_ids(numpy.ascontiguousarray(vectors), labels[live])

    # --- search
    def set_search_params(self, *, nprobe: Optional[int] = None, ef_search: Optional[int] = None) -> None:
        """Change search-time parameters (``nprobe`` for IVF, ``ef_search`` for HNSW)."""
        if nprobe is not None:
            if not self.is_ivf or nprobe <= 0:
                raise ValueError(Errors.KBE013.format(name="nprobe", value=nprobe, preset=self.preset,
                                                      why="only IVF presets take it, and it must be positive"))
            self.params["nprobe"] = int(nprobe)
            self.index.nprobe = int(nprobe)
        if ef_search is not None:
            if self.preset != "hnsw" or ef_search <= 0:
                raise ValueError(Errors.KBE013.format(name="ef_search", value=ef_search, preset=self.preset,
                                                      why="only the hnsw preset takes it, and it must be positive"))
            self.params["ef_search"] = int(ef_search)
            self._hnsw().efSearch = int(ef_search)

    def search(self, queries: Any, k: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Top-``k`` ``(scores, ids)`` per query row, best first; -1 ids pad."""
        import faiss

        q = self._prepare(queries)
        k = int(k)
        if k <= 0 or q.shape[0] == 0:
            return numpy.zeros((q.shape[0], max(k, 0)), "float32"), numpy.zeros((q.shape[0], max(k, 0)), "int64")
        if self.index.ntotal == 0:
            return (numpy.full((q.shape[0], k), -numpy.inf, "float32"),
                    numpy.full((q.shape[0], k), -1, "int64"))
        if self.preset == "hnsw" and self.n_deleted:
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(self.params["ef_search"])
            selector = faiss.IDSelectorRange(0, MAX_LABEL)
            params.sel = selector
            scores, ids = self.index.search(q, k, params=params)
        else:
            scores, ids = self.index.search(q, k)
        ids[ids < -1] = -1
        scores[ids < 0] = -numpy.inf
        return scores, ids

    # --- serialization
    def _meta(self) -> Dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "preset": self.preset,
                "requested_preset": self.requested_preset, "requested_params": self.requested_params,
                "params": self.params, "dim": self.dim,
                "metric": "inner_product", "normalize": self.normalize, "ntotal": self.ntotal,
                "n_deleted": self.n_deleted, "next_id": self.next_id}

    @classmethod
    def _from_meta(cls, index: Any, meta: Dict[str, Any]) -> "VectorIndex":
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(Errors.KBE009.format(path="<index>", found=meta.get("format_version"),
                                                  expected=FORMAT_VERSION))
        self = cls(index, meta["preset"], meta["params"], meta["dim"],
                   requested_preset=meta.get("requested_preset"),
                   requested_params=meta.get("requested_params"), normalize=meta.get("normalize", False),
                   n_deleted=meta.get("n_deleted", 0), next_id=meta.get("next_id", 0))
        if self.is_ivf:
            self.index.nprobe = int(self.params["nprobe"])
        elif self.preset == "hnsw":
            self._hnsw().efSearch = int(self.params["ef_search"])
        return self

    def to_disk(self, path: Union[str, Path]) -> None:
        """Write ``path/index.faiss`` (FAISS IO) and ``path/index.json``."""
        import faiss

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(path / INDEX_FILE))
        srsly.write_json(path / META_FILE, self._meta())

    @classmethod
    def from_disk(cls, path: Union[str, Path]) -> "VectorIndex":
        import faiss

        path = Path(path)
        cls.check_files(path)
        return cls._from_meta(faiss.read_index(str(path / INDEX_FILE)), srsly.read_json(path / META_FILE))

    @staticmethod
    def check_files(path: Path) -> None:
        """KBE021 (no index), KBE027 (one of its two files missing), KBE028 (an empty one)."""
        have = [n for n in (INDEX_FILE, META_FILE) if (path / n).exists()]
        if not have:
            raise FileNotFoundError(Errors.KBE021.format(path=path, files=f"{INDEX_FILE}, {META_FILE}"))
        if len(have) == 1:
            missing = META_FILE if have[0] == INDEX_FILE else INDEX_FILE
            raise FileNotFoundError(Errors.KBE027.format(path=path, file=missing, present=have[0]))
        empty = [n for n in have if (path / n).stat().st_size == 0]
        if empty:
            raise ValueError(Errors.KBE028.format(path=path / empty[0]))

    def to_bytes(self) -> bytes:
        import faiss

        return srsly.msgpack_dumps({"meta": self._meta(),
                                    "index": faiss.serialize_index(self.index).tobytes()})

    @classmethod
    def from_bytes(cls, data: bytes) -> "VectorIndex":
        import faiss

        msg = srsly.msgpack_loads(data)
        index = faiss.deserialize_index(numpy.frombuffer(msg["index"], dtype="uint8"))
        return cls._from_meta(index, msg["meta"])

    def __repr__(self) -> str:
        return f"VectorIndex(preset={self.preset!r}, dim={self.dim}, ntotal={self.ntotal}, params={self.params})"
