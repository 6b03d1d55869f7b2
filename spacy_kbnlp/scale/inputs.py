"""Input records for ``annotate``: JSON lines, a folder of ``.txt`` files, Parquet.

:func:`read_inputs` yields ``("ok", record)`` with ``record = {id_field: id,
text_field: text, ...other fields}`` in input order, and ``("reject", {"loc", "id",
"reason"})`` for a record without text, a duplicate id or undecodable bytes.
"""
import json
from pathlib import Path
from typing import Any, Dict, Iterator, Set, Tuple, Union

from ..errors import Errors

PathLike = Union[str, Path]
PARQUET_BATCH = 4096


def input_kind(path: PathLike) -> str:
    """``"txt"`` (a folder), ``"parquet"`` or ``"jsonl"`` (KBE402 when missing)."""
    path = Path(path)
    if path.is_dir():
        return "txt"
    if not path.exists():
        raise FileNotFoundError(Errors.KBE402.format(path=path))
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "jsonl"


def _jsonl(path: Path) -> Iterator[Tuple[str, Any, str]]:
    """``(loc, obj or None, problem)`` per non-empty line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            loc = f"{path.name}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield loc, None, f"undecodable bytes ({err.reason} at byte {err.start})"
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield loc, None, f"not JSON ({err.msg})"
                continue
            yield loc, obj, "" if isinstance(obj, dict) else "not a JSON object"


def _txt(folder: Path, text_field: str, id_field: str) -> Iterator[Tuple[str, Any, str]]:
    for path in sorted(p for p in folder.rglob("*.txt") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            yield rel, {id_field: rel}, f"undecodable bytes ({err.reason} at byte {err.start})"
            continue
        yield rel, {id_field: rel, text_field: text}, ""


def _parquet(path: Path, text_field: str, id_field: str) -> Iterator[Tuple[str, Any, str]]:
    try:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
    except Exception as err:  # ImportError or a damaged file
        raise ValueError(Errors.KBE407.format(path=path, err=err)) from None
    columns = pf.schema_arrow.names
    if text_field not in columns:
        raise ValueError(Errors.KBE408.format(path=path, field=text_field, columns=", ".join(columns)))
    n = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
        for obj in batch.to_pylist():
            loc = f"{path.name}:row {n}"
            n += 1
            text = obj.get(text_field)
            if isinstance(text, bytes):
                try:
                    obj[text_field] = text.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield loc, obj, f"undecodable bytes ({err.reason} at byte {err.start})"
                    continue
            yield loc, obj, ""


def read_inputs(path: PathLike, *, text_field: str = "text", id_field: str = "id"
                ) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Records of ``path`` in input order (see the module doc). A record without an
    id gets its location (``file:line``) as id."""
    path = Path(path)
    kind = input_kind(path)
    rows = (_txt(path, text_field, id_field) if kind == "txt" else
            _parquet(path, text_field, id_field) if kind == "parquet" else _jsonl(path))
    seen: Set[str] = set()
    for loc, obj, problem in rows:
        rid = obj.get(id_field) if isinstance(obj, dict) else None
        if not problem:
            text = obj.get(text_field)
            if not isinstance(text, str) or not text.strip():
                problem = f"no text in field '{text_field}'"
        if not problem and rid is None:
            rid = obj[id_field] = loc
        if not problem and not isinstance(rid, (str, int)):
            problem = f"id {rid!r} is not a string or integer"
        key = json.dumps(rid)
        if not problem and key in seen:
            problem = f"duplicate id {rid!r}"
        if problem:
            yield "reject", {"loc": loc, "id": rid if isinstance(rid, (str, int)) else None,
                             "reason": problem}
            continue
        seen.add(key)
        yield "ok", obj
