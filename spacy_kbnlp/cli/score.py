"""``python -m spacy_kbnlp score {el,coref,re} GOLD PRED``: score a prediction file
against a gold file in the same format with our scorers.

Both files are read with the same reader (any format of
``spacy_kbnlp.readers.FORMATS``), so any outside system that writes, e.g., the
project JSONL or a ``.spacy`` DocBin can be scored. Documents are paired by
``doc._.source["id"]`` when the ids are unique on both sides, else by order.

The helpers here (``score_task``, ``pair_docs``, ``print_metrics``,
``write_metrics``) are shared with ``evaluate``.
"""
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from spacy.tokens import Doc
from wasabi import msg

from ..errors import Errors
from ._util import Arg, Opt, app

TASKS = ("el", "coref", "re")
PAIR_BY = ("auto", "id", "order")
EL_PRED_KEY = "el_gold"   # where the readers put every mention of an EL file


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(Errors.KBE103.format(task=task, options=", ".join(TASKS)))


def reader_options(task: str, fmt: str, policy: str = "expand") -> Dict[str, Any]:
    """Reader keyword arguments for ``task`` in format ``fmt``."""
    options: Dict[str, Any] = {}
    if fmt == "jsonl":
        options["task"] = task
    if fmt != "spacy":
        options["policy"] = policy
    return options


