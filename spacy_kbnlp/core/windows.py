"""Token windows shared by every component (passages, segments, long documents)."""
from typing import Iterator, List, Tuple

from spacy.tokens import Doc, Span

from ..errors import Errors


def token_windows(n_tokens: int, length: int, stride: int) -> List[Tuple[int, int]]:
    """Windows ``(start, end)`` of ``length`` tokens every ``stride`` tokens covering
    ``range(n_tokens)``. The last window ends at ``n_tokens``; no window is empty and
    a text shorter than ``length`` gives one window. An empty text gives none."""
    if not isinstance(length, int) or length <= 0 or not isinstance(stride, int) or not 0 < stride <= length:
        raise ValueError(Errors.KBE153.format(length=length, stride=stride))
    if n_tokens <= 0:
        return []
    windows = []
    start = 0
    while True:
        end = min(start + length, n_tokens)
        windows.append((start, end))
        if end >= n_tokens:
            break
        start += stride
    return windows


def iter_passages(doc: Doc, length: int = 32, stride: int = 16, skip_space: bool = True) -> Iterator[Span]:
    """Passages of ``length`` spaCy tokens every ``stride`` tokens (EntQA used L=32, S=16).

    Whitespace-only passages are skipped when ``skip_space`` is true."""
    for start, end in token_windows(len(doc), length, stride):
        span = doc[start:end]
        if skip_space and not span.text.strip():
            continue
        yield span
