"""Corpus readers: gold Docs from the shared corpora and the project JSONL formats.

``read_docs(path, fmt, nlp, **options)`` dispatches to the per-format readers in
``FORMATS``; ``"spacy"`` reads DocBin files (``.spacy``). Each per-format module
also registers a ``spacy_kbnlp.*Corpus.v1`` reader for ``spacy train`` configs.
"""
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.util import registry

from ..errors import Errors
from ..extensions import install_extensions
from .conll04 import read_conll04
from .conll2012 import read_conll2012
from .elevant import read_elevant
from .gum_tsv import read_gum_tsv
from .jsonl import read_jsonl, write_jsonl
from .select import check_fraction, fraction_subset
from .semeval2010 import read_semeval2010
from .spans import POLICIES, AlignmentStats, list_files, make_example


def read_docbin(path: Union[str, Path], nlp: Language, *, limit: int = 0,
                **_: Any) -> Iterator[Doc]:
    """Docs from DocBin file(s) (``.spacy``; a folder: every ``*.spacy``, sorted)."""
    install_extensions()
    n = 0
    for file in list_files(path, ("*.spacy",), fmt="spacy"):
        for doc in DocBin().from_disk(file).get_docs(nlp.vocab):
            if limit and n >= limit:
                return
            n += 1
            yield doc


FORMATS: Dict[str, Callable[..., Iterator[Doc]]] = {
    "elevant": read_elevant,
    "conll2012": read_conll2012,
    "gum_tsv": read_gum_tsv,
    "conll04": read_conll04,
    "semeval2010": read_semeval2010,
    "jsonl": read_jsonl,
    "spacy": read_docbin,
}


def read_docs(path: Union[str, Path], fmt: str, nlp: Language, **options: Any) -> Iterator[Doc]:
    """Gold Docs from ``path`` (file or folder) in format ``fmt`` (a key of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(Errors.KBE050.format(fmt=fmt, options=", ".join(FORMATS)))
    return FORMATS[fmt](path, nlp, **options)


@registry.readers("spacy_kbnlp.SubsetCorpus.v1")
def create_subset_corpus(
    path: Optional[Union[str, Path]],
    format: str = "auto",
    fraction: float = 1.0,
    seed: int = 0,
    augmenter: Optional[Callable[[Language, Example], Iterator[Example]]] = None,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from ``path`` in any reader format (``.spacy`` DocBin, the project JSONL,
    ...; ``auto``: ``jsonl`` for a ``.jsonl`` path, else ``spacy``), keeping the nested seeded subset ``fraction`` of the documents
    (:func:`.select.fraction_subset`, the subset ``benchmarks/re.py`` and
    ``build-demo-store --fraction`` use), each passed through ``augmenter`` (as in
    ``spacy.Corpus.v1``)."""
    check_fraction(fraction)  # a bad fraction fails when the config is loaded

    fmt = format if format != "auto" else ("jsonl" if str(path).endswith(".jsonl") else "spacy")

    def corpus(nlp: Language) -> Iterator[Example]:
        if path is None:
            raise ValueError(Errors.KBE312.format(value=None, setting="corpus path",
                                                  why="set it, e.g. --paths.train"))
        for doc in fraction_subset(read_docs(path, fmt, nlp), fraction, seed):
            eg = make_example(nlp, doc)
            yield from (augmenter(nlp, eg) if augmenter is not None else [eg])

    return corpus


__all__ = ["AlignmentStats", "FORMATS", "POLICIES", "create_subset_corpus", "fraction_subset",
           "read_docs", "read_docbin", "read_conll04", "read_conll2012", "read_elevant", "read_gum_tsv", "read_jsonl", "read_semeval2010",
           "write_jsonl"]


def input_doc(nlp: Language, gold: Doc, gold_ents: bool = False) -> Doc:
    """An unannotated Doc with the gold tokens (and, if asked, the gold entity spans
    and labels, never their kb_id: ``doc.ents`` and the span group of every relation
    entity, overlapping ones included, ``doc.spans["entities"]``)."""
    from ..extensions import ENTITIES_KEY

    doc = Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])
    if gold_ents:
        doc.ents = [Span(doc, e.start, e.end, label=e.label_) for e in gold.ents]
        if gold.spans.get(ENTITIES_KEY):
            doc.spans[ENTITIES_KEY] = [Span(doc, e.start, e.end, label=e.label_)
                                       for e in gold.spans[ENTITIES_KEY]]
    return doc