def read_task_docs(path: Union[str, Path], fmt: str, nlp: Any, task: str, *,
                   policy: str = "expand", limit: int = 0) -> List[Doc]:
    """All Docs of ``path`` read by the ``fmt`` reader for ``task`` (KBE052/KBE108)."""
    import warnings

    from ..readers import AlignmentStats, read_docs

    if not Path(path).exists():
        raise ValueError(Errors.KBE052.format(path=path))
    options = reader_options(task, fmt, policy)
    if fmt != "spacy":
        options["stats"] = AlignmentStats(reader=fmt, policy=policy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # alignment counts: see `convert`
        docs = list(read_docs(path, fmt, nlp, limit=limit, **options))
    if not docs:
        raise ValueError(Errors.KBE108.format(path=path, fmt=fmt))
    return docs


def _ids(docs: Sequence[Doc]) -> List[Optional[str]]:
    out = []
    for doc in docs:
        source = doc._.source or {}
        out.append(str(source["id"]) if source.get("id") is not None else None)
    return out


def pair_docs(gold: Sequence[Doc], pred: Sequence[Doc], pair_by: str = "auto"
              ) -> List[Tuple[Doc, Doc]]:
    """``(gold, pred)`` pairs by ``doc._.source["id"]`` ("id"), by position ("order"),
    or by id when every id is present and unique on both sides, else by order
    ("auto"). Raises KBE104 when the documents do not correspond, KBE105 for
    repeated ids with ``pair_by="id"``."""
    if pair_by not in PAIR_BY:
        raise ValueError(Errors.KBE109.format(name="pair_by", value=pair_by,
                                              why="use " + ", ".join(PAIR_BY)))
    g_ids, p_ids = _ids(gold), _ids(pred)

    def usable(ids: List[Optional[str]], side: str, strict: bool) -> bool:
        if any(i is None for i in ids):
            if strict:
                raise ValueError(Errors.KBE104.format(n_gold=len(gold), n_pred=len(pred),
                                                      detail=f"some {side} documents have no id"))
            return False
        if len(set(ids)) != len(ids):
            if strict:
                dup = next(i for i in ids if ids.count(i) > 1)
                raise ValueError(Errors.KBE105.format(id=dup, n=ids.count(dup), side=side))
            return False
        return True

    by_id = pair_by == "id" or (pair_by == "auto" and usable(g_ids, "gold", False)
                                and usable(p_ids, "prediction", False))
    if by_id:
        usable(g_ids, "gold", True)
        usable(p_ids, "prediction", True)
        only_g = [i for i in g_ids if i not in set(p_ids)]
        only_p = [i for i in p_ids if i not in set(g_ids)]
        if only_g or only_p:
            raise ValueError(Errors.KBE104.format(
                n_gold=len(gold), n_pred=len(pred),
                detail=f"ids only in gold: {only_g[:5]}, only in the prediction: {only_p[:5]}"))
        index = {i: doc for i, doc in zip(p_ids, pred)}
        return [(doc, index[i]) for i, doc in zip(g_ids, gold)]
    if len(gold) != len(pred):
        raise ValueError(Errors.KBE104.format(n_gold=len(gold), n_pred=len(pred),
                                              detail="paired by order"))
    return list(zip(gold, pred))


def score_task(task: str, pairs: Iterable[Tuple[Doc, Doc]], **options: Any) -> Dict[str, Any]:
    """Score ``(gold, pred)`` Doc pairs with the metric functions of ``task``.
    ``options`` are the keyword arguments of ``score_el_docs`` (el),
    ``score_coref_docs`` (coref) or ``score_relation_docs`` (re); None values are
    left at the function's default."""
    from ..scorers.coref import score_coref_docs
    from ..scorers.el import score_el_docs
    from ..scorers.rel import score_relation_docs

    check_task(task)
    func = {"el": score_el_docs, "coref": score_coref_docs, "re": score_relation_docs}[task]
    return func(pairs, **{k: v for k, v in options.items() if v is not None})


def task_options(task: str, *, kb: Optional[Union[str, Path]] = None,
                 spans_key: Optional[str] = None, matching: str = "strong",
                 link_attr: str = "kb_id", per_type: bool = False,
                 span_cluster_prefix: Optional[str] = None, drop_singletons: bool = False,
                 negative_labels: Optional[Sequence[str]] = None,
                 threshold: Optional[float] = None, top_label_only: bool = False,
                 semeval: bool = False, per_label: bool = False) -> Dict[str, Any]:
    """The scoring options of ``task`` from CLI-style arguments (loads ``kb``)."""
    check_task(task)
    if task == "el":
        kb_ids: Optional[Set[str]] = None
        if kb is not None:
            from ..scorers.el import load_kb_ids

            kb_ids = load_kb_ids(kb)
        return {"spans_key": spans_key, "kb_ids": kb_ids, "matching": matching,
                "link_attr": link_attr, "per_type": per_type}
    if task == "coref":
        return {"span_cluster_prefix": span_cluster_prefix, "drop_singletons": drop_singletons}
    return {"negative_labels": tuple(negative_labels) if negative_labels else None,
            "threshold": threshold, "top_label_only": top_label_only, "semeval": semeval,
            "per_label": per_label}


def score(
    task: str,
    gold_path: Union[str, Path],
    pred_path: Union[str, Path],
    fmt: str,
    *,
    output: Optional[Union[str, Path]] = None,
    lang: str = "en",
    policy: str = "expand",
    pair_by: str = "auto",
    quiet: bool = False,
    **options: Any,
) -> Dict[str, Any]:
    """Score the prediction file ``pred_path`` against ``gold_path`` (same format).

    ``options``: see :func:`task_options` (``kb``, ``spans_key``, ``matching``, ...).
    For el, predictions read from an ELEVANT/JSONL file (or a DocBin of such Docs)
    are all its mentions (``doc.spans["el_gold"]``) unless ``spans_key`` is given;
    Docs without that group are scored by ``doc.ents``.
    Returns the metrics; writes them as JSON to ``output`` when given."""
    import spacy

    check_task(task)
    nlp = spacy.blank(lang)
    opts = task_options(task, **options)
    gold = read_task_docs(gold_path, fmt, nlp, task, policy=policy)
    pred = read_task_docs(pred_path, fmt, nlp, task, policy=policy)
    if task == "el" and opts["spans_key"] is None and all(EL_PRED_KEY in d.spans for d in pred):
        opts["spans_key"] = EL_PRED_KEY
    metrics = score_task(task, pair_docs(gold, pred, pair_by), **opts)
    if output is not None:
        write_metrics(metrics, output)
    if not quiet:
        print_metrics(metrics, title=f"{task} scores: {Path(pred_path).name} vs "
                                     f"{Path(gold_path).name}")
    return metrics


# ---------------------------------------------------------------- output

def metric_rows(metrics: Dict[str, Any]) -> Tuple[List[Tuple[str, ...]], List[Tuple[str, str]]]:
    """``(P/R/F rows, other rows)`` of a flat metrics dict for printing."""
    prf_rows: Dict[str, Dict[str, float]] = {}
    other: List[Tuple[str, str]] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            continue
        head, _, tail = key.rpartition("_")
        if tail in ("p", "r", "f") and isinstance(value, float):
            prf_rows.setdefault(head, {})[tail] = value
        else:
            other.append((key, f"{value:.2f}" if isinstance(value, float) else str(value)))
    rows = [(name, *(f"{100 * parts[x]:.2f}" if x in parts else "" for x in "prf"))
            for name, parts in prf_rows.items()]
    return rows, other


def print_metrics(metrics: Dict[str, Any], title: str = "Scores") -> None:
    """A readable wasabi table: P/R/F (in %) per metric, then counts and the rest."""
    rows, other = metric_rows(metrics)
    msg.divider(title)
    if rows:
        msg.table(rows, header=("metric", "P", "R", "F"), aligns=("l", "r", "r", "r"))
    if other:
        msg.table(other, aligns=("l", "r"))
    for key, value in metrics.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            table = [(name, *(f"{100 * v.get(x, 0.0):.2f}" for x in "prf"),
                      *(str(v.get(c, "")) for c in ("tp", "fp", "fn")))
                     for name, v in value.items()]
            msg.text(key)
            msg.table(table, header=("", "P", "R", "F", "tp", "fp", "fn"),
                      aligns=("l", "r", "r", "r", "r", "r", "r"))


def write_metrics(metrics: Dict[str, Any], output: Union[str, Path]) -> Path:
    import srsly

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, metrics)
    return output


