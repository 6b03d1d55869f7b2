"""Entity records: the JSONL schema, validation, converters and entity texts.

An entity record is ``{"id", "name", "description"?, "aliases"?, "types"?, "prior"?,
"meta"?}`` (schema and policies in ``docs/kb.md``). Records come from

* our JSONL (``read_entities``; errors name ``file:line``),
* the Wikidata-style JSON of FB15k-237 (``records_from_wikidata_json``),
* spaCy's ``InMemoryLookupKB`` (``records_from_inmemory_kb``),
* a DenseKB folder (its ``records.jsonl``),

and ``load_records(path)`` / ``load_entity_ids(path)`` pick the right reader from
what ``path`` is. ``entity_text(record, template)`` renders the text an encoder
embeds (default ``"{name} [SEP] {description}"``).
"""
import json
import string
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

import srsly

from ..errors import Errors, Warnings
from ..core.locations import parse_line, where

DEFAULT_TEMPLATE = "{name} [SEP] {description}"
TEMPLATE_FIELDS = ("name", "description", "aliases", "types")
LIST_JOINER = ", "
DUPLICATE_POLICIES = ("error", "first", "last")
RECORD_FIELDS = ("id", "name", "description", "aliases", "types", "prior", "meta")
# files of a DenseKB folder (kept here so that ids can be read without loading the KB)
MANIFEST_FILE = "manifest.json"
RECORDS_FILE = "records.jsonl"

PathLike = Union[str, Path]


@dataclass
class EntityRecord:
    """One KB entity. ``prior`` is an optional popularity/frequency; ``meta`` keeps
    source fields we do not interpret (e.g. the Freebase MID)."""

    id: str
    name: str
    description: str = ""
    aliases: List[str] = field(default_factory=list)
    types: List[str] = field(default_factory=list)
    prior: Optional[float] = None
    meta: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict; empty optional fields are left out."""
        out: Dict[str, Any] = {"id": self.id, "name": self.name}
        if self.description:
            out["description"] = self.description
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.types:
            out["types"] = list(self.types)
        if self.prior is not None:
            out["prior"] = self.prior
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any], loc: str = "<record>") -> "EntityRecord":
        """Validate and convert one JSON object (``loc`` names it in errors).

        Keys outside the schema are kept in ``meta``."""
        if not isinstance(data, dict):
            raise ValueError(Errors.KBE059.format(loc=loc, field="<record>", expected="a JSON object",
                                                  value=data))
        for key in ("id", "name"):
            if key not in data:
                raise ValueError(Errors.KBE054.format(loc=loc, field=key,
                                                      expected=", ".join(RECORD_FIELDS)))
        eid = data["id"]
        if not isinstance(eid, str) or not eid:
            raise ValueError(Errors.KBE059.format(loc=loc, field="id", expected="non-empty str",
                                                  value=eid))
        name = _typed(data, "name", str, "str", loc)
        description = _typed(data, "description", str, "str or null", loc) or ""
        aliases = _str_list(data, "aliases", loc)
        types = _str_list(data, "types", loc)
        prior = data.get("prior")
        if prior is not None and (isinstance(prior, bool) or not isinstance(prior, (int, float))):
            raise ValueError(Errors.KBE059.format(loc=loc, field="prior", expected="number or null",
                                                  value=prior))
        meta = _typed(data, "meta", dict, "object or null", loc) or {}
        extra = {k: v for k, v in data.items() if k not in RECORD_FIELDS}
        return cls(eid, name, description, aliases, types,
                   None if prior is None else float(prior), {**meta, **extra})


def _typed(data: Dict[str, Any], key: str, typ: type, expected: str, loc: str) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, typ):
        raise ValueError(Errors.KBE059.format(loc=loc, field=key, expected=expected, value=value))
    return value


def _str_list(data: Dict[str, Any], key: str, loc: str) -> List[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(Errors.KBE059.format(loc=loc, field=key, expected="list of str or null",
                                              value=value))
    return list(value)


# --- entity texts

def check_template(template: str) -> List[Tuple[str, Optional[str]]]:
    """Parse ``template`` into ``(literal, field)`` pairs; KBE014 on unknown or
    formatted placeholders."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(Errors.KBE014.format(template=template, why=err)) from None
    fields = [f for _, f, _, _ in parts if f is not None]
    if not fields:
        raise ValueError(Errors.KBE014.format(template=template, why="it has no placeholder"))
    for _, fld, spec, conv in parts:
        if fld is not None and (fld not in TEMPLATE_FIELDS or spec or conv):
            raise ValueError(Errors.KBE014.format(template=template,
                                                  why=f"'{{{fld}{'!' + conv if conv else ''}"
                                                      f"{':' + spec if spec else ''}}}' is not allowed"))
    return [(lit, fld) for lit, fld, _, _ in parts]


def _field_value(record: EntityRecord, name: str) -> str:
    value = getattr(record, name)
    if isinstance(value, (list, tuple)):
        return LIST_JOINER.join(v for v in value if v)
    return (value or "").strip()


