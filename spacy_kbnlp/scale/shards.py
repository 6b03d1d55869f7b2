"""Shards and the manifest of an ``annotate`` output folder.

Valid input records are cut into shards of ``shard_size`` in input order. Shard
``k`` is written as ``shard-{k:05d}.jsonl`` (and ``shard-{k:05d}.spacy`` with
DocBin output) through a temporary file and ``os.replace``, then recorded in
``manifest.json`` (written the same way) with its count, the sha256 of its files
and the sha256 of its input ids. A rerun skips a shard only when all of these
match, so a shard is either complete and recorded, or annotated again: every
input id ends up exactly once in the output.
"""
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence
import warnings

from ..core.integrity import sha256_bytes
from ..errors import Errors, Warnings

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
TMP_SUFFIX = ".tmp"
MANIFEST_VERSION = 1


def shard_name(k: int, ext: str = "jsonl") -> str:
    return f"shard-{k:05d}.{ext}"


def ids_sha256(ids: Iterable[Any]) -> str:
    digest = hashlib.sha256()
    for rid in ids:
        digest.update(json.dumps(rid).encode("utf-8") + b"\n")
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and
    ``os.replace`` (a reader sees the old file or the whole new one)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Manifest:
    """``manifest.json`` of an output folder: the run's ``settings`` and ``shards``
    (``{"00003": {"count", "files": {name: sha256}, "ids_sha256", "first_id", "last_id"}}``)."""

    def __init__(self, folder: Path, settings: Dict[str, Any]):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST
        self.data: Dict[str, Any] = {"version": MANIFEST_VERSION, "settings": settings,
                                     "shards": {}, "complete": False}
        if self.path.exists():
            old = json.loads(self.path.read_text(encoding="utf-8"))
            diff = [f"{k}: {old['settings'].get(k)!r} before, {v!r} now"
                    for k, v in settings.items() if old.get("settings", {}).get(k) != v]
            if diff:
                raise ValueError(Errors.KBE403.format(path=self.folder, diff="; ".join(diff)))
            self.data["shards"] = old.get("shards", {})
        for tmp in self.folder.glob("*" + TMP_SUFFIX):  # left by a killed run
            tmp.unlink()

    def is_done(self, k: int, ids: Sequence[Any]) -> bool:
        """Whether shard ``k`` is recorded for exactly these input ``ids`` and its files
        are on disk with the recorded checksums (KBW402 when a file does not match)."""
        entry = self.data["shards"].get(f"{k:05d}")
        if entry is None or entry["count"] != len(ids) or entry["ids_sha256"] != ids_sha256(ids):
            return False
        for name, digest in entry["files"].items():
            path = self.folder / name
            why = ("missing" if not path.exists() else
                   "checksum differs" if sha256_bytes(path.read_bytes()) != digest else "")
            if why:
                warnings.warn(Warnings.KBW402.format(path=path, why=why))
                return False
        return True

    def record(self, k: int, ids: Sequence[Any], files: Dict[str, bytes]) -> None:
        """Write shard ``k``'s files atomically, then record them."""
        for name, data in files.items():
            atomic_write(self.folder / name, data)
        self.data["shards"][f"{k:05d}"] = {
            "count": len(ids), "files": {n: sha256_bytes(d) for n, d in files.items()},
            "ids_sha256": ids_sha256(ids), "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None}
        self.save()

    def finish(self, n_shards: int, summary: Dict[str, Any]) -> None:
        """Drop shards beyond ``n_shards`` (left by a run over a longer input: entries
        and files) and mark the run complete."""
        for key in [k for k in self.data["shards"] if int(k) >= n_shards]:
            for name in self.data["shards"].pop(key)["files"]:
                (self.folder / name).unlink(missing_ok=True)
        self.data["complete"] = True
        self.data["docs"] = sum(v["count"] for v in self.data["shards"].values())
        self.data["summary"] = summary
        self.save()

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=1, ensure_ascii=False).encode("utf-8"))


def write_rejects(folder: Path, rejects: List[Dict[str, Any]]) -> Optional[Path]:
    path = Path(folder) / REJECTS
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects).encode("utf-8"))
    return path
