"""Checksums of saved weights: the one place they are computed and checked.

Every weights file a component writes is listed with its sha256 in the spec
next to it (``spec.json`` of the EntQA reader and retriever, ``compact.json`` of a
compact coreference model, ``scorer.json`` of the final scorer) or, for a folder
written by Hugging Face's ``save_pretrained`` or thinc, in the manifest
``sha256.json`` of that folder. Loading checks the file against it before reading
it: a damaged or changed file is KBE159, a listed file that is missing KBE170 and
a weights file nobody listed KBE171 (it would otherwise be read unchecked).
Folders saved before checksums (no manifest) load as before.
"""
import hashlib
import json
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

from ..errors import Errors

MANIFEST = "sha256.json"
# file names that hold weights (what from_pretrained, safetensors, numpy or thinc read)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".npy", ".pt", ".pth")
WEIGHT_NAMES = ("model",)  # thinc's Model.to_bytes output, as ETRAG writes it

PathLike = Union[str, Path]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_weights_file(path: Path) -> bool:
    return path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name in WEIGHT_NAMES)


def weights_files(folder: PathLike) -> Dict[str, str]:
    """``{relative path: sha256}`` of every weights file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder).as_posix()): sha256_file(p)
            for p in sorted(folder.rglob("*")) if is_weights_file(p)}


def read_checked(path: PathLike, expected: Optional[str]) -> bytes:
    """The bytes of ``path`` after checking them against ``expected`` (KBE170 if the
    file is missing, KBE159 if it differs; ``expected`` None: written before
    checksums, not checked)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(Errors.KBE170.format(path=path))
    data = path.read_bytes()
    if expected is not None:
        found = sha256_bytes(data)
        if found != expected:
            raise ValueError(Errors.KBE159.format(path=path, expected=expected, found=found))
    return data


def check_files(folder: PathLike, recorded: Optional[Dict[str, str]], *,
                exclude: Iterable[str] = ()) -> None:
    """Check every file of ``recorded`` (``{relative path: sha256}``) under ``folder``,
    and that no other weights file is there (KBE171; ``exclude``: names checked
    elsewhere, e.g. a delta whose sha256 the spec records on its own)."""
    if recorded is None:
        return
    folder = Path(folder)
    for rel, expected in recorded.items():
        path = folder / rel
        if not path.exists():
            raise FileNotFoundError(Errors.KBE170.format(path=path))
        found = sha256_file(path)
        if found != expected:
            raise ValueError(Errors.KBE159.format(path=path, expected=expected, found=found))
    skip = set(recorded) | set(exclude)
    extra = [p for p in sorted(folder.rglob("*"))
             if is_weights_file(p) and p.relative_to(folder).as_posix() not in skip
             and p.name != MANIFEST]
    if extra:
        raise ValueError(Errors.KBE171.format(path=extra[0], folder=folder))


def write_manifest(folder: PathLike) -> Dict[str, str]:
    """List every weights file under ``folder`` with its sha256 in ``folder/sha256.json``."""
    folder = Path(folder)
    files = weights_files(folder)
    (folder / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True), encoding="utf-8")
    return files


def check_manifest(folder: PathLike) -> None:
    """Check the weights under ``folder`` against its ``sha256.json`` (none: a folder
    saved before checksums, not checked)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if manifest.exists():
        check_files(folder, json.loads(manifest.read_text(encoding="utf-8")))