def entity_text(record: EntityRecord, template: str = DEFAULT_TEMPLATE) -> str:
    """The text an encoder embeds for ``record``.

    Placeholders: ``{name}``, ``{description}``, ``{aliases}``, ``{types}`` (lists
    joined by ", "). Text before the first placeholder and after the last one is
    kept; the text between two placeholders is a separator that is dropped
    together with an empty placeholder, so ``"{name} [SEP] {description}"`` gives
    ``"Paris"`` (not ``"Paris [SEP] "``) for a record without description."""
    prefix, suffix = "", ""
    out: List[str] = []
    for i, (lit, fld) in enumerate(check_template(template)):
        if fld is None:  # text after the last placeholder
            suffix = lit
            continue
        if i == 0:
            prefix = lit
        value = _field_value(record, fld)
        if not value:
            continue
        if out:
            out.append(lit)  # the separator that precedes this placeholder
        out.append(value)
    return (prefix + "".join(out) + suffix).strip()


def entity_texts(records: Iterable[EntityRecord], template: str = DEFAULT_TEMPLATE) -> List[str]:
    check_template(template)
    return [entity_text(r, template) for r in records]


# --- our JSONL

def iter_entities(path: PathLike) -> Iterator[Tuple[EntityRecord, str]]:
    """``(record, "file:line")`` for each non-blank line of an entity JSONL file."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            loc = where(path, i)
            yield EntityRecord.from_dict(parse_line(line, loc), loc), loc


def dedupe_records(items: Iterable[Tuple[EntityRecord, str]], duplicates: str = "error",
                   source: str = "<records>") -> List[EntityRecord]:
    """Apply the duplicate-id policy: 'error' (KBE005), 'first' or 'last' (KBW002)."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(Errors.KBE024.format(name="duplicates", value=duplicates,
                                              why=f"choose one of {', '.join(DUPLICATE_POLICIES)}"))
    by_id: Dict[str, int] = {}
    first_loc: Dict[str, str] = {}
    out: List[EntityRecord] = []
    n_dup, example = 0, None
    for record, loc in items:
        if record.id in by_id:
            if duplicates == "error":
                raise ValueError(Errors.KBE005.format(loc=loc, id=record.id, first=first_loc[record.id]))
            n_dup += 1
            example = example or f"'{record.id}' at {loc}"
            if duplicates == "last":
                out[by_id[record.id]] = record
            continue
        by_id[record.id] = len(out)
        first_loc[record.id] = loc
        out.append(record)
    if n_dup:
        warnings.warn(Warnings.KBW002.format(n=n_dup, source=source, policy=duplicates, example=example))
    return out


