"""KB commands: ``build-kb``, ``kb-info``, ``kb-query``, ``kb-add``, ``kb-remove``.

Each command is a thin wrapper around an importable function of the same name
without ``_cli`` (``build_kb``, ``kb_info``, ``query_kb``, ``add_to_kb``,
``remove_from_kb``).
"""
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from wasabi import msg, table

from ..errors import Errors
from ._util import Arg, Opt, app, setup_gpu

PathLike = Union[str, Path]


def parse_index_params(items: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``["nlist=1024", "nprobe=32"]`` -> ``{"nlist": 1024, "nprobe": 32}`` (values as JSON)."""
    out: Dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(Errors.KBE024.format(name="--param", value=item, why="use KEY=VALUE, e.g. nprobe=32"))
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _encoder(name: Optional[str], batch_size: Optional[int] = None, max_length: int = 256, pooling: str = "mean"):
    from ..encoders.hf import HFEncoder

    return HFEncoder(name, batch_size=batch_size or 64, max_length=max_length, pooling=pooling)


def build_kb(
    entities: PathLike,
    output: PathLike,
    *,
    encoder: Optional[str] = None,
    preset: str = "flat",
    template: Optional[str] = None,
    dtype: str = "float32",
    batch_size: Optional[int] = None,
    max_length: int = 256,
    duplicates: str = "error",
    index_params: Optional[Dict[str, Any]] = None,
    show_progress: bool = True,
    engine: str = "local",
    workers: int = 2,
    address: Optional[str] = None,
) -> Dict[str, Any]:
    """Read entity records (any source of ``load_records``), encode, index and
    write a DenseKB folder. Returns ``kb_info`` of the result plus timings.
    ``engine="ray"``: the entity texts are encoded by ``workers`` Ray actors
    (:class:`spacy_kbnlp.scale.ray_engine.RayEncoder`, on the cluster at
    ``address`` or a local Ray); the index is built as in one process."""
    from ..kb.dense_kb import DenseKB
    from ..kb.records import DEFAULT_TEMPLATE, load_records

    if engine not in ("local", "ray"):
        raise ValueError(Errors.KBE401.format(engine=engine, options="local, ray"))
    if engine == "ray":  # before the (long) reading: KBE400 without Ray
        from ..scale.ray_engine import RayEncoder, require_ray

        require_ray()
    t0 = time.perf_counter()
    records = load_records(entities, duplicates=duplicates)
    t_read = time.perf_counter() - t0
    enc = _encoder(encoder, batch_size, max_length)
    if engine == "ray":
        enc = RayEncoder(enc, workers=workers, address=address)
    t1 = time.perf_counter()
    kb = DenseKB.build(records, enc, preset=preset, template=template or DEFAULT_TEMPLATE, dtype=dtype,
                       batch_size=batch_size, show_progress=show_progress, **(index_params or {}))
    t_build = time.perf_counter() - t1
    t2 = time.perf_counter()
    kb.to_disk(output)
    t_write = time.perf_counter() - t2
    info = kb.info(output)
    info["timings"] = {"read_s": t_read, "encode_and_index_s": t_build, "write_s": t_write,
                       "total_s": time.perf_counter() - t0}
    return info


def kb_info(path: PathLike, *, verify: bool = True) -> Dict[str, Any]:
    """Manifest, counts and disk size of a DenseKB folder."""
    from ..kb.dense_kb import DenseKB

    return DenseKB.from_disk(path, verify=verify).info(path)


def query_kb(path: PathLike, texts: Sequence[str], *, top_k: int = 5,
             encoder: Optional[str] = None) -> List[List[Dict[str, Any]]]:
    """Top-``k`` entities per text: ``[{"id", "name", "score"}, ...]`` per text.
    ``encoder`` defaults to the one named in the KB manifest."""
    from ..kb.dense_kb import DenseKB

    kb = DenseKB.from_disk(path)
    enc = _encoder(encoder if encoder is not None else kb.encoder_name, pooling=kb.pooling or "mean",
                   max_length=kb.max_length or 256)
    scores, ids = kb.search_text(list(texts), top_k, encoder=enc)
    return [[{"id": eid, "name": kb.get(eid).name, "score": float(s)} for eid, s in zip(row, srow)]
            for row, srow in zip(ids, scores)]


def add_to_kb(path: PathLike, entities: PathLike, *, update: bool = False, batch_size: Optional[int] = None,
              show_progress: bool = True) -> Dict[str, int]:
    """Add the records of ``entities`` to the KB folder (encoded with the KB's
    encoder, no index rebuild). With ``update``, records whose id exists replace
    the old ones (re-encoded where their text changed); otherwise they are an error."""
    from ..kb.dense_kb import DenseKB
    from ..kb.records import load_records

    kb = DenseKB.from_disk(path)
    enc = _encoder(kb.encoder_name, batch_size, kb.max_length or 256, kb.pooling or "mean")
    records = load_records(entities)
    old = [r for r in records if r.id in kb] if update else []
    new = [r for r in records if r.id not in kb] if update else records
    changed = kb.update(old, encoder=enc, show_progress=show_progress) if old else 0
    kb.add(new, encoder=enc, show_progress=show_progress)
    kb.to_disk(path)
    return {"added": len(new), "updated": len(old), "reencoded": changed + len(new), "count": len(kb)}


def remove_from_kb(path: PathLike, ids: Sequence[str]) -> Dict[str, int]:
    """Remove entities by id from the KB folder (no index rebuild)."""
    from ..kb.dense_kb import DenseKB

    kb = DenseKB.from_disk(path)
    kb.remove(ids)
    kb.to_disk(path)
    return {"removed": len(set(ids)), "count": len(kb)}


def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return str(n_bytes)


def print_info(info: Dict[str, Any]) -> None:
    rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in info.items()
            if k not in ("checksum", "timings", "disk_bytes")]
    if "disk_bytes" in info:
        rows.append(("disk size", _size(info["disk_bytes"])))
    print(table(rows, divider=False))


def _fail(err: Exception) -> None:
    msg.fail(str(err.args[0]) if err.args else str(err), exits=1)


@app.command("build-kb")
def build_kb_cli(
    # fmt: off
    entities: Path = Arg(..., help="Entity JSONL (docs/kb.md), Wikidata-style JSON, spaCy InMemoryLookupKB folder, pipeline folder or DenseKB folder", exists=True),
    output: Path = Arg(..., help="Output DenseKB folder"),
    encoder: Optional[str] = Opt(None, "--encoder", "-e", help="Encoder path or HF name (default: bundled all-MiniLM-L6-v2)"),
    preset: str = Opt("flat", "--preset", "-p", help="Index preset: flat, hnsw, sq8, ivf_flat, ivf_sq8, ivf_pq"),
    param: Optional[List[str]] = Opt(None, "--param", "-P", help="Index parameter KEY=VALUE (repeatable), e.g. nprobe=32"),
    template: Optional[str] = Opt(None, "--template", "-t", help="Entity text template (default: '{name} [SEP] {description}')"),
    dtype: str = Opt("float32", "--dtype", help="Stored vector dtype: float32 or float16"),
    batch_size: Optional[int] = Opt(None, "--batch-size", "-b", help="Encoding batch size"),
    max_length: int = Opt(256, "--max-length", help="Maximum encoder input length in tokens"),
    duplicates: str = Opt("error", "--duplicates", help="Duplicate ids in the input: error, first or last"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    engine: str = Opt("local", "--engine", help="local, or ray: entity texts encoded by Ray workers"),
    workers: int = Opt(2, "--workers", "-w", help="Ray workers (--engine ray)"),
    address: Optional[str] = Opt(None, "--address", help="Ray cluster address (default: a local Ray started and stopped here)"),
    # fmt: on
):
    """Build a dense entity KB: encode every entity text and index the vectors."""
    setup_gpu(gpu_id)
    try:
        info = build_kb(entities, output, encoder=encoder, preset=preset, template=template, dtype=dtype,
                        batch_size=batch_size, max_length=max_length, duplicates=duplicates,
                        index_params=parse_index_params(param), engine=engine, workers=workers,
                        address=address)
    except (FileNotFoundError, ValueError, KeyError, ImportError, RuntimeError) as err:
        _fail(err)
    t = info["timings"]
    msg.good(f"Built a KB of {info['count']} entities in {output} ({_size(info['disk_bytes'])}; "
             f"encode + index {t['encode_and_index_s']:.1f}s, total {t['total_s']:.1f}s)")
    print_info(info)


@app.command("kb-info")
def kb_info_cli(
    # fmt: off
    kb: Path = Arg(..., help="DenseKB folder", exists=True),
    as_json: bool = Opt(False, "--json", help="Print JSON"),
    no_verify: bool = Opt(False, "--no-verify", help="Skip the checksum check"),
    # fmt: on
):
    """Show a KB's manifest, counts and disk size."""
    try:
        info = kb_info(kb, verify=not no_verify)
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        msg.info(f"Dense KB {kb}")
        print_info(info)


@app.command("kb-query")
def kb_query_cli(
    # fmt: off
    kb: Path = Arg(..., help="DenseKB folder", exists=True),
    texts: List[str] = Arg(..., help="Query text(s)"),
    top_k: int = Opt(5, "--top-k", "-k", help="Entities per query"),
    encoder: Optional[str] = Opt(None, "--encoder", "-e", help="Encoder (default: the one in the KB manifest)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Print the top-k entities of a KB for each query text."""
    setup_gpu(gpu_id)
    try:
        results = query_kb(kb, texts, top_k=top_k, encoder=encoder)
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    for text, hits in zip(texts, results):
        msg.text(f"Query: {text}")
        print(table([(i + 1, h["id"], h["name"], f"{h['score']:.3f}") for i, h in enumerate(hits)],
                    header=("#", "id", "name", "score"), divider=True))


@app.command("kb-add")
def kb_add_cli(
    # fmt: off
    kb: Path = Arg(..., help="DenseKB folder", exists=True),
    entities: Path = Arg(..., help="Entity records to add (any build-kb input)", exists=True),
    update: bool = Opt(False, "--update", "-u", help="Replace records whose id is already in the KB"),
    batch_size: Optional[int] = Opt(None, "--batch-size", "-b", help="Encoding batch size"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Add (or with --update, upsert) entities into a KB without rebuilding it."""
    setup_gpu(gpu_id)
    try:
        out = add_to_kb(kb, entities, update=update, batch_size=batch_size)
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    msg.good(f"Added {out['added']}, updated {out['updated']} entities; the KB has {out['count']}")


@app.command("kb-remove")
def kb_remove_cli(
    # fmt: off
    kb: Path = Arg(..., help="DenseKB folder", exists=True),
    ids: List[str] = Arg(..., help="Entity ids to remove"),
    # fmt: on
):
    """Remove entities by id from a KB without rebuilding it."""
    try:
        out = remove_from_kb(kb, ids)
    except (FileNotFoundError, ValueError, KeyError) as err:
        _fail(err)
    msg.good(f"Removed {out['removed']} entities; the KB has {out['count']}")


__all__ = ["build_kb", "kb_info", "query_kb", "add_to_kb", "remove_from_kb", "parse_index_params"]
