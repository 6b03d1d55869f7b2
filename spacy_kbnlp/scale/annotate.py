"""``annotate``: run a spaCy pipeline over a corpus into sharded JSON lines.

The engine ``local`` runs ``nlp.pipe`` in this process (``n_process=workers``);
``ray`` runs Ray Data ``map_batches`` over an actor pool whose actors load the
pipeline once (:mod:`.ray_engine`). Both write the same files: see
:mod:`.shards` for the layout and why the output is exactly once, and
:func:`spacy_kbnlp.readers.jsonl.doc_annotations` for the annotations of a record.
"""
import json
import os
from collections import deque
import time
import warnings
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import Errors, Warnings
from .inputs import input_kind, read_inputs
from .shards import REJECTS, Manifest, shard_name, write_rejects

PathLike = Union[str, Path]
ENGINES = ("local", "ray")
ANNOTATIONS = "annotations"


def load_nlp(pipeline: Any):
    """A loaded pipeline (``pipeline`` is a Language, a folder or a package name)."""
    from spacy.language import Language

    if isinstance(pipeline, Language):
        return pipeline
    from ..cli.evaluate import load_pipeline

    return load_pipeline(pipeline)


def annotate_records(nlp: Any, records: Iterable[Dict[str, Any]], *, text_field: str = "text",
                     batch_size: Optional[int] = None, n_process: int = 1,
                     docbin: bool = False) -> Iterator[Tuple[Dict[str, Any], Optional[bytes]]]:
    """``(output record, DocBin bytes of the doc or None)`` per input record, in
    order: the record's fields plus ``annotations`` (``doc_annotations``)."""
    from ..readers.jsonl import doc_annotations

    seen: Deque[Dict[str, Any]] = deque()

    def texts() -> Iterator[str]:
        for r in records:
            seen.append(r)
            yield r[text_field]

    for doc in nlp.pipe(texts(), batch_size=batch_size, n_process=n_process):
        rec = seen.popleft()
        data = None
        if docbin:
            from spacy.tokens import DocBin

            data = DocBin(docs=[doc], store_user_data=True).to_bytes()
        yield {**rec, ANNOTATIONS: doc_annotations(doc)}, data


def shard_files(k: int, outs: Sequence[Dict[str, Any]], docbins: Sequence[Optional[bytes]]
                ) -> Dict[str, bytes]:
    """The files of shard ``k``: JSON lines, plus the merged DocBin when given."""
    files = {shard_name(k): "".join(json.dumps(o, ensure_ascii=False) + "\n"
                                    for o in outs).encode("utf-8")}
    if docbins and all(d is not None for d in docbins):
        from spacy.tokens import DocBin

        merged = DocBin(store_user_data=True)
        for data in docbins:
            merged.merge(DocBin(store_user_data=True).from_bytes(data))
        files[shard_name(k, "spacy")] = merged.to_bytes()
    return files


def plan_shards(records: Iterable[Tuple[str, Dict[str, Any]]], shard_size: int,
                rejects: List[Dict[str, Any]]) -> Iterator[Tuple[int, List[Dict[str, Any]]]]:
    """``(k, records)`` of consecutive valid records; rejects are appended to ``rejects``."""
    shard: List[Dict[str, Any]] = []
    k = 0
    for kind, rec in records:
        if kind == "reject":
            rejects.append(rec)
            continue
        shard.append(rec)
        if len(shard) == shard_size:
            yield k, shard
            k, shard = k + 1, []
    if shard:
        yield k, shard


def _check(name: str, value: Any, ok: bool, why: str) -> None:
    if not ok:
        raise ValueError(Errors.KBE404.format(name=name, value=value, why=why))


