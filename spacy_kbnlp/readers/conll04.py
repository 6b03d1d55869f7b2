"""CoNLL04 in the SpERT JSON layout (``conll04_{train,dev,test}.json``) -> gold Docs.

A file is a JSON list (a JSON-lines file with one sentence per line works too) of
``{"tokens": [str], "entities": [{"type", "start", "end"}], "relations":
[{"type", "head", "tail"}], "orig_id": int}``; token offsets, end exclusive;
``head``/``tail`` index ``entities``. Entities go to ``doc.ents`` (label = type:
Peop/Loc/Org/Other), relations to ``doc._.rel_records`` with score 1.0.
"""
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..errors import Errors
from ..extensions import add_relation, install_extensions
from .spans import (DEFAULT_POLICY, AlignmentStats, GoldCorpus, check_token_span, counted,
                    doc_from_tokens, list_files, set_ents, start_stats, where)

FORMAT = "conll04"
PATTERNS = ("*.json", "*.jsonl")
FIELDS = ("tokens", "entities", "relations")


def _items(file: Path) -> Iterator[Tuple[str, Any]]:
    """``(location, item)`` for a JSON list file or a JSON-lines file."""
    text = file.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(Errors.KBE053.format(loc=where(file, err.lineno), err=err)) from None
        for i, item in enumerate(data):
            yield where(file, item=i), item
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            loc = where(file, lineno)
            try:
                yield loc, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(Errors.KBE053.format(loc=loc, err=err)) from None


def _require(obj: Any, loc: str, name: str, types: tuple, expected: str) -> Any:
    if not isinstance(obj, dict):
        raise ValueError(Errors.KBE059.format(loc=loc, field="<item>", expected="object",
                                              value=obj))
    if name not in obj:
        raise ValueError(Errors.KBE054.format(loc=loc, field=name, expected=", ".join(FIELDS)))
    value = obj[name]
    if not isinstance(value, types) or isinstance(value, bool):
        raise ValueError(Errors.KBE059.format(loc=loc, field=name, expected=expected, value=value))
    return value


def build_conll04_doc(nlp: Language, item: Dict[str, Any], loc: str,
                      stats: Optional[AlignmentStats] = None) -> Doc:
    install_extensions()
    tokens = _require(item, loc, "tokens", (list,), "list of str")
    if not all(isinstance(t, str) and t for t in tokens):
        raise ValueError(Errors.KBE059.format(loc=loc, field="tokens",
                                              expected="list of non-empty str", value=tokens))
    doc = doc_from_tokens(nlp, tokens)
    spans: List[Span] = []
    for j, ent in enumerate(_require(item, loc, "entities", (list,), "list")):
        eloc = f"{loc} entities[{j}]"
        etype = _require(ent, eloc, "type", (str,), "str")
        start = _require(ent, eloc, "start", (int,), "int")
        end = _require(ent, eloc, "end", (int,), "int")
        check_token_span(doc, start, end, eloc)
        spans.append(Span(doc, start, end, label=etype))
    for j, rel in enumerate(item.get("relations") or []):
        rloc = f"{loc} relations[{j}]"
        rtype = _require(rel, rloc, "type", (str,), "str")
        for key in ("head", "tail"):
            idx = _require(rel, rloc, key, (int,), "int")
            if not 0 <= idx < len(spans):
                raise ValueError(Errors.KBE064.format(loc=rloc, index=idx, field=key,
                                                      target="entities", n=len(spans)))
        add_relation(doc, spans[rel["head"]], spans[rel["tail"]], rtype, 1.0)
    set_ents(doc, spans, stats)
    return doc


def read_conll04(
    path: Union[str, Path],
    nlp: Language,
    *,
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    limit: int = 0,
) -> Iterator[Doc]:
    """Yield one gold Doc per sentence of the SpERT JSON file(s) at ``path``."""
    stats, own = start_stats(stats, FORMAT, policy)
    return counted(_conll04_docs(path, nlp, stats), stats, own, limit)


def _conll04_docs(path: Union[str, Path], nlp: Language, stats: AlignmentStats) -> Iterator[Doc]:
    for file in list_files(path, PATTERNS, fmt=FORMAT):
        if file.name.endswith("_types.json"):
            continue
        for i, (loc, item) in enumerate(_items(file)):
            doc = build_conll04_doc(nlp, item, loc, stats)
            doc._.source = {"format": FORMAT, "file": str(file), "index": i,
                            "id": item.get("orig_id", i)}
            yield doc


@registry.readers("spacy_kbnlp.Conll04Corpus.v1")
def create_conll04_reader(
    path: Union[str, Path],
    limit: int = 0,
    shuffle: bool = False,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from CoNLL04 SpERT JSON file(s): entities + directed relations."""
    return GoldCorpus(read_conll04, path, limit=limit, shuffle=shuffle)
