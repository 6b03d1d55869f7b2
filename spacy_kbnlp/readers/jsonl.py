"""The project JSONL formats (one JSON object per line; see docs/formats.md).

Every record has ``"id"`` (optional) and either ``"text"`` (offsets are character
offsets into it, aligned to ``nlp.make_doc`` tokens under the span policy) or
``"tokens"`` (offsets are token offsets; optional ``"spaces"``: list of bools).
Ends are exclusive. Task keys:

* el:    ``"mentions": [{"start", "end", "kb_id" (null = NIL), "optional"?}]``,
  optional ``"evaluation_span": [start, end]`` (character offsets, text only);
* coref: ``"clusters": [[[start, end], ...], ...]``;
* re:    ``"entities": [{"start", "end", "label"}]``,
  ``"relations": [{"head": i, "tail": i, "label", "score"?}]`` (indices into entities).

``read_jsonl(path, nlp, task=None)`` reads every task whose keys are present when
``task`` is None (KBE065 when none is). ``write_jsonl(docs, path, task)`` writes
the same format back from the Doc layout of the readers (and from linker
predictions: spans with ``kb_id_`` in ``doc.spans[el_key]`` or ``doc.ents``).
"""
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..errors import Errors
from ..extensions import ENTITIES_KEY, add_relation, get_coref_clusters, install_extensions, set_coref_clusters
from .elevant import _check_pair, build_el_doc, json_lines
from .spans import (DEFAULT_POLICY, AlignmentStats, GoldCorpus, align_char_span,
                    check_token_span, counted, doc_from_tokens, set_ents,
                    start_stats)

FORMAT = "jsonl"
PATTERNS = ("*.jsonl",)
TASKS = ("el", "coref", "re")
TASK_KEYS = {"el": ("mentions",), "coref": ("clusters",), "re": ("entities", "relations")}


def detect_tasks(obj: Dict[str, Any], loc: str) -> List[str]:
    tasks = [t for t in TASKS if any(k in obj for k in TASK_KEYS[t])]
    if not tasks:
        raise ValueError(Errors.KBE065.format(loc=loc))
    return tasks


def _base_doc(nlp: Language, obj: Dict[str, Any], loc: str) -> Tuple[Doc, bool]:
    """``(doc, char_offsets)``."""
    if "tokens" in obj:
        tokens = obj["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError(Errors.KBE059.format(loc=loc, field="tokens",
                                                  expected="list of non-empty str", value=tokens))
        spaces = obj.get("spaces")
        if spaces is not None and (not isinstance(spaces, list) or len(spaces) != len(tokens)):
            raise ValueError(Errors.KBE059.format(loc=loc, field="spaces",
                                                  expected="list of bools, one per token",
                                                  value=spaces))
        return doc_from_tokens(nlp, tokens, [bool(s) for s in spaces] if spaces else None), False
    if "text" in obj:
        if not isinstance(obj["text"], str):
            raise ValueError(Errors.KBE059.format(loc=loc, field="text", expected="str",
                                                  value=obj["text"]))
        return nlp.make_doc(obj["text"]), True
    raise ValueError(Errors.KBE067.format(loc=loc))


def _span(doc: Doc, start: Any, end: Any, chars: bool, loc: str, policy: str,
          stats: AlignmentStats, label: str = "", kb_id: str = "") -> Optional[Span]:
    if chars:
        return align_char_span(doc, start, end, policy=policy, stats=stats, loc=loc, label=label,
                               kb_id=kb_id)
    check_token_span(doc, start, end, loc)
    return Span(doc, start, end, label=label, kb_id=kb_id)


def _get(obj: Any, key: str, loc: str, expected: str) -> Any:
    if not isinstance(obj, dict):
        raise ValueError(Errors.KBE059.format(loc=loc, field="<item>", expected="object",
                                              value=obj))
    if key not in obj:
        raise ValueError(Errors.KBE054.format(loc=loc, field=key, expected=expected))
    return obj[key]


