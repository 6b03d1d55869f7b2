"""``python -m spacy_kbnlp train CONFIG --output DIR``: train a torch component of a
spaCy pipeline with the project's training loop (:mod:`spacy_kbnlp.training.loop`).

The config is a normal spaCy training config ([paths], [nlp], [components],
[corpora], [training] with ``score_weights``, [initialize]) plus a
``[torch_training]`` block with the loop's settings
(:class:`~spacy_kbnlp.training.loop.TrainingConfig`) and ``dev_limit`` (evaluate on
the first N dev docs during training; 0 = all). The pipeline is built with
spaCy's ``init_nlp``; the trained component is the one that offers
``training_items(examples)``, ``training_loss(items)`` and ``torch_module``
(``seq2seq_coref`` does; ``--component`` picks one by name). Outputs:
``DIR/model-best`` and ``DIR/model-last`` (loadable with ``spacy.load``),
``DIR/checkpoint`` (exact resumption with ``--resume``), ``DIR/train_log.jsonl``.
"""
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import typer
from wasabi import msg

from ..errors import Errors
from ._util import Arg, Opt, app, parse_config_overrides, setup_gpu

LOOP_SECTION = "torch_training"
EXTRA_KEYS = ("dev_limit",)


def find_trainable(nlp: Any, name: Optional[str] = None) -> Any:
    """The pipeline component trained by :func:`train_pipeline` (KBE258 if none)."""
    names = [n for n, _ in nlp.pipeline]
    cands = [(n, p) for n, p in nlp.pipeline
             if all(hasattr(p, a) for a in ("training_items", "training_loss", "torch_module"))
             and (name is None or n == name)]
    if len(cands) != 1:
        which = f" named '{name}'" if name else ("" if not cands else
                                                 " (several; pick one with --component)")
        raise ValueError(Errors.KBE258.format(which=which, names=", ".join(names) or "none"))
    return cands[0][1]


def weighted_score(scores: Dict[str, Any], weights: Dict[str, Optional[float]]) -> float:
    """spaCy's final score: the sum of ``weight * score`` over weighted keys."""
    return float(sum((w or 0.0) * float(scores.get(k) or 0.0) for k, w in weights.items()))


def train_pipeline(config_path: Union[str, Path], output: Union[str, Path], *,
                   overrides: Optional[Dict[str, Any]] = None, component: Optional[str] = None,
                   resume: bool = False, gpu_id: int = -1, show_progress: bool = True) -> Any:
    """Build the pipeline of ``config_path``, train its torch component and write
    ``output/model-best``, ``output/model-last``, ``output/checkpoint``. Returns the
    :class:`~spacy_kbnlp.training.loop.TrainResult`."""
    from spacy import util
    from spacy.training.initialize import init_nlp
    from spacy.util import resolve_dot_names

    import spacy_kbnlp  # noqa: F401  (registers factories, readers, scorers)

    from ..training.loop import TrainingConfig, train_loop

    setup_gpu(gpu_id)
    config = util.load_config(config_path, overrides=overrides or {}, interpolate=False)
    loop_cfg = dict(config.interpolate().get(LOOP_SECTION, {}))
    extra = {k: loop_cfg.pop(k) for k in EXTRA_KEYS if k in loop_cfg}
    tcfg = TrainingConfig.from_dict(loop_cfg)
    # threads first: building the pipeline already runs torch
    import torch

    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    nlp = init_nlp(config, use_gpu=gpu_id)
    trainable = find_trainable(nlp, component)
    interpolated = nlp.config.interpolate()
    T = interpolated["training"]
    train_corpus, dev_corpus = resolve_dot_names(interpolated, [T["train_corpus"], T["dev_corpus"]])
    train_examples = list(train_corpus(nlp))
    dev_examples = list(dev_corpus(nlp))
    if extra.get("dev_limit"):
        dev_examples = dev_examples[: int(extra["dev_limit"])]
    # the components before the trained one annotate the predicted docs (as spaCy's
    # annotating_components), e.g. a sentencizer for partial linearization
    before = [proc for name, proc in nlp.pipeline[: nlp.pipe_names.index(trainable.name)]]
    for eg in train_examples:
        for proc in before:
            eg.predicted = proc(eg.predicted)
    items = trainable.training_items(train_examples)
    if not items:
        raise ValueError(Errors.KBE256.format(name=trainable.name,
                                              why=f"{len(train_examples)} training docs gave no segments"))
    weights = dict(T.get("score_weights") or {}) or {
        k: v for k, v in nlp.config["training"]["score_weights"].items()}
    output = Path(output)
    msg.info(f"Training '{trainable.name}' on {len(train_examples)} docs ({len(items)} items), "
             f"evaluating on {len(dev_examples)} dev docs; output: {output}")

    def evaluate() -> Dict[str, float]:
        start = time.perf_counter()
        scores = nlp.evaluate(dev_examples) if dev_examples else {}
        scores = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
        scores["score"] = weighted_score(scores, weights)
        scores["eval_seconds"] = time.perf_counter() - start
        return scores

    def export(path: Path) -> None:
        nlp.to_disk(path)

    result = train_loop(trainable.torch_module, items, trainable.training_loss, tcfg, output,
                        evaluate=evaluate, score_key="score", export=export, resume=resume,
                        show_progress=show_progress)
    msg.good(f"Done ({result.stopped}) after {result.steps} steps in {result.seconds / 60:.1f} "
             f"min; best score {result.best_score} at step {result.best_step}")
    return result


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_cli(
    # fmt: off
    ctx: typer.Context,
    config_path: Path = Arg(..., help="Training config (.cfg) with a [torch_training] block", exists=True, dir_okay=False),
    output: Path = Opt(..., "--output", "-o", help="Output folder (model-best, model-last, checkpoint, train_log.jsonl)"),
    component: Optional[str] = Opt(None, "--component", "-c", help="Name of the component to train (default: the only trainable one)"),
    resume: bool = Opt(False, "--resume", help="Continue the run saved in OUTPUT/checkpoint"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    # fmt: on
):
    """Train a torch component (e.g. seq2seq_coref) of a spaCy pipeline: AdamW with
    warmup, accumulation, periodic dev evaluation, best/last pipelines and exact
    resumption. Config overrides as in spaCy: --paths.train corpus/train.spacy"""
    overrides = parse_config_overrides(ctx.args)
    try:
        train_pipeline(config_path, output, overrides=overrides, component=component,
                       resume=resume, gpu_id=gpu_id)
    except ValueError as err:
        msg.fail(str(err), exits=1)