def read_entities(path: PathLike, *, duplicates: str = "error") -> List[EntityRecord]:
    """Read an entity JSONL file (schema in docs/kb.md).

    Malformed lines, missing fields and wrong types raise a coded ``ValueError``
    naming ``file:line``. Duplicate ids raise KBE005 unless ``duplicates`` is
    'first' or 'last' (then the other occurrences are dropped with KBW002)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(Errors.KBE006.format(path=path))
    records = dedupe_records(iter_entities(path), duplicates, str(path))
    if not records:
        raise ValueError(Errors.KBE026.format(where=f" in {path}"))
    return records


def write_entities(records: Iterable[EntityRecord], path: PathLike) -> None:
    """Write records as entity JSONL (UTF-8, one object a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")


# --- Wikidata-style JSON (FB15k-237 entity2wikidata.json)

def _wikidata_entries(path: Path) -> Iterator[Tuple[str, Dict[str, Any]]]:
    try:
        data = srsly.read_json(path)
    except ValueError as err:
        raise ValueError(Errors.KBE053.format(loc=path, err=err)) from None
    if not isinstance(data, dict):
        raise ValueError(Errors.KBE018.format(path=path, key="<top level>",
                                              why=f"expected a JSON object, got {type(data).__name__}"))
    for mid, ent in data.items():
        if not isinstance(ent, dict) or not isinstance(ent.get("wikidata_id"), str):
            raise ValueError(Errors.KBE018.format(path=path, key=mid,
                                                  why="no string 'wikidata_id'"))
        yield mid, ent


def records_from_wikidata_json(path: PathLike) -> List[EntityRecord]:
    """Records from ``entity2wikidata.json`` (MID -> {wikidata_id, label, description,
    alternatives, wikipedia}): the QID is the id, ``label`` the name, ``alternatives``
    the aliases; the MID (and Wikipedia URL) go to ``meta``. For a QID with several
    MIDs (Q2141 in FB15k-237) the first MID in file order wins."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(Errors.KBE006.format(path=path))
    seen: Set[str] = set()
    out: List[EntityRecord] = []
    for mid, ent in _wikidata_entries(path):
        qid = ent["wikidata_id"]
        if qid in seen:
            continue
        seen.add(qid)
        loc = f"{path}[{mid}]"
        name = ent.get("label")
        name = name if isinstance(name, str) and name else qid
        aliases = _str_list(ent, "alternatives", loc)
        description = _typed(ent, "description", str, "str or null", loc) or ""
        meta: Dict[str, Any] = {"mid": mid}
        if ent.get("wikipedia"):
            meta["wikipedia"] = ent["wikipedia"]
        out.append(EntityRecord(qid, name, description, [a for a in aliases if a != name], [],
                                None, meta))
    return out


# --- spaCy InMemoryLookupKB

def records_from_inmemory_kb(
    kb: Any,
    names: Optional[Dict[str, str]] = None,
    descriptions: Optional[Dict[str, str]] = None,
) -> List[EntityRecord]:
    """Records from a spaCy ``InMemoryLookupKB``: entity ids, ``freq`` as ``prior``,
    and the aliases of its alias table. The name is ``names[id]`` if given, else the
    entity's most probable alias, else the id. Its entity vectors are not kept (they
    live in another space than our encoder's)."""
    names = names or {}
    descriptions = descriptions or {}
    # entity freqs are only public through the serialized entries (hash, freq, vector index)
    data = srsly.msgpack_loads(kb.to_bytes())
    freq = {int(h): float(f) for h, f, _ in srsly.json_loads(data["entries"])}
    aliases: Dict[str, List[Tuple[float, str]]] = {}
    for alias in kb.get_alias_strings():
        for cand in kb.get_alias_candidates(alias):
            aliases.setdefault(cand.entity_, []).append((float(cand.prior_prob), alias))
    out = []
    strings = kb.vocab.strings
    for eid in kb.get_entity_strings():
        ranked = [a for _, a in sorted(aliases.get(eid, []), key=lambda x: -x[0])]
        name = names.get(eid) or (ranked[0] if ranked else eid)
        out.append(EntityRecord(eid, name, descriptions.get(eid, "") or "",
                                [a for a in ranked if a != name], [],
                                freq.get(int(strings[eid]))))
    return out


def read_inmemory_kb(path: PathLike) -> Any:
    """Load an ``InMemoryLookupKB`` folder (``contents`` + ``strings.json``) or the
    KB of the first entity_linker of a pipeline folder."""
    from spacy.kb import InMemoryLookupKB
    from spacy.vocab import Vocab

    path = Path(path)
    if (path / "contents").exists():
        kb = InMemoryLookupKB(Vocab(), entity_vector_length=1)
        kb.from_disk(path)
        return kb
    import spacy

    nlp = spacy.load(path)
    for name, pipe in nlp.pipeline:
        if getattr(pipe, "kb", None) is not None:
            return pipe.kb
    raise ValueError(Errors.KBE025.format(path=path))


# --- dispatch on the kind of path

def detect_source(path: PathLike) -> str:
    """'dense_kb', 'spacy_kb', 'pipeline', 'jsonl' or 'wikidata_json' (KBE006 otherwise)."""
    path = Path(path)
    if path.is_dir():
        if (path / MANIFEST_FILE).exists() and (path / RECORDS_FILE).exists():
            return "dense_kb"
        if (path / "contents").exists() and (path / "strings.json").exists():
            return "spacy_kb"
        if (path / "config.cfg").exists() and (path / "meta.json").exists():
            return "pipeline"
    elif path.is_file():
        with path.open("rb") as f:
            head = f.read(4096).lstrip()
        first_line = head.split(b"\n", 1)[0].strip()
        if path.suffix == ".jsonl" or (first_line.startswith(b"{") and first_line.endswith(b"}")
                                       and b'"id"' in first_line):
            return "jsonl"
        if path.suffix == ".json" or head.startswith(b"{"):
            return "wikidata_json"
    raise FileNotFoundError(Errors.KBE006.format(path=path))


def load_records(path: PathLike, *, duplicates: str = "error") -> List[EntityRecord]:
    """Records from an entity JSONL file, the Wikidata-style JSON, a DenseKB folder,
    a spaCy ``InMemoryLookupKB`` folder or a pipeline folder with an entity_linker."""
    kind = detect_source(path)
    path = Path(path)
    if kind == "jsonl":
        return read_entities(path, duplicates=duplicates)
    if kind == "dense_kb":
        return read_entities(path / RECORDS_FILE, duplicates=duplicates)
    if kind == "wikidata_json":
        return records_from_wikidata_json(path)
    kb = read_inmemory_kb(path)
    if hasattr(kb, "dense_kb"):  # a DenseSpacyKB inside a pipeline
        return list(kb.dense_kb.records)
    return records_from_inmemory_kb(kb)


def load_entity_ids(path: PathLike) -> Set[str]:
    """The entity ids of a KB, by the same dispatch as ``load_records`` but without
    building records where the source allows (JSONL, DenseKB folder, Wikidata JSON)."""
    kind = detect_source(path)
    path = Path(path)
    if kind in ("jsonl", "dense_kb"):
        file = path if kind == "jsonl" else path / RECORDS_FILE
        ids: Set[str] = set()
        with file.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    loc = where(file, i)
                    obj = parse_line(line, loc)
                    eid = obj.get("id")
                    if not isinstance(eid, str) or not eid:
                        raise ValueError(Errors.KBE059.format(loc=loc, field="id",
                                                              expected="non-empty str", value=eid))
                    ids.add(eid)
        return ids
    if kind == "wikidata_json":
        return {ent["wikidata_id"] for _, ent in _wikidata_entries(path)}
    return {r.id for r in load_records(path)}
