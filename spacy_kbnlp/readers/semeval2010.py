"""SemEval-2010 Task 8 (``TRAIN_FILE.TXT``, ``TEST_FILE_FULL.TXT``) -> gold Docs.

Blocks of four lines (latin-1, CRLF): ``id<TAB>"sentence"`` with ``<e1>..</e1>``
and ``<e2>..</e2>``, the directed label, ``Comment: ...``, a blank line. Only the
first line of a block is parsed for tags (one comment holds tags).

Tokenization is tag-aware: the sentence is cut at the four tags and each piece is
tokenized with ``nlp.make_doc``, so a tag always is a token boundary, also where a
tag is glued to a word (``The<e1>staff</e1>``, ids 213, 2740, 4612, 4784, 6373,
8411, 9867). ``doc.text`` is exactly the sentence without tags.

* ``doc.ents`` = the two nominals, label ``NOMINAL`` (e1 first in the text);
* ``doc._.rel_records`` = one record whose head/tail follow the direction of the
  label: ``Component-Whole(e2,e1)`` -> head = e2, tail = e1, label
  ``Component-Whole``; ``Other`` -> head = e1, tail = e2, label ``Other``;
* ``doc._.source``: ``format``, ``file``, ``line``, ``id``, ``label`` (as in the
  file, with direction) and ``comment``.
"""
import re
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..errors import Errors
from ..extensions import add_relation, install_extensions
from .spans import (DEFAULT_POLICY, AlignmentStats, GoldCorpus, counted, list_files,
                    set_ents, start_stats, where)

FORMAT = "semeval2010"
PATTERNS = ("TRAIN_FILE.TXT", "TEST_FILE_FULL.TXT", "*.semeval.txt")
TAG_RE = re.compile(r"</?e[12]>")
LABEL_RE = re.compile(r"^([A-Za-z]+-[A-Za-z]+)\((e[12]),(e[12])\)$")
NOMINAL = "NOMINAL"


def parse_label(label: str, loc: str) -> Tuple[str, str, str]:
    """``(relation, head, tail)`` with head/tail in ``{"e1", "e2"}``."""
    if label == "Other":
        return "Other", "e1", "e2"
    m = LABEL_RE.match(label)
    if m is None or m.group(2) == m.group(3):
        raise ValueError(Errors.KBE063.format(loc=loc, why=f"bad label {label!r}"))
    return m.group(1), m.group(2), m.group(3)


def tokenize_tagged(nlp: Language, sentence: str, loc: str) -> Tuple[Doc, Span, Span]:
    """Doc of the tag-free sentence with token boundaries at every tag, and the
    ``e1``/``e2`` spans."""
    tags = list(TAG_RE.finditer(sentence))
    if [t.group() for t in tags] != ["<e1>", "</e1>", "<e2>", "</e2>"]:
        raise ValueError(Errors.KBE063.format(
            loc=loc, why=f"tags {[t.group() for t in tags]} instead of <e1></e1><e2></e2>"))
    pieces, pos = [], 0
    for t in tags:
        pieces.append(sentence[pos:t.start()])
        pos = t.end()
    pieces.append(sentence[pos:])
    words: List[str] = []
    spaces: List[bool] = []
    bounds: List[int] = []  # token index at the start of each piece
    for piece in pieces:
        if piece[:1] == " " and words and not spaces[-1]:
            spaces[-1] = True
            piece = piece[1:]
        bounds.append(len(words))
        for tok in nlp.make_doc(piece):
            words.append(tok.text)
            spaces.append(bool(tok.whitespace_))
    bounds.append(len(words))
    doc = Doc(nlp.vocab, words=words, spaces=spaces)
    e1 = Span(doc, bounds[1], bounds[2], label=NOMINAL)
    e2 = Span(doc, bounds[3], bounds[4], label=NOMINAL)
    if len(e1) == 0 or len(e2) == 0:
        raise ValueError(Errors.KBE063.format(loc=loc, why="empty nominal"))
    return doc, e1, e2


def _blocks(file: Path) -> Iterator[Tuple[int, List[str]]]:
    """``(first line number, lines)`` per blank-line separated block."""
    block: List[str] = []
    start = 0
    with open(file, encoding="latin-1", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                if not block:
                    start = lineno
                block.append(line)
            elif block:
                yield start, block
                block = []
    if block:
        yield start, block


def read_semeval2010(
    path: Union[str, Path],
    nlp: Language,
    *,
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    limit: int = 0,
) -> Iterator[Doc]:
    """Yield one gold Doc per block of the SemEval-2010 Task 8 file(s) at ``path``."""
    install_extensions()
    stats, own = start_stats(stats, FORMAT, policy)
    return counted(_semeval_docs(path, nlp, stats), stats, own, limit)


def _semeval_docs(path: Union[str, Path], nlp: Language, stats: AlignmentStats) -> Iterator[Doc]:
    for file in list_files(path, PATTERNS, fmt=FORMAT):
        for lineno, block in _blocks(file):
            loc = where(file, lineno)
            sid, tab, sent = block[0].partition("\t")
            sent = sent.strip()
            if not tab or not sid.strip().isdigit() or len(sent) < 2 or sent[0] != '"' \
                    or sent[-1] != '"':
                raise ValueError(Errors.KBE063.format(loc=loc, why=f"bad first line {block[0]!r}"))
            if len(block) < 2:
                raise ValueError(Errors.KBE063.format(loc=loc, why="no label line"))
            label = block[1].strip()
            rel, head, tail = parse_label(label, where(file, lineno + 1))
            doc, e1, e2 = tokenize_tagged(nlp, sent[1:-1], loc)
            spans = {"e1": e1, "e2": e2}
            set_ents(doc, [e1, e2], stats)
            add_relation(doc, spans[head], spans[tail], rel, 1.0)
            comment = ""
            if len(block) > 2 and block[2].startswith("Comment:"):
                comment = block[2][len("Comment:"):].strip()
            doc._.source = {"format": FORMAT, "file": str(file), "line": lineno,
                            "id": int(sid), "label": label, "comment": comment}
            yield doc


@registry.readers("spacy_kbnlp.SemEval2010Corpus.v1")
def create_semeval_reader(
    path: Union[str, Path],
    limit: int = 0,
    shuffle: bool = False,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from SemEval-2010 Task 8 file(s): two nominals + one directed relation."""
    return GoldCorpus(read_semeval2010, path, limit=limit, shuffle=shuffle)