def _read_el(nlp, doc, obj, chars, loc, policy, stats) -> None:
    labels = []
    mentions = _get(obj, "mentions", loc, "mentions")
    if not isinstance(mentions, list):
        raise ValueError(Errors.KBE059.format(loc=loc, field="mentions", expected="list",
                                              value=mentions))
    for j, m in enumerate(mentions):
        mloc = f"{loc} mentions[{j}]"
        start, end = _get(m, "start", mloc, "start, end, kb_id"), _get(m, "end", mloc, "start, end")
        kb_id = m.get("kb_id")
        if kb_id is not None and not isinstance(kb_id, str):
            raise ValueError(Errors.KBE059.format(loc=mloc, field="kb_id", expected="str or null",
                                                  value=kb_id))
        if not chars:  # token offsets -> character offsets of the Doc
            check_token_span(doc, start, end, mloc)
            start, end = doc[start].idx, doc[end - 1].idx + len(doc[end - 1])
        lab = {"id": m.get("id", j), "span": [start, end],
               "entity_id": kb_id if kb_id is not None else "<NIL>"}
        for key in ("name", "type", "optional", "desc", "coref", "parent", "children"):
            if key in m:
                lab[key] = m[key]
        labels.append(lab)
    ev = obj.get("evaluation_span")
    eval_span = _check_pair(ev, loc, "evaluation_span") if ev is not None else None
    build_el_doc(nlp, doc.text, labels, eval_span=eval_span, policy=policy, stats=stats, loc=loc,
                 doc=doc, field="mentions")


def _read_coref(doc, obj, chars, loc, policy, stats) -> None:
    clusters = _get(obj, "clusters", loc, "clusters")
    if not isinstance(clusters, list):
        raise ValueError(Errors.KBE059.format(loc=loc, field="clusters",
                                              expected="list of lists of [start, end]",
                                              value=clusters))
    out: List[List[Tuple[int, int]]] = []
    for i, cluster in enumerate(clusters):
        if not isinstance(cluster, list):
            raise ValueError(Errors.KBE059.format(loc=f"{loc} clusters[{i}]", field="cluster",
                                                  expected="list of [start, end]", value=cluster))
        spans = []
        for j, pair in enumerate(cluster):
            cloc = f"{loc} clusters[{i}][{j}]"
            start, end = _check_pair(pair, cloc, "mention")
            span = _span(doc, start, end, chars, cloc, policy, stats)
            if span is not None:
                spans.append((span.start, span.end))
        if spans:
            out.append(spans)
    set_coref_clusters(doc, out)


def _read_re(doc, obj, chars, loc, policy, stats) -> None:
    ents: List[Optional[Span]] = []
    for j, e in enumerate(obj.get("entities") or []):
        eloc = f"{loc} entities[{j}]"
        start, end = _get(e, "start", eloc, "start, end, label"), _get(e, "end", eloc, "end")
        label = e.get("label", "") if isinstance(e, dict) else ""
        if not isinstance(label, str):
            raise ValueError(Errors.KBE059.format(loc=eloc, field="label", expected="str",
                                                  value=label))
        ents.append(_span(doc, start, end, chars, eloc, policy, stats, label=label))
    for j, r in enumerate(obj.get("relations") or []):
        rloc = f"{loc} relations[{j}]"
        label = _get(r, "label", rloc, "head, tail, label")
        idx = {}
        for key in ("head", "tail"):
            i = _get(r, key, rloc, "head, tail, label")
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(ents):
                raise ValueError(Errors.KBE064.format(loc=rloc, index=i, field=key,
                                                      target="entities", n=len(ents)))
            idx[key] = i
        head, tail = ents[idx["head"]], ents[idx["tail"]]
        if head is not None and tail is not None:
            add_relation(doc, head, tail, str(label), float(r.get("score", 1.0)))
    spans = [e for e in ents if e is not None]
    set_ents(doc, spans, stats)
    # every entity, overlapping ones included (doc.ents keeps the non-overlapping ones):
    # relation instances pair the spans of this group (retrieval.render.entity_spans)
    doc.spans[ENTITIES_KEY] = sorted(spans, key=lambda e: (e.start, e.end))