def annotate(
    pipeline: Any,
    input_path: PathLike,
    output_dir: PathLike,
    *,
    engine: str = "local",
    address: Optional[str] = None,
    workers: int = 1,
    batch_size: int = 64,
    gpus_per_worker: float = 0.0,
    text_field: str = "text",
    id_field: str = "id",
    shard_size: int = 1000,
    docbin: bool = False,
    show_progress: bool = True,
) -> Dict[str, Any]:
    """Annotate every valid record of ``input_path`` into ``output_dir`` (see the
    module doc); finished shards of an earlier run with the same settings are
    kept. Returns the summary: ``docs`` (annotated now), ``skipped`` (in shards
    already done), ``rejects``, ``seconds``, ``docs_per_s``, ``first_shard_s`` (the
    start-up cost plus one shard), ``workers`` (per
    worker: docs, busy seconds, docs/s), ``restarts`` and ``dropped_repeats``."""
    if engine not in ENGINES:
        raise ValueError(Errors.KBE401.format(engine=engine, options=", ".join(ENGINES)))
    _check("--workers", workers, isinstance(workers, int) and workers >= 1, "use 1 or more")
    _check("--batch-size", batch_size, isinstance(batch_size, int) and batch_size >= 1, "use 1 or more")
    _check("--shard-size", shard_size, isinstance(shard_size, int) and shard_size >= 1, "use 1 or more")
    _check("--gpus-per-worker", gpus_per_worker, gpus_per_worker >= 0, "use 0 or more")
    _check("--engine", engine, engine == "ray" or (not address and not gpus_per_worker),
           "--address and --gpus-per-worker need --engine ray")
    if engine == "ray":
        from .ray_engine import require_ray

        require_ray()
    input_kind(input_path)  # KBE402 before loading anything
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = pipeline if isinstance(pipeline, (str, Path)) else getattr(pipeline, "meta", {}).get("name")
    settings = {"input": Path(input_path).name, "pipeline": Path(str(name)).name,
                "text_field": text_field, "id_field": id_field, "shard_size": shard_size,
                "docbin": docbin}
    manifest = Manifest(out, settings)
    rejects: List[Dict[str, Any]] = []
    stats: Dict[str, Any] = {"docs": 0, "skipped": 0, "shards": 0}

    def pending() -> Iterator[Tuple[int, List[Dict[str, Any]]]]:
        for k, recs in plan_shards(read_inputs(input_path, text_field=text_field, id_field=id_field),
                                   shard_size, rejects):
            stats["shards"] = k + 1
            if manifest.is_done(k, [r[id_field] for r in recs]):
                stats["skipped"] += len(recs)
                continue
            yield k, recs

    def finish(k: int, recs: Sequence[Dict[str, Any]], outs: Sequence[Dict[str, Any]],
               docbins: Sequence[Optional[bytes]]) -> None:
        manifest.record(k, [r[id_field] for r in recs], shard_files(k, outs, docbins))
        stats["docs"] += len(outs)
        stats.setdefault("first_shard_s", round(time.perf_counter() - t0, 3))

    t0 = time.perf_counter()
    if engine == "local":
        result = _run_local(pipeline, pending(), finish, workers=workers, batch_size=batch_size,
                            text_field=text_field, docbin=docbin, show_progress=show_progress)
    else:
        from .ray_engine import run_ray

        result = run_ray(pipeline, pending(), finish, address=address, workers=workers,
                         batch_size=batch_size, gpus_per_worker=gpus_per_worker,
                         text_field=text_field, docbin=docbin, show_progress=show_progress)
    seconds = time.perf_counter() - t0
    write_rejects(out, rejects)
    if rejects:
        first = rejects[0]
        warnings.warn(Warnings.KBW401.format(n=len(rejects), path=out / REJECTS,
                                             example=f"{first['loc']}: {first['reason']}"))
    summary = {"engine": engine, "docs": stats["docs"], "skipped": stats["skipped"],
               "rejects": len(rejects), "shards": stats["shards"], "seconds": round(seconds, 3),
               "docs_per_s": round(stats["docs"] / seconds, 3) if seconds else 0.0,
               "first_shard_s": stats.get("first_shard_s"), **result}
    manifest.finish(stats["shards"], summary)
    return summary


def _run_local(pipeline: Any, shards: Iterable[Tuple[int, List[Dict[str, Any]]]], finish, *,
               workers: int, batch_size: int, text_field: str, docbin: bool,
               show_progress: bool) -> Dict[str, Any]:
    from tqdm import tqdm

    nlp = load_nlp(pipeline)
    open_shards: List[Tuple[int, List[Dict[str, Any]]]] = []

    def records() -> Iterator[Dict[str, Any]]:
        for k, recs in shards:  # one nlp.pipe stream over all pending shards
            open_shards.append((k, recs))
            yield from recs

    t = time.perf_counter()
    n = 0
    outs: List[Dict[str, Any]] = []
    docbins: List[Optional[bytes]] = []
    with tqdm(desc="annotate", unit="doc", disable=not show_progress, leave=False) as bar:
        for rec, data in annotate_records(nlp, records(), text_field=text_field,
                                          batch_size=batch_size, n_process=workers, docbin=docbin):
            outs.append(rec)
            docbins.append(data)
            bar.update(1)
            n += 1
            k, recs = open_shards[0]
            if len(outs) == len(recs):
                finish(k, recs, outs, docbins)
                open_shards.pop(0)
                outs, docbins = [], []
    busy = time.perf_counter() - t
    name = f"local:{os.getpid()}" + (f" (n_process={workers})" if workers > 1 else "")
    return {"workers": {name: {"docs": n, "busy_s": round(busy, 3),
                               "docs_per_s": round(n / busy, 3) if busy else 0.0}},
            "restarts": 0, "dropped_repeats": 0}
