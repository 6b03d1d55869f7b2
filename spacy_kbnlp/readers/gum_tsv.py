"""GUM WebAnno TSV 3.2 (``gum/tsv/*.tsv``) -> gold coreference Docs.

Only the first 10 fields of a row are read (rows have 10-13). Layout on the Doc:

* tokens from field 3 (single spaces between them), sentence starts from the
  ``#Text=`` lines;
* identity clusters = mentions merged over every non-bridging relation
  (coref, ana, appos, pred, disc, cata) in ``doc.spans["coref_clusters_N"]``
  (N from 1, ordered by first mention); singletons are kept unless
  ``drop_singletons`` (this reproduces the ``gum/conll`` clusters exactly);
* every mention in ``doc.spans["gum_mentions"]`` with label = entity type and
  ``kb_id_`` = the Wikipedia identity (or empty), plus JSON records in
  ``doc._.source["mentions"]``: ``{"id", "start", "end", "type", "infstat",
  "salience", "identity", "centering"}`` (token offsets, end exclusive);
* every relation in ``doc._.source["relations"]``: ``{"type", "source", "target"}``
  (mention ids; ``source`` = the mention whose first token holds the row);
* bridging relations also in ``doc._.rel_records``: head = source mention, tail =
  target mention, label = ``bridge:def`` / ``bridge:aggr`` / ``bridge:other``.
"""
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..errors import Errors
from ..extensions import add_relation, install_extensions, set_coref_clusters
from .spans import (DEFAULT_POLICY, AlignmentStats, GoldCorpus, counted, doc_from_tokens,
                    list_files, start_stats, where)

FORMAT = "gum_tsv"
PATTERNS = ("*.tsv",)
MENTION_KEY = "gum_mentions"
FEAT_RE = re.compile(r"([^|]+?)\[(\d+)\]")
TARGET_RE = re.compile(r"^\d+-\d+(?:\.\d+)?\[(\d+)_(\d+)\]$")
N_FIELDS = 10


def read_tsv_tokens(path: Union[str, Path]) -> Tuple[List[str], List[int]]:
    """Tokens and sentence-start token indices of a GUM tsv file (cheap pass)."""
    tokens: List[str] = []
    starts: List[int] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#Text="):
                starts.append(len(tokens))
            elif line.strip() and not line.startswith("#"):
                tokens.append(line.rstrip("\r\n").split("\t")[2])
    return tokens, starts