# scoring options of the `score` and `evaluate` commands (typer reuses OptionInfo objects)
# fmt: off
OPTS = {
    "kb": Opt(None, "--kb", help="el: KB defining InKB (entity JSONL, Wikidata JSON or DenseKB folder)"),
    "spans_key": Opt(None, "--spans-key", help="el: score this span group (score: default all mentions of an ELEVANT/JSONL file, else doc.ents; evaluate: doc.ents)"),
    "matching": Opt("strong", "--matching", help="el: strong (exact span) or weak (overlap)"),
    "link_attr": Opt("kb_id", "--link-attr", help="el: read links from span.kb_id_ ('kb_id') or span.id_ ('id', e.g. entity_ruler pattern ids)"),
    "per_type": Opt(False, "--per-type", help="el: add scores per gold entity type"),
    "drop_singletons": Opt(False, "--drop-singletons", help="coref: ignore one-mention clusters on both sides"),
    "negative_labels": Opt(None, "--negative-labels", help="re: comma-separated 'no relation' labels (default Other,no_relation)"),
    "threshold": Opt(None, "--threshold", help="re: ignore predicted relations scoring below this"),
    "top_label_only": Opt(False, "--top-label-only", help="re: keep the best label per entity pair"),
    "semeval": Opt(False, "--semeval", help="re: add the official SemEval-2010 Task 8 score"),
    "per_label": Opt(False, "--per-label", help="re: add scores per relation label"),
}
# fmt: on


def split_labels(value: Optional[str]) -> Optional[List[str]]:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


@app.command("score")
def score_cli(
    # fmt: off
    task: str = Arg(..., help="el, coref or re"),
    gold_path: Path = Arg(..., help="Gold file or folder", exists=True),
    pred_path: Path = Arg(..., help="Prediction file or folder, same format", exists=True),
    fmt: str = Opt(..., "--format", "-f", help="elevant, conll2012, gum_tsv, conll04, semeval2010, jsonl or spacy"),
    output: Optional[Path] = Opt(None, "--output", "-o", help="Write the metrics to this JSON file"),
    lang: str = Opt("en", "--lang", "-l", help="Language of the blank tokenizer"),
    policy: str = Opt("expand", "--policy", "-p", help="Character spans off token boundaries: expand, contract or strict"),
    pair_by: str = Opt("auto", "--pair-by", help="Pair documents by 'id', by 'order', or 'auto' (id when unique)"),
    kb: Optional[Path] = OPTS["kb"],
    spans_key: Optional[str] = OPTS["spans_key"],
    matching: str = OPTS["matching"],
    link_attr: str = OPTS["link_attr"],
    per_type: bool = OPTS["per_type"],
    drop_singletons: bool = OPTS["drop_singletons"],
    negative_labels: Optional[str] = OPTS["negative_labels"],
    threshold: Optional[float] = OPTS["threshold"],
    top_label_only: bool = OPTS["top_label_only"],
    semeval: bool = OPTS["semeval"],
    per_label: bool = OPTS["per_label"],
    # fmt: on
):
    """Score a prediction file against a gold file in the same format (any reader
    format), print a table and optionally write the metrics as JSON."""
    try:
        score(task, gold_path, pred_path, fmt, output=output, lang=lang, policy=policy,
              pair_by=pair_by, kb=kb, spans_key=spans_key, matching=matching,
              link_attr=link_attr, per_type=per_type, drop_singletons=drop_singletons,
              negative_labels=split_labels(negative_labels), threshold=threshold,
              top_label_only=top_label_only, semeval=semeval, per_label=per_label)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    if output is not None:
        msg.good(f"Wrote metrics to {output}")
