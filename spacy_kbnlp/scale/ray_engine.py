"""The Ray engine of ``annotate`` and the Ray encoding path of ``build-kb``.

``annotate``: the pending records go into a Ray Dataset (one block per batch) and
through ``map_batches`` with an actor pool of ``workers`` actors
(:class:`AnnotateWorker`), each loading the pipeline once. Ray Data gives its
actors ``max_restarts=-1`` and ``max_task_retries=-1``: a killed worker is
restarted and its batch runs again. The driver keeps each result by its
``(shard, position)`` key, drops repeats, and writes a shard as soon as all its
documents are in (:mod:`.shards`), so the output is exactly once whatever Ray
retries. A restart is logged (KBW400).

``build-kb``: :class:`RayEncoder` is an encoder object whose ``encode`` sends the
entity texts to a pool of :class:`EncodeWorker` actors; ``DenseKB.build`` then
trains and fills the index as in one process.
"""
import contextlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy

from ..errors import Errors, Warnings

RAY_VERSION = "2.60.0"


def require_ray():
    """The ``ray`` module with Ray Data (KBE400 with the install command when missing)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(Errors.KBE400.format(version=RAY_VERSION)) from None
    return ray


# --- GPU placement
def gpu_for_actor(gpus_per_worker: float, assigned: Sequence[Any],
                  cuda_visible: Optional[str]) -> Optional[int]:
    """The device index an actor passes to ``spacy.require_gpu``: None without
    ``gpus_per_worker``; else the first GPU Ray assigned (``ray.get_gpu_ids()``),
    as its index among ``CUDA_VISIBLE_DEVICES`` (Ray sets it to the assigned GPUs)
    or, unset, the id itself. KBE405 when Ray assigned none."""
    if not gpus_per_worker:
        return None
    if not assigned:
        raise RuntimeError(Errors.KBE405.format(gpus=gpus_per_worker, where="this Ray worker",
                                                detail="Ray assigned it no GPU"))
    first = str(assigned[0])
    visible = [d.strip() for d in (cuda_visible or "").split(",") if d.strip()]
    return visible.index(first) if first in visible else int(first)


def check_cluster_gpus(gpus_per_worker: float, resources: Mapping[str, float]) -> None:
    """KBE405 before any actor starts when the cluster has fewer GPUs than one worker needs."""
    have = float(resources.get("GPU", 0.0))
    if gpus_per_worker and have < gpus_per_worker:
        raise RuntimeError(Errors.KBE405.format(gpus=gpus_per_worker, where="the Ray cluster",
                                                detail=f"{have:g} GPUs in its resources"))


def place_pipeline(gpus_per_worker: float) -> Optional[int]:
    """Inside an actor: move spaCy (and so the pipeline loaded next) to its GPU."""
    import ray

    gpu = gpu_for_actor(gpus_per_worker, ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    if gpu is not None:
        import spacy

        spacy.require_gpu(gpu)
    return gpu


@contextlib.contextmanager
def ray_session(address: Optional[str], workers: int) -> Iterator[Any]:
    """A connected Ray: the running one (left running), the cluster at ``address``,
    or a local Ray started here and stopped at the end."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RuntimeError(Errors.KBE409.format(address=address or "local", err=err)) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _quiet_data_context(ray: Any) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _actor_table() -> Optional[Dict[str, Dict[str, Any]]]:
    """The GCS actor table (``ray._private.state``: the public ``ray.util.state`` needs
    the dashboard, which ``ray[data]`` does not install); None where it cannot be read."""
    try:
        from ray._private import state

        return {str(aid): info for aid, info in state.actors().items()}
    except Exception:  # a private API: never fail a run over it
        return None


def restarted_actors(name: str, before: Optional[Iterable[str]]) -> Dict[str, int]:
    """``{actor id[:8]: restarts}`` of this job's actors whose class name contains
    ``name``, not in ``before`` (the actor ids that existed when the run began) and
    restarted (or restarting) by Ray; empty where the actor table cannot be read.
    Not by start time: an actor killed before its restart finished reports 0."""
    table = _actor_table()
    if table is None or before is None:
        return {}
    import ray

    job, before = ray.get_runtime_context().get_job_id(), set(before)
    found = {aid[:8]: max(int(info.get("NumRestarts") or 0), int(info.get("State") == "RESTARTING"))
             for aid, info in table.items() if aid not in before
             and name in str(info.get("ActorClassName", "")) and str(info.get("JobID", job)) == job}
    return {aid: n for aid, n in found.items() if n}


def _worker_name() -> Tuple[str, bool]:
    import ray

    rc = ray.get_runtime_context()
    return f"{(rc.get_actor_id() or '')[:8]}:{os.getpid()}", bool(rc.was_current_actor_reconstructed)