def read_jsonl(
    path: Union[str, Path],
    nlp: Language,
    task: Optional[str] = None,
    *,
    policy: str = DEFAULT_POLICY,
    stats: Optional[AlignmentStats] = None,
    limit: int = 0,
) -> Iterator[Doc]:
    """Yield one gold Doc per line of the project JSONL file(s) at ``path``."""
    install_extensions()
    if task is not None and task not in TASKS:
        raise ValueError(Errors.KBE066.format(task=task))
    stats, own = start_stats(stats, FORMAT, policy)
    return counted(_jsonl_docs(path, nlp, task, policy, stats), stats, own, limit)


def _jsonl_docs(path: Union[str, Path], nlp: Language, task: Optional[str], policy: str,
                stats: AlignmentStats) -> Iterator[Doc]:
    for n, (file, lineno, loc, obj) in enumerate(json_lines(path, PATTERNS, FORMAT)):
        tasks = [task] if task else detect_tasks(obj, loc)
        doc, chars = _base_doc(nlp, obj, loc)
        if "el" in tasks:
            _read_el(nlp, doc, obj, chars, loc, policy, stats)
        if "coref" in tasks:
            _read_coref(doc, obj, chars, loc, policy, stats)
        if "re" in tasks:
            _read_re(doc, obj, chars, loc, policy, stats)
        doc._.source = {"format": FORMAT, "file": str(file), "line": lineno,
                        "id": obj.get("id", n), "tasks": tasks}
        yield doc


# ---------------------------------------------------------------- writer

def _offsets(span: Span, chars: bool) -> Tuple[int, int]:
    return (span.start_char, span.end_char) if chars else (span.start, span.end)


def doc_to_record(doc: Doc, task: str, *, offsets: str = "char",
                  el_key: Optional[str] = None, doc_id: Any = None) -> Dict[str, Any]:
    """One JSONL record of ``doc`` for ``task`` (``offsets``: "char" or "token")."""
    install_extensions()
    if task not in TASKS:
        raise ValueError(Errors.KBE066.format(task=task))
    chars = offsets == "char"
    source = doc._.source or {}
    rec: Dict[str, Any] = {"id": doc_id if doc_id is not None else source.get("id")}
    if chars:
        rec["text"] = doc.text
    else:
        rec["tokens"] = [t.text for t in doc]
        if any(t.whitespace_ != " " for t in doc[:-1]) or (len(doc) and doc[-1].whitespace_):
            rec["spaces"] = [bool(t.whitespace_) for t in doc]
    if task == "el":
        mentions = []
        if el_key is None and doc._.el_gold is not None:
            for lab in doc._.el_gold:
                if lab.get("start") is None:
                    continue
                span = doc[lab["start"]:lab["end"]]
                s, e = (lab["start_char"], lab["end_char"]) if chars else _offsets(span, False)
                eid = lab["entity_id"]
                m: Dict[str, Any] = {"start": s, "end": e,
                                     "kb_id": None if eid == "<NIL>" else eid}
                if lab.get("optional"):
                    m["optional"] = True
                for key in ("desc",):
                    if lab.get(key):
                        m[key] = True
                if lab.get("parent") is not None:
                    m["parent"] = lab["parent"]
                if lab.get("id") is not None:
                    m["id"] = lab["id"]
                mentions.append(m)
            ev = doc._.el_eval_span
            if chars and ev is not None and list(ev) != [0, len(doc.text)]:
                rec["evaluation_span"] = [int(ev[0]), int(ev[1])]
        else:
            spans = list(doc.spans[el_key]) if el_key and el_key in doc.spans else list(doc.ents)
            for span in spans:
                if not span.kb_id_:
                    continue
                s, e = _offsets(span, chars)
                mentions.append({"start": s, "end": e,
                                 "kb_id": None if span.kb_id_ in ("<NIL>", "NIL") else span.kb_id_})
        rec["mentions"] = mentions
    elif task == "coref":
        rec["clusters"] = [[list(_offsets(s, chars)) for s in cluster]
                           for cluster in get_coref_clusters(doc)]
    else:
        ents = list(doc.spans[ENTITIES_KEY]) if doc.spans.get(ENTITIES_KEY) else list(doc.ents)
        index = {(e.start, e.end): i for i, e in enumerate(ents)}
        extra = []
        for r in doc._.rel_records or ():
            for key in ("head", "tail"):
                k = (int(r[key][0]), int(r[key][1]))
                if k not in index:
                    index[k] = len(ents) + len(extra)
                    extra.append(doc[k[0]:k[1]])
        rec["entities"] = [{"start": _offsets(e, chars)[0], "end": _offsets(e, chars)[1],
                            "label": e.label_} for e in ents + extra]
        rec["relations"] = []
        for r in doc._.rel_records or ():
            rel = {"head": index[(int(r["head"][0]), int(r["head"][1]))],
                   "tail": index[(int(r["tail"][0]), int(r["tail"][1]))], "label": r["label"]}
            if float(r.get("score", 1.0)) != 1.0:
                rel["score"] = float(r["score"])
            rec["relations"].append(rel)
    return rec


