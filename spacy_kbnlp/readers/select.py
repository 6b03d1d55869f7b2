"""Choose documents of a corpus by id: named splits, excluded ids, id modulo.

The corpora name their splits in different ways, and the evaluation protocols
use all three:

* GUM's ``splits.md`` lists document names under ``## train`` / ``## dev`` / ...
  headings (a plain file with one name per line works too);
* the ELEVANT training sets are ``news-fair-v2`` *minus* the documents of
  ``news-fair-v2-test`` (exclude the ids of another file);
* SemEval-2010 Task 8 has no dev set: the ids with ``id % 10 == 0`` are held out.

A document's id is ``doc._.source["id"]`` as the readers set it (file stem for
CoNLL/GUM, the record id elsewhere), compared as a string.
"""
import random
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Set, Tuple, TypeVar, Union

from spacy.tokens import Doc

from ..errors import Errors


def doc_id(doc: Doc) -> str:
    source = doc._.source or {}
    return str(source.get("id", ""))


def read_split_names(path: Union[str, Path], split: Optional[str] = None) -> Set[str]:
    """Document names of ``split`` in a ``splits.md``-style file (``## name`` headings,
    ``* item`` lines), or every non-empty line of a plain list when ``split`` is None."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(Errors.KBE052.format(path=path))
    names: Set[str] = set()
    current: Optional[str] = None
    seen: Set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("## "):
            current = stripped[3:].strip()
            seen.add(current)
        elif split is None:
            if stripped and not stripped.startswith("#"):
                names.add(stripped.lstrip("*- ").strip())
        elif current == split and stripped[:2] in ("* ", "- "):
            names.add(stripped[2:].strip())
    if split is not None and split not in seen:
        raise ValueError(Errors.KBE069.format(path=path, split=split,
                                              options=", ".join(sorted(seen)) or "none"))
    return names


def parse_id_mod(spec: str) -> Tuple[int, int, bool]:
    """``"10:0"`` keeps ids with ``id % 10 == 0``; ``"10:!0"`` keeps the others."""
    try:
        mod, rest = spec.split(":", 1)
        keep = not rest.startswith("!")
        value = int(rest.lstrip("!"))
        mod_i = int(mod)
        if mod_i <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(Errors.KBE070.format(spec=spec)) from None
    return mod_i, value, keep


def select_docs(
    docs: Iterable[Doc],
    *,
    include: Optional[Set[str]] = None,
    exclude: Optional[Set[str]] = None,
    id_mod: Optional[str] = None,
) -> Iterator[Doc]:
    """The docs whose id is in ``include`` (if given), not in ``exclude``, and passes ``id_mod``."""
    mod = parse_id_mod(id_mod) if id_mod else None
    for doc in docs:
        key = doc_id(doc)
        if include is not None and key not in include:
            continue
        if exclude is not None and key in exclude:
            continue
        if mod is not None:
            try:
                number = int(key)
            except ValueError:
                raise ValueError(Errors.KBE071.format(id=key, spec=id_mod)) from None
            if (number % mod[0] == mod[1]) != mod[2]:
                continue
        yield doc


T = TypeVar("T")


def check_fraction(fraction: Any) -> float:
    """``fraction`` as a float in (0, 1], else KBE320."""
    try:
        share = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(Errors.KBE320.format(value=fraction)) from None
    if not 0 < share <= 1:
        raise ValueError(Errors.KBE320.format(value=fraction))
    return share


def fraction_subset(docs: Iterable[T], fraction: float, seed: int = 0) -> List[T]:
    """The first ``round(fraction * n)`` (at least 1) items of one ``seed``-ed shuffle,
    in their original order: the subsets of one seed are nested (the 1 % subset is in
    the 5 % one), so that training, the demonstration store and the benchmarks see the
    same documents for the same ``fraction`` and ``seed``."""
    docs = list(docs)
    share = check_fraction(fraction)
    if share == 1 or not docs:
        return docs
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n = max(1, round(share * len(docs)))
    return [docs[i] for i in sorted(order[:n])]