# --- annotate
class AnnotateWorker:
    """A Ray Data actor: loads the pipeline once (on its GPU with ``gpus_per_worker``)
    and annotates batches of ``{"shard", "pos", "rec"}`` rows."""

    def __init__(self, pipeline: str, text_field: str, batch_size: int, gpus_per_worker: float,
                 docbin: bool):
        from .annotate import load_nlp

        place_pipeline(gpus_per_worker)
        self.nlp = load_nlp(pipeline)
        self.text_field, self.batch_size, self.docbin = text_field, batch_size, docbin
        self.name, self.restarted = _worker_name()

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        from .annotate import annotate_records

        t = time.perf_counter()
        recs = [json.loads(s) for s in batch["rec"]]
        res = list(annotate_records(self.nlp, recs, text_field=self.text_field,
                                    batch_size=self.batch_size, docbin=self.docbin))
        n = len(recs)
        busy = (time.perf_counter() - t) / max(n, 1)
        return {"shard": batch["shard"], "pos": batch["pos"],
                "out": [json.dumps(o, ensure_ascii=False) for o, _ in res],
                "docbin": [d or b"" for _, d in res], "worker": [self.name] * n,
                "restarted": [self.restarted] * n, "busy_s": [busy] * n}


def run_ray(pipeline: Any, shards: Iterable[Tuple[int, List[Dict[str, Any]]]], finish: Callable, *,
            address: Optional[str], workers: int, batch_size: int, gpus_per_worker: float,
            text_field: str, docbin: bool, show_progress: bool) -> Dict[str, Any]:
    """Annotate ``shards`` on Ray and call ``finish(k, records, outs, docbins)`` per
    completed shard, in completion order (see the module doc)."""
    from tqdm import tqdm

    if not isinstance(pipeline, (str, Path)):
        raise ValueError(Errors.KBE404.format(name="pipeline", value=type(pipeline).__name__,
                                              why="the Ray engine loads the pipeline in each worker: "
                                                  "give its folder (nlp.to_disk) or package name"))
    path = Path(pipeline)
    pipeline = str(path.resolve()) if path.exists() else str(pipeline)
    pending = {k: recs for k, recs in shards}
    stats: Dict[str, Any] = {"workers": {}, "restarts": 0, "dropped_repeats": 0}
    if not pending:
        return stats
    items = [{"shard": k, "pos": i, "rec": json.dumps(r, ensure_ascii=False)}
             for k, recs in pending.items() for i, r in enumerate(recs)]
    got: Dict[int, Dict[int, Tuple[str, bytes]]] = {k: {} for k in pending}
    restarted = set()
    with ray_session(address, workers) as ray:
        table = _actor_table()
        before = None if table is None else set(table)
        check_cluster_gpus(gpus_per_worker, ray.cluster_resources())
        _quiet_data_context(ray)
        ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // batch_size)))
        ds = ds.map_batches(AnnotateWorker, batch_size=batch_size,
                            compute=ray.data.ActorPoolStrategy(size=workers),
                            num_gpus=gpus_per_worker or None,
                            fn_constructor_kwargs={"pipeline": pipeline, "text_field": text_field,
                                                   "batch_size": batch_size,
                                                   "gpus_per_worker": gpus_per_worker,
                                                   "docbin": docbin})
        with tqdm(total=len(items), desc="annotate (ray)", unit="doc", disable=not show_progress,
                  leave=False) as bar:
            for row in ds.iter_rows():
                k, pos = int(row["shard"]), int(row["pos"])
                if k not in got or pos in got[k]:
                    stats["dropped_repeats"] += 1
                    continue
                got[k][pos] = (row["out"], row["docbin"])
                w = stats["workers"].setdefault(row["worker"], {"docs": 0, "busy_s": 0.0})
                w["docs"] += 1
                w["busy_s"] += float(row["busy_s"])
                if row["restarted"]:
                    restarted.add(row["worker"])
                bar.update(1)
                if len(got[k]) == len(pending[k]):
                    done = got.pop(k)
                    finish(k, pending[k], [json.loads(done[i][0]) for i in range(len(done))],
                           [bytes(done[i][1]) or None for i in range(len(done))])
        # restarts seen by Ray (also of an actor that gave no result after its restart)
        gcs = restarted_actors("AnnotateWorker", before)
    for w in stats["workers"].values():
        w["busy_s"] = round(w["busy_s"], 3)
        w["docs_per_s"] = round(w["docs"] / w["busy_s"], 3) if w["busy_s"] else 0.0
    # a restarted actor keeps its id and gets a new process
    by_actor: Dict[str, int] = {}
    for name in stats["workers"]:
        by_actor[name.split(":")[0]] = by_actor.get(name.split(":")[0], 0) + 1
    lost = sorted({n for n in stats["workers"] if by_actor[n.split(":")[0]] > 1} | restarted
                  | {f"{aid}:?" for aid in gcs if aid not in by_actor})
    stats["restarts"] = max(len(restarted), sum(v - 1 for v in by_actor.values()), sum(gcs.values()))
    if stats["restarts"]:
        warnings.warn(Warnings.KBW400.format(detail=f"workers {', '.join(lost)}",
                                             dropped=stats["dropped_repeats"]))
    if got:
        missing = {k: len(pending[k]) - len(v) for k, v in got.items()}
        raise RuntimeError(Errors.KBE406.format(n=sum(missing.values()),
                                                shards=", ".join(str(k) for k in sorted(missing))))
    return stats


