"""CoNLL-2012 coreference files -> gold Docs.

Two layouts, detected per line:

* GUM / OntoGUM 3 columns ``index<TAB>token<TAB>coref`` (``# begin document
  NAME``, no sentence breaks, brackets concatenated without ``|``, an empty
  name means "use the file name");
* OntoNotes CoNLL-2012 with 12+ whitespace-separated columns (``#begin document
  (NAME); part 000``, token in column 4, coref in the last column with
  ``|``-separated brackets, a blank line after each sentence).

A file may hold several documents. Clusters go to ``doc.spans["coref_clusters_N"]``
(N from 1, ordered by first mention; mentions sorted); their labels from the file
(``person-3-Lord_Byron``, ``12``) go to ``doc._.source["cluster_labels"]`` in the
same order. Blank lines set sentence starts; ``sentences_from`` (a GUM tsv folder,
or ``"auto"`` = ``../tsv`` or ``../../gum/tsv`` next to the conll folder) takes
them from the tsv ``#Text=`` lines instead, together with any empty token.
"""
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..errors import Errors, Warnings
from ..extensions import install_extensions, set_coref_clusters
from .spans import (DEFAULT_POLICY, AlignmentStats, GoldCorpus, counted, doc_from_tokens,
                    list_files, start_stats, where)

FORMAT = "conll2012"
PATTERNS = ("*.conll", "*_conll", "*.gold_conll", "*.v4_gold_conll", "*.conll2012")
BEGIN_RE = re.compile(r"^#\s*begin document\s*(.*?)\s*$")
END_RE = re.compile(r"^#\s*end document")
NAME_RE = re.compile(r"^\((.*)\);\s*part\s+(\d+)$")
BRACKET_RE = re.compile(r"\(([^()|]+)\)|\(([^()|]+)|([^()|]+)\)")
EMPTY_COREF = ("_", "-", "")


def parse_coref_column(col: str, loc: str) -> List[Tuple[str, str]]:
    """``[(kind, label)]`` with kind ``"one"`` (``(X)``), ``"open"`` (``(X``) or
    ``"close"`` (``X)``); accepts ``|``-separated or concatenated brackets."""
    if col in EMPTY_COREF:
        return []
    out = []
    pos = 0
    for m in BRACKET_RE.finditer(col):
        gap = col[pos:m.start()]
        if gap.strip("|"):
            raise ValueError(Errors.KBE060.format(loc=loc, value=col, why=f"unexpected {gap!r}"))
        pos = m.end()
        one, opened, closed = m.groups()
        out.append(("one", one) if one else ("open", opened) if opened else ("close", closed))
    if col[pos:].strip("|") or not out:
        raise ValueError(Errors.KBE060.format(loc=loc, value=col,
                                              why=f"unexpected {col[pos:]!r}"))
    return out


def _doc_id(raw: str, file: Path, index: int) -> Tuple[str, Optional[str]]:
    """``(id, part)``: ``(name); part 000`` -> ``name_0`` (the e2e-coref key);
    an empty name -> the file stem (``stem_<index>`` after the first document)."""
    m = NAME_RE.match(raw)
    if m:
        name, part = m.group(1), m.group(2)
        if not name:
            name = file.stem
        return f"{name}_{int(part)}", part
    if not raw:
        return (file.stem if index == 0 else f"{file.stem}_{index}"), None
    return raw, None


def find_tsv(file: Path, sentences_from: Union[str, Path, None]) -> Optional[Path]:
    """The GUM tsv with the same stem as ``file``: from the folder
    ``sentences_from``, or with ``"auto"`` from ``../tsv`` or ``../../gum/tsv``."""
    if sentences_from is None or sentences_from == "":
        return None
    if str(sentences_from) == "auto":
        dirs = [file.parent.parent / "tsv", file.parent.parent.parent / "gum" / "tsv"]
    else:
        dirs = [Path(sentences_from)]
    for d in dirs:
        cand = d / f"{file.stem}.tsv"
        if cand.is_file():
            return cand
    return None


def _tsv_tokens(path: Path) -> Tuple[List[str], List[int]]:
    from .gum_tsv import read_tsv_tokens

    return read_tsv_tokens(path)


def clusters_from_mentions(
    mentions: Dict[str, List[Tuple[int, int]]], drop_singletons: bool = False
) -> Tuple[List[List[Tuple[int, int]]], List[str]]:
    """Clusters (sorted mentions, deduplicated) ordered by first mention, and their labels."""
    items = []
    for label, spans in mentions.items():
        spans = sorted(set(spans))
        if drop_singletons and len(spans) < 2:
            continue
        items.append((spans, label))
    items.sort(key=lambda x: (x[0][0], x[1]))
    return [s for s, _ in items], [lab for _, lab in items]


def read_conll2012(
    path: Union[str, Path],
    nlp: Language,
    *,
    drop_singletons: bool = False,
    sentences_from: Union[str, Path, None] = None,
    empty_token: str = "_",
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    limit: int = 0,
) -> Iterator[Doc]:
    """Yield one gold Doc per ``begin document`` ... ``end document`` of the file(s)."""
    install_extensions()
    stats, own = start_stats(stats, FORMAT, policy)
    docs = (doc for file in list_files(path, PATTERNS, fmt=FORMAT)
            for doc in _read_file(nlp, file, find_tsv(file, sentences_from), drop_singletons,
                                  empty_token, stats))
    return counted(docs, stats, own, limit)