def parse_tsv(path: Union[str, Path]) -> Tuple[List[str], List[int], Dict[str, Dict[str, Any]],
                                                List[Tuple[str, str, str]]]:
    """``(tokens, sentence starts, {mention id: record}, [(type, source, target)])``;
    mention ``start``/``end`` are token offsets (end exclusive)."""
    tokens: List[str] = []
    starts: List[int] = []
    mentions: Dict[str, Dict[str, Any]] = {}
    rels: List[Tuple[str, str, str]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if raw.startswith("#Text="):
                starts.append(len(tokens))
                continue
            if not raw.strip() or raw.startswith("#"):
                continue
            loc = where(path, lineno)
            fields = raw.rstrip("\r\n").split("\t")[:N_FIELDS]
            if len(fields) < N_FIELDS:
                fields += ["_"] * (N_FIELDS - len(fields))
            if len(fields[0].split("-")) != 2:
                raise ValueError(Errors.KBE062.format(loc=loc, value=raw.rstrip(),
                                                      why="field 1 is not 'sentence-token'"))
            i = len(tokens)
            tokens.append(fields[2])
            feats = [dict((k, v) for v, k in FEAT_RE.findall(c)) if c != "_" else {}
                     for c in fields[3:8]]
            for mid, etype in feats[0].items():
                rec = mentions.get(mid)
                if rec is None:
                    rec = mentions[mid] = {
                        "id": mid, "start": i, "end": i + 1, "type": etype,
                        "infstat": feats[1].get(mid), "salience": feats[2].get(mid),
                        "identity": feats[3].get(mid), "centering": feats[4].get(mid)}
                rec["end"] = i + 1
            if fields[8] not in ("_", ""):
                types, targets = fields[8].split("|"), fields[9].split("|")
                if len(types) != len(targets):
                    raise ValueError(Errors.KBE062.format(
                        loc=loc, value=raw.rstrip(), why="fields 9 and 10 differ in length"))
                for rtype, target in zip(types, targets):
                    m = TARGET_RE.match(target)
                    if m is None:
                        raise ValueError(Errors.KBE062.format(
                            loc=loc, value=raw.rstrip(),
                            why=f"relation target {target!r} is not 'sent-tok[T_S]'"))
                    other, this = m.groups()
                    rels.append((rtype, this, other))
    for rtype, a, b in rels:
        for mid in (a, b):
            if mid not in mentions:
                raise ValueError(Errors.KBE062.format(
                    loc=str(path), value=f"{rtype} {a}->{b}", why=f"unknown mention id {mid}"))
    return tokens, starts, mentions, rels


def identity_clusters(
    mentions: Dict[str, Dict[str, Any]], rels: List[Tuple[str, str, str]],
    drop_singletons: bool = False,
) -> List[List[Tuple[int, int]]]:
    """Union-find over the non-bridging relations; clusters of token spans,
    sorted, ordered by first mention."""
    parent = {m: m for m in mentions}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for rtype, a, b in rels:
        if not rtype.startswith("bridge"):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
    groups: Dict[str, set] = {}
    for m, rec in mentions.items():
        groups.setdefault(find(m), set()).add((rec["start"], rec["end"]))
    clusters = [sorted(g) for g in groups.values() if not (drop_singletons and len(g) < 2)]
    clusters.sort()
    return clusters


def read_gum_tsv(
    path: Union[str, Path],
    nlp: Language,
    *,
    drop_singletons: bool = False,
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    limit: int = 0,
) -> Iterator[Doc]:
    """Yield one gold Doc per GUM tsv file at ``path`` (file or folder)."""
    install_extensions()
    stats, own = start_stats(stats, FORMAT, policy)
    return counted(_gum_docs(path, nlp, drop_singletons), stats, own, limit)


def _gum_docs(path: Union[str, Path], nlp: Language, drop_singletons: bool) -> Iterator[Doc]:
    for file in list_files(path, PATTERNS, fmt=FORMAT):
        tokens, starts, mentions, rels = parse_tsv(file)
        doc = doc_from_tokens(nlp, tokens, sent_starts=starts)
        set_coref_clusters(doc, identity_clusters(mentions, rels, drop_singletons))
        ordered = sorted(mentions.values(), key=lambda r: (r["start"], -r["end"], int(r["id"])))
        doc.spans[MENTION_KEY] = [
            Span(doc, r["start"], r["end"], label=r["type"], kb_id=r["identity"] or "")
            for r in ordered]
        for rtype, a, b in rels:
            if rtype.startswith("bridge"):
                ma, mb = mentions[a], mentions[b]
                add_relation(doc, doc[ma["start"]:ma["end"]], doc[mb["start"]:mb["end"]], rtype)
        doc._.source = {
            "format": FORMAT, "file": str(file), "id": file.stem,
            "mentions": ordered,
            "relations": [{"type": t, "source": a, "target": b} for t, a, b in rels],
        }
        yield doc


@registry.readers("spacy_kbnlp.GumTsvCorpus.v1")
def create_gum_tsv_reader(
    path: Union[str, Path],
    limit: int = 0,
    shuffle: bool = False,
    drop_singletons: bool = False,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from GUM WebAnno tsv file(s): sentences, identity clusters, bridging."""
    return GoldCorpus(read_gum_tsv, path, limit=limit, shuffle=shuffle,
                      drop_singletons=drop_singletons)