# --- build-kb
class EncodeWorker:
    """A Ray Data actor holding one encoder (an HFEncoder-like object, loaded on first
    use, or a function ``texts -> array``); encodes batches of ``{"row", "text"}``."""

    def __init__(self, encoder: Any, batch_size: Optional[int], gpus_per_worker: float = 0.0):
        place_pipeline(gpus_per_worker)
        self.encoder, self.batch_size = encoder, batch_size

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        from ..kb.dense_kb import encode_texts

        vectors = encode_texts(self.encoder, list(batch["text"]), batch_size=self.batch_size)
        return {"row": batch["row"], "vector": list(vectors)}


class RayEncoder:
    """An encoder object for ``DenseKB.build`` whose ``encode`` runs ``encoder`` on
    a pool of ``workers`` Ray actors, ``chunk_size`` texts per task; the vectors come
    back in input order (a retried chunk overwrites the same rows). ``name``,
    ``pooling``, ``normalize``, ``max_length`` and ``dim`` are the wrapped encoder's
    (give ``encoder_name`` for a plain function), so the KB's manifest is the one of
    a single-process build."""

    def __init__(self, encoder: Any, *, workers: int = 2, address: Optional[str] = None,
                 chunk_size: int = 4096, gpus_per_worker: float = 0.0,
                 encoder_name: Optional[str] = None):
        require_ray()
        self.encoder, self.workers, self.address = encoder, workers, address
        self.chunk_size, self.gpus_per_worker = chunk_size, gpus_per_worker
        self.name = encoder_name if encoder_name is not None else getattr(encoder, "name", None)
        for attr in ("pooling", "normalize", "max_length"):
            setattr(self, attr, getattr(encoder, attr, None))
        self.batch_size = getattr(encoder, "batch_size", None)

    @property
    def dim(self) -> int:
        return int(getattr(self.encoder, "dim", 0) or 0)

    def encode(self, texts: Sequence[str], *, batch_size: Optional[int] = None,
               show_progress: bool = False, desc: str = "Encoding") -> numpy.ndarray:
        from tqdm import tqdm

        texts = list(texts)
        n = len(texts)
        out: Optional[numpy.ndarray] = None
        filled = numpy.zeros(n, dtype=bool)
        # at least 4 chunks per worker, so that every worker gets work
        chunk = max(1, min(self.chunk_size, -(-n // (4 * self.workers))))
        with ray_session(self.address, self.workers) as ray:
            check_cluster_gpus(self.gpus_per_worker, ray.cluster_resources())
            _quiet_data_context(ray)
            ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)],
                                     override_num_blocks=max(1, -(-n // chunk)))
            ds = ds.map_batches(EncodeWorker, batch_size=chunk,
                                compute=ray.data.ActorPoolStrategy(size=self.workers),
                                num_gpus=self.gpus_per_worker or None,
                                fn_constructor_kwargs={"encoder": self.encoder,
                                                       "batch_size": batch_size or self.batch_size,
                                                       "gpus_per_worker": self.gpus_per_worker})
            with tqdm(total=n, desc=f"{desc} (ray)", unit="text", disable=not show_progress,
                      leave=False) as bar:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    rows = numpy.asarray(batch["row"], dtype="int64")
                    vecs = numpy.stack(list(batch["vector"])).astype("float32")
                    if out is None:
                        out = numpy.zeros((n, vecs.shape[1]), dtype="float32")
                    out[rows] = vecs
                    bar.update(int((~filled[rows]).sum()))
                    filled[rows] = True
        if not filled.all():
            raise RuntimeError(Errors.KBE406.format(n=int((~filled).sum()), shards="(entity texts)"))
        return out if out is not None else numpy.zeros((0, self.dim), dtype="float32")


def local_worker_processes(name: str = "AnnotateWorker") -> List[Any]:
    """The live processes of this machine's Ray actors running ``name`` that descend
    from this process (a local Ray started here): for fault tests and memory figures."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and name in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # ended meanwhile
            continue
    return found
