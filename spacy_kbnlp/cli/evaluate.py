"""``python -m spacy_kbnlp evaluate {el,coref,re} PIPELINE DATA``: run a spaCy
pipeline over gold documents and score it with our metrics.

The gold file is read with our readers (any format of
``spacy_kbnlp.readers.FORMATS``), using the pipeline's tokenizer for text formats.
The pipeline then runs (``nlp.pipe``, with a progress bar) on Docs with exactly the
gold tokens and nothing else, or, with ``gold_ents``, with the gold entities in
``doc.ents`` (relation classification with given entities; the default for
``re``). The metrics come from ``spacy_kbnlp.scorers`` plus the speed:
``docs_per_s``, ``words_per_s``, ``seconds``, ``docs``, ``words``.
"""
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc
from wasabi import msg

from ..errors import Errors
from ..readers import input_doc  # noqa: F401 (public here too)
from ._util import Arg, Opt, app, setup_gpu
from .score import (OPTS, check_task, pair_docs, print_metrics, read_task_docs, score_task,
                    split_labels, task_options, write_metrics)


def load_pipeline(name: Union[str, Path]) -> Language:
    """``spacy.load`` of a pipeline folder or installed package (KBE107 on failure)."""
    import spacy

    import spacy_kbnlp  # noqa: F401  (registers our components for pipelines that use them)

    try:
        return spacy.load(name)
    except (OSError, IOError, ValueError, KeyError) as err:
        raise ValueError(Errors.KBE107.format(name=name, err=str(err).rstrip("."))) from None


def run_pipeline(nlp: Language, docs: Iterable[Doc], *, batch_size: Optional[int] = None,
                 total: Optional[int] = None, show_progress: bool = True) -> List[Doc]:
    from tqdm import tqdm

    out = []
    for doc in tqdm(nlp.pipe(docs, batch_size=batch_size), total=total, desc="evaluate",
                    unit="doc", disable=not show_progress, leave=False):
        out.append(doc)
    return out


def evaluate(
    task: str,
    pipeline: Union[str, Path, Language],
    data: Union[str, Path],
    fmt: str,
    *,
    output: Optional[Union[str, Path]] = None,
    gpu_id: int = -1,
    limit: int = 0,
    batch_size: Optional[int] = None,
    gold_ents: Optional[bool] = None,
    policy: str = "expand",
    show_progress: bool = True,
    quiet: bool = False,
    **options: Any,
) -> Dict[str, Any]:
    """Evaluate ``pipeline`` (a folder, package name or ``Language``) on ``data``.

    options: scoring options of :func:`spacy_kbnlp.cli.score.task_options`, e.g.
    ``kb`` (el: the KB that defines InKB), ``spans_key`` (el: the span group the
    linker writes), ``matching``, ``drop_singletons``, ``semeval``, ``threshold``.
    gold_ents: give the pipeline the gold entities (default: True for re only).
    Returns the metrics (and writes them as JSON to ``output``)."""
    check_task(task)
    setup_gpu(gpu_id)
    nlp = pipeline if isinstance(pipeline, Language) else load_pipeline(pipeline)
    opts = task_options(task, **options)
    gold = read_task_docs(data, fmt, nlp, task, policy=policy, limit=limit)
    if gold_ents is None:
        gold_ents = task == "re"
    inputs = [input_doc(nlp, doc, gold_ents) for doc in gold]
    start = time.perf_counter()
    pred = run_pipeline(nlp, inputs, batch_size=batch_size, total=len(inputs),
                        show_progress=show_progress)
    seconds = time.perf_counter() - start
    metrics = score_task(task, pair_docs(gold, pred, "order"), **opts)
    n_words = sum(len(doc) for doc in gold)
    metrics.update(docs=len(gold), words=n_words, seconds=seconds,
                   docs_per_s=len(gold) / seconds if seconds else 0.0,
                   words_per_s=n_words / seconds if seconds else 0.0)
    if output is not None:
        write_metrics(metrics, output)
    if not quiet:
        name = pipeline if not isinstance(pipeline, Language) else "pipeline"
        print_metrics(metrics, title=f"{task}: {name} on {Path(data).name}")
    return metrics


@app.command("evaluate")
def evaluate_cli(
    # fmt: off
    task: str = Arg(..., help="el, coref or re"),
    pipeline: str = Arg(..., help="Pipeline folder or installed package"),
    data: Path = Arg(..., help="Gold file or folder", exists=True),
    fmt: str = Opt(..., "--format", "-f", help="elevant, conll2012, gum_tsv, conll04, semeval2010, jsonl or spacy"),
    output: Optional[Path] = Opt(None, "--output", "-o", help="Write the metrics to this JSON file"),
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
    gold_ents: Optional[bool] = Opt(None, "--gold-ents/--no-gold-ents", help="Give the pipeline the gold doc.ents (default: on for re, off otherwise)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    limit: int = Opt(0, "--limit", help="Evaluate on the first N documents (0 = all)"),
    batch_size: Optional[int] = Opt(None, "--batch-size", "-b", help="nlp.pipe batch size (default: the pipeline's)"),
    policy: str = Opt("expand", "--policy", "-p", help="Character spans off token boundaries: expand, contract or strict"),
    # fmt: on
):
    """Run a spaCy pipeline over gold documents and score it (EL: InKB micro/macro
    P/R/F1; coref: MUC, B3, CEAFe, CoNLL, LEA; re: micro/strict P/R/F1, SemEval);
    prints a table with docs/s and words/s and optionally writes JSON."""
    try:
        evaluate(task, pipeline, data, fmt, output=output, gpu_id=gpu_id, limit=limit,
                 batch_size=batch_size, gold_ents=gold_ents, policy=policy, kb=kb,
                 spans_key=spans_key, matching=matching, link_attr=link_attr,
                 per_type=per_type, drop_singletons=drop_singletons,
                 negative_labels=split_labels(negative_labels), threshold=threshold,
                 top_label_only=top_label_only, semeval=semeval, per_label=per_label)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    if output is not None:
        msg.good(f"Wrote metrics to {output}")