def doc_annotations(doc: Doc) -> Dict[str, Any]:
    """Every component's annotations of a predicted ``doc`` in plain JSON, with
    character offsets (ends exclusive): ``links`` (one per ``doc._.kb_links`` record:
    ``start``, ``end``, ``text``, ``kb_id``, ``label``, ``score``, ``key`` (span group),
    ``candidates`` [[kb_id, score], ...]; without link records, the spans of
    ``doc.ents`` with a ``kb_id_`` and ``score`` null), ``clusters`` (coreference,
    lists of [start, end]), ``entities`` and ``relations`` (as in the ``re`` record of
    :func:`doc_to_record`, which gives the clusters and relations here too)."""
    install_extensions()
    links: List[Dict[str, Any]] = []
    for rec in doc._.kb_links or ():
        span = doc[int(rec["start"]):int(rec["end"])]
        links.append({"start": span.start_char, "end": span.end_char, "text": span.text,
                      "kb_id": rec["kb_id"], "label": rec.get("label"),
                      "score": float(rec["score"]), "key": rec.get("key"),
                      "candidates": [[str(k), float(v)] for k, v in rec.get("candidates") or ()]})
    if doc._.kb_links is None:
        links = [{"start": e.start_char, "end": e.end_char, "text": e.text, "kb_id": e.kb_id_,
                  "label": e.label_, "score": None, "key": None, "candidates": []}
                 for e in doc.ents if e.kb_id_]
    re_rec = doc_to_record(doc, "re")
    return {"links": links, "clusters": doc_to_record(doc, "coref")["clusters"],
            "entities": re_rec["entities"], "relations": re_rec["relations"]}


def write_jsonl(docs: Iterable[Doc], path: Union[str, Path], task: str, *,
                offsets: str = "char", el_key: Optional[str] = None) -> int:
    """Write one record per Doc to ``path``; returns the number of records."""
    if task not in TASKS:
        raise ValueError(Errors.KBE066.format(task=task))
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            rec = doc_to_record(doc, task, offsets=offsets, el_key=el_key)
            if rec["id"] is None:
                rec["id"] = i
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


@registry.readers("spacy_kbnlp.JsonlCorpus.v1")
def create_jsonl_reader(
    path: Union[str, Path],
    task: Optional[str] = None,
    limit: int = 0,
    shuffle: bool = False,
    policy: str = DEFAULT_POLICY,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from project JSONL file(s) (el / coref / re; detected when ``task`` is null)."""
    return GoldCorpus(read_jsonl, path, limit=limit, shuffle=shuffle, task=task, policy=policy)
