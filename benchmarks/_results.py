"""The one way benchmark scripts write ``benchmarks/results/*.json``: read the file just
before writing, merge the new entries into it by key, never drop the others (a run of
one system, size or setting must not erase the rows of another), write atomically.

* ``merge_json(path, new, depth)``: a results file that is a JSON object. Objects are
  merged key by key down to ``depth`` levels; below that a value is replaced whole (an
  entry is one run's record: merging its fields would mix two runs). ``depth=2`` for
  ``{"systems": {name: entry}, ...}``.
* ``write_block(path, name, body)``: the generated blocks of the Markdown notes.
* ``merge_rows(path, rows, key)``: a results file that is a JSON list of records; a new
  record replaces the old one with the same ``key`` (a tuple of field names), in place;
  the others stay in their order, new keys are appended.

Not a package module: the scripts import it as ``_results`` (``benchmarks/`` is on
``sys.path`` when a script runs)."""
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Union

PathLike = Union[str, Path]


def machine() -> Dict[str, Any]:
    """What a results entry records of the machine it was measured on."""
    import platform

    return {"cpus": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "python": platform.python_version(), "platform": platform.platform()}


def read_json(path: PathLike, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: PathLike, data: Any, indent: int = 1, sort_keys: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then
    a rename), with a final newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")
        # mkstemp makes the file private (0600): keep the old file's mode, or the umask's default
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def merged(old: Any, new: Any, depth: int) -> Any:
    """``new`` merged into ``old`` (neither is changed): objects key by key for
    ``depth`` levels; anything else (and anything deeper) is taken from ``new``."""
    if depth <= 0 or not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out = dict(old)
    for key, value in new.items():
        out[key] = merged(old[key], value, depth - 1) if key in old else value
    return out


def merge_json(path: PathLike, new: Dict[str, Any], depth: int = 2, sort_keys: bool = False,
               indent: int = 1) -> Dict[str, Any]:
    """Merge the object ``new`` into the JSON object at ``path`` (see ``merged``),
    write it and return what was written."""
    out = merged(read_json(path, {}), new, depth)
    write_json(path, out, indent=indent, sort_keys=sort_keys)
    return out


def row_key(row: Dict[str, Any], key: Sequence[str]) -> str:
    return json.dumps([row.get(k) for k in key], sort_keys=True)


def merge_rows(path: PathLike, rows: Iterable[Dict[str, Any]], key: Sequence[str]) -> List[Dict[str, Any]]:
    """Merge the records ``rows`` into the JSON list at ``path`` by ``key`` (field
    names; a field's value may be any JSON value), write it and return what was
    written."""
    out = list(read_json(path, []))
    where = {row_key(r, key): i for i, r in enumerate(out)}
    for row in rows:
        k = row_key(row, key)
        if k in where:
            out[where[k]] = row
        else:
            where[k] = len(out)
            out.append(row)
    write_json(path, out)
    return out


def write_block(path: PathLike, name: str, body: str, *, opening: str = "start", append: bool = False) -> None:
    """Replace the generated block ``<!-- name:start -->...<!-- name:end -->`` of the
    Markdown file ``path`` with ``body`` (``opening="begin"``: the markers of
    README_kb_scale.md). A file without the block is left alone, or, with ``append``,
    gets it at its end (created where missing)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = f"<!-- {name}:{opening} -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    elif append:
        text = (text + "\n" if text else "") + block + "\n"
    else:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
