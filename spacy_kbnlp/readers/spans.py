"""Shared helpers of every corpus reader.

* The **alignment policy** for character offsets that do not fall on token
  boundaries (``expand`` = default, ``contract``, ``strict`` = error), applied by
  :func:`align_char_span` and counted in an :class:`AlignmentStats` object.
  Nothing is silently dropped: a span that cannot be aligned at all (e.g. it
  covers only whitespace, or ``contract`` leaves no token) is counted as
  ``dropped`` and reported in the warning summary.
* Error locations (``file:line``), file listing for ``path`` = file or directory,
  Doc construction from given tokens, and the generic registered corpus
  (``Callable[[Language], Iterator[Example]]``) used by every ``create_*_reader``.
"""
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example

from ..core.locations import where  # noqa: F401  (re-exported for the readers)
from ..errors import Errors, Warnings

POLICIES = ("expand", "contract", "strict")
DEFAULT_POLICY = "expand"


@dataclass
class AlignmentStats:
    """Counts of one reader run: how character spans were mapped to tokens, and
    what the reader produced. ``to_dict()`` is JSON-serializable."""

    reader: str = ""
    policy: str = DEFAULT_POLICY
    docs: int = 0
    tokens: int = 0
    char_spans: int = 0      # character spans aligned to tokens
    exact: int = 0           # ... that fell on token boundaries
    expanded: int = 0        # ... widened to the enclosing tokens (policy "expand")
    contracted: int = 0      # ... narrowed to the tokens inside (policy "contract")
    dropped: int = 0         # ... that could not be aligned at all (no token left)
    ents_skipped: int = 0    # spans that could not go to doc.ents because they overlap
    replaced_tokens: int = 0  # empty tokens replaced by a placeholder
    examples: List[str] = field(default_factory=list)  # first misaligned spans, "file:line [s, e) 'text'"
    max_examples: int = 10

    @property
    def misaligned(self) -> int:
        return self.expanded + self.contracted + self.dropped

    def note(self, kind: str, where: str, start: int, end: int, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where} [{start}, {end}) {text!r} -> {kind}")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "reader": self.reader, "policy": self.policy, "docs": self.docs,
            "tokens": self.tokens, "char_spans": self.char_spans, "exact": self.exact,
            "expanded": self.expanded, "contracted": self.contracted, "dropped": self.dropped,
            "ents_skipped": self.ents_skipped, "replaced_tokens": self.replaced_tokens,
            "examples": list(self.examples),
        }

    def summary(self) -> str:
        return Warnings.KBW050.format(
            reader=self.reader, n=self.misaligned, total=self.char_spans, policy=self.policy,
            expanded=self.expanded, contracted=self.contracted, dropped=self.dropped,
            examples="; ".join(self.examples[:3]),
        )

    def warn(self) -> None:
        """Warn once per run when anything was misaligned, skipped or replaced."""
        if self.misaligned:
            warnings.warn(self.summary())
        if self.ents_skipped:
            warnings.warn(Warnings.KBW051.format(reader=self.reader, n=self.ents_skipped))


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(Errors.KBE058.format(policy=policy, options=", ".join(POLICIES)))
    return policy


def align_char_span(
    doc: Doc,
    start: int,
    end: int,
    *,
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    loc: str = "",
    label: str = "",
    kb_id: str = "",
) -> Optional[Span]:
    """Token span for the character span ``[start, end)`` of ``doc.text`` under
    ``policy``. Raises KBE055 when the offsets are out of range or empty, KBE056
    when they miss token boundaries under ``strict``. Returns None (counted as
    ``dropped``) when no token can be found."""
    n = len(doc.text)
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) \
            or isinstance(end, bool) or not (0 <= start < end <= n):
        raise ValueError(Errors.KBE055.format(loc=loc, start=start, end=end, length=n))
    if stats is not None:
        stats.char_spans += 1
    span = doc.char_span(start, end, label=label, kb_id=kb_id)
    if span is not None:
        if stats is not None:
            stats.exact += 1
        return span
    text = doc.text[start:end]
    if policy == "strict":
        raise ValueError(Errors.KBE056.format(loc=loc, start=start, end=end, text=text))
    mode = "expand" if policy == "expand" else "contract"
    span = doc.char_span(start, end, label=label, kb_id=kb_id, alignment_mode=mode)
    if span is None or len(span) == 0:
        if stats is not None:
            stats.note("dropped", loc, start, end, text)
        return None
    if stats is not None:
        stats.note("expanded" if mode == "expand" else "contracted", loc, start, end, text)
    return span


