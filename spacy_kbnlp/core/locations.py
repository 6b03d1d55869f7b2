"""Locations and JSON lines for error messages: the helpers that readers and the KB
share (below both layers, so the KB imports no reader)."""
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..errors import Errors


def where(path: Union[str, Path], line: Optional[int] = None, item: Optional[int] = None) -> str:
    """``file:line`` (1-based) or ``file[item]`` for error messages."""
    if line is not None:
        return f"{path}:{line}"
    if item is not None:
        return f"{path}[{item}]"
    return str(path)


def parse_line(line: str, loc: str) -> Dict[str, Any]:
    """Decode one JSON line; raise KBE053 naming ``loc`` (file:line) on bad JSON."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(Errors.KBE053.format(loc=loc, err=err)) from None
    if not isinstance(obj, dict):
        raise ValueError(Errors.KBE059.format(loc=loc, field="<line>", expected="a JSON object",
                                              value=obj))
    return obj