def _read_file(nlp, file: Path, tsv: Optional[Path], drop_singletons: bool, empty_token: str,
               stats: AlignmentStats) -> Iterator[Doc]:
    state: Optional[Dict[str, Any]] = None
    index = 0

    def new_state(raw: str, lineno: int) -> Dict[str, Any]:
        return {"raw": raw, "line": lineno, "words": [], "sent_starts": [], "breaks": False,
                "opened": defaultdict(list), "mentions": defaultdict(list), "empty": []}

    with open(file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            loc = where(file, lineno)
            m = BEGIN_RE.match(line)
            if m:
                if state is not None:  # a begin without an end: close the open document
                    yield _finish_doc(nlp, file, state, index, tsv, drop_singletons, empty_token,
                                      stats, loc)
                    index += 1
                state = new_state(m.group(1), lineno)
                continue
            if END_RE.match(line):
                if state is not None:
                    yield _finish_doc(nlp, file, state, index, tsv, drop_singletons, empty_token,
                                      stats, loc)
                    index += 1
                state = None
                continue
            if line.startswith("#"):
                continue
            if not line.strip():
                if state is not None and state["words"]:
                    state["breaks"] = True
                    if state["sent_starts"][-1:] != [len(state["words"])]:
                        state["sent_starts"].append(len(state["words"]))
                continue
            if state is None:  # rows before any header: one document named after the file
                state = new_state("", lineno)
            cols = line.split("\t")
            if len(cols) == 3:
                token, coref = cols[1], cols[2]
            else:
                cols = line.split()
                if len(cols) < 6:
                    raise ValueError(Errors.KBE061.format(loc=loc, value=line))
                token, coref = cols[3], cols[-1]
            i = len(state["words"])
            if not state["sent_starts"]:
                state["sent_starts"].append(0)
            if token == "":
                state["empty"].append((i, loc))
            state["words"].append(token)
            for kind, label in parse_coref_column(coref.strip(), loc):
                if kind == "one":
                    state["mentions"][label].append((i, i + 1))
                elif kind == "open":
                    state["opened"][label].append((i, lineno))
                else:
                    if not state["opened"][label]:
                        raise ValueError(Errors.KBE060.format(
                            loc=loc, value=coref, why=f"'{label})' closes a mention never opened"))
                    state["mentions"][label].append((state["opened"][label].pop()[0], i + 1))
    if state is not None and state["words"]:
        yield _finish_doc(nlp, file, state, index, tsv, drop_singletons, empty_token, stats,
                          where(file, state["line"]))


def _finish_doc(nlp, file, state, index, tsv, drop_singletons, empty_token, stats, loc) -> Doc:
    doc_id, part = _doc_id(state["raw"], file, index)
    for label, starts in state["opened"].items():
        if starts:
            token, lineno = starts[0]
            raise ValueError(Errors.KBE060.format(
                loc=where(file, lineno), value=f"({label}", why=f"mention opened at token "
                f"{token} of document '{doc_id}' is never closed"))
    words: List[str] = state["words"]
    sent_starts: Optional[List[int]] = state["sent_starts"] if state["breaks"] else None
    if tsv is not None:
        tsv_words, tsv_starts = _tsv_tokens(tsv)
        if len(tsv_words) != len(words):
            raise ValueError(Errors.KBE068.format(path=tsv, n_tsv=len(tsv_words), doc=doc_id,
                                                  n_conll=len(words)))
        sent_starts = tsv_starts
        for i, _ in state["empty"]:
            words[i] = tsv_words[i]
    for i, eloc in state["empty"]:
        if words[i] == "":
            words[i] = empty_token
            stats.replaced_tokens += 1
            warnings.warn(Warnings.KBW052.format(loc=eloc, placeholder=empty_token))
    doc = doc_from_tokens(nlp, words, sent_starts=sent_starts)
    clusters, labels = clusters_from_mentions(state["mentions"], drop_singletons)
    set_coref_clusters(doc, clusters)
    source: Dict[str, Any] = {"format": FORMAT, "file": str(file), "line": state["line"],
                              "id": doc_id, "cluster_labels": labels}
    if part is not None:
        source["part"] = part
    if tsv is not None:
        source["sentences_from"] = str(tsv)
    doc._.source = source
    return doc


@registry.readers("spacy_kbnlp.CorefConllCorpus.v1")
def create_conll_coref_reader(
    path: Union[str, Path],
    limit: int = 0,
    shuffle: bool = False,
    drop_singletons: bool = False,
    sentences_from: Optional[str] = None,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from CoNLL-2012 coreference file(s) (3-column GUM or 12-column OntoNotes)."""
    return GoldCorpus(read_conll2012, path, limit=limit, shuffle=shuffle,
                      drop_singletons=drop_singletons, sentences_from=sentences_from)