def check_token_span(doc: Doc, start: Any, end: Any, loc: str) -> None:
    """Raise KBE057 unless ``0 <= start < end <= len(doc)`` (ints)."""
    ok = all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end))
    if not ok or not (0 <= start < end <= len(doc)):
        raise ValueError(Errors.KBE057.format(loc=loc, start=start, end=end, length=len(doc)))


def set_ents(doc: Doc, spans: Iterable[Span], stats: Optional[AlignmentStats] = None) -> None:
    """Set ``doc.ents`` to ``spans`` (sorted), skipping (and counting) any span
    that overlaps one already placed (e.g. two labels widened onto one token)."""
    taken = set()
    kept: List[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        toks = set(range(span.start, span.end))
        if toks & taken:
            if stats is not None:
                stats.ents_skipped += 1
            continue
        taken |= toks
        kept.append(span)
    doc.ents = kept


def doc_from_tokens(
    nlp: Language,
    words: Sequence[str],
    spaces: Optional[Sequence[bool]] = None,
    *,
    sent_starts: Optional[Iterable[int]] = None,
) -> Doc:
    """A Doc with exactly ``words`` (single spaces between them unless ``spaces``
    is given, no trailing space). ``sent_starts`` (token indices) set
    ``is_sent_start`` for every token (True at the starts, False elsewhere)."""
    words = list(words)
    if spaces is None:
        spaces = [True] * len(words)
        if words:
            spaces[-1] = False
    kwargs: Dict[str, Any] = {}
    if sent_starts is not None and words:
        starts = set(sent_starts) | {0}
        kwargs["sent_starts"] = [i in starts for i in range(len(words))]
    return Doc(nlp.vocab, words=words, spaces=list(spaces), **kwargs)


def list_files(path: Union[str, Path], patterns: Sequence[str], *, fmt: str) -> List[Path]:
    """``[path]`` for a file, else the files of directory ``path`` matching one of
    ``patterns`` (glob, non-recursive), sorted by name. Raises KBE051."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted({p for pat in patterns for p in path.glob(pat) if p.is_file()})
        if found:
            return found
        raise ValueError(Errors.KBE051.format(path=path, fmt=fmt, patterns=", ".join(patterns)))
    raise ValueError(Errors.KBE052.format(path=path))


def finish(stats: Optional[AlignmentStats], own: bool) -> None:
    """Emit the warning summary at the end of a run that created its own stats."""
    if stats is not None and own:
        stats.warn()


def start_stats(stats: Optional[AlignmentStats], reader: str, policy: str):
    """``(stats, own)``: the caller's stats object, or a fresh one we own and warn with."""
    check_policy(policy)
    if stats is None:
        return AlignmentStats(reader=reader, policy=policy), True
    if not stats.reader:
        stats.reader = reader
    stats.policy = policy
    return stats, False


def count_doc(stats: AlignmentStats, doc: Doc) -> None:
    stats.docs += 1
    stats.tokens += len(doc)


def counted(docs: Iterable[Doc], stats: AlignmentStats, own: bool, limit: int = 0) -> Iterator[Doc]:
    """The docs of a reader's lazy ``docs`` iterator, at most ``limit`` (0 = all; no
    doc beyond the limit is built), counted in ``stats``; the warning summary is
    emitted at the end when the run owns its stats."""
    iterator = iter(docs)
    n = 0
    while not limit or n < limit:
        doc = next(iterator, None)
        if doc is None:
            break
        count_doc(stats, doc)
        n += 1
        yield doc
    finish(stats, own)


def make_example(nlp: Language, gold: Doc) -> Example:
    """Example with an unannotated predicted Doc holding exactly the gold tokens."""
    words = [t.text for t in gold]
    spaces = [bool(t.whitespace_) for t in gold]
    predicted = Doc(nlp.vocab, words=words, spaces=spaces)
    return Example(predicted, gold)


class GoldCorpus:
    """``Callable[[Language], Iterator[Example]]`` over one reader, following the
    ``spacy.Corpus.v1`` conventions ``limit`` (0 = all) and ``shuffle``."""

    def __init__(
        self,
        read: Callable[..., Iterator[Doc]],
        path: Union[str, Path],
        *,
        limit: int = 0,
        shuffle: bool = False,
        seed: Optional[int] = None,
        **options: Any,
    ) -> None:
        self.read = read
        self.path = Path(path)
        self.limit = limit
        self.shuffle = shuffle
        self.seed = seed
        self.options = options

    def __call__(self, nlp: Language) -> Iterator[Example]:
        docs: Iterable[Doc] = self.read(self.path, nlp, **self.options)
        if self.shuffle:
            docs = list(docs)
            rng = random.Random(self.seed) if self.seed is not None else random
            rng.shuffle(docs)  # type: ignore[arg-type]
        for i, doc in enumerate(docs):
            if self.limit and i >= self.limit:
                break
            yield make_example(nlp, doc)
