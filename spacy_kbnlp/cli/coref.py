"""``python -m spacy_kbnlp coref ...``: seq2seq coreference helpers.

Training is the generic command (``python -m spacy_kbnlp train configs/coref.cfg
--output training/coref ...``, see :mod:`spacy_kbnlp.cli.train`); this module adds:

* ``export-compact``: a trained ``seq2seq_coref`` as its low-rank int8 difference
  from the warm start drawn again with the training seed (a few MB instead of
  ~180 MB; :meth:`Seq2SeqCorefModel.save_compact`). The folder is a valid
  ``model`` setting of the component, and the demo's bundled coreference model.
* ``calibrate``: pick the decoding's ``mention_bias`` (added to the logit of
  ``<m>``) with the best CoNLL F1 on held-out gold docs and write it into the
  pipeline. A model may open too few mentions (high precision, low recall) or
  too many; the bias trades one for the other without retraining.
* ``fit-linker``: fit the mention-pair linker of ``relink`` (``models.coref_linker``)
  on a model's output for held-out gold docs, the threshold chosen by 2-fold
  cross-validation over the docs; writes the linker folder (load it with
  ``initialize(linker_path=...)``).
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import typer
from wasabi import msg

from ..errors import Errors
from ._util import Arg, Opt, app

coref_app = typer.Typer(name="coref", no_args_is_help=True,
                        help="seq2seq coreference: compact export, calibration")
app.add_typer(coref_app, name="coref")

PathLike = Union[str, Path]
NAME = "seq2seq_coref"
COMPONENT_FILE = "component.json"
DEFAULT_BIASES = (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
DEFAULT_THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def export_compact(pipeline: PathLike, output: PathLike, *, rank: int = 16,
                   name: str = NAME) -> Dict[str, Any]:
    """Write ``name`` of the trained ``pipeline`` to ``output`` in compact form,
    with the component's settings (``component.json``) and the names of the
    components before it. A model trained from a warm start is stored as its
    difference from that seeded start; one trained further from a compact model
    (``model`` = the bundled model or an exported folder) as its difference from
    the same start as that model. Returns the size in bytes and the spec."""
    from ..core.bundled import resolve_bundled
    from ..models.seq2seq_compact import COMPACT_SPEC
    from .evaluate import load_pipeline

    nlp = load_pipeline(pipeline)
    comp = nlp.get_pipe(name)
    seed = int(nlp.config["system"].get("seed") or 0)
    warm_start, decoder_layers = comp.cfg["warm_start"], comp.cfg["decoder_layers"]
    if comp.cfg.get("model"):
        # trained further from a compact model (the bundled one, say): same seeded base
        start = Path(resolve_bundled(comp.cfg["model"])) / COMPACT_SPEC
        if not start.exists():
            raise ValueError(Errors.KBE263.format(name=name, path=pipeline, model=comp.cfg["model"]))
        base = json.loads(start.read_text(encoding="utf-8"))
        seed, warm_start, decoder_layers = base["seed"], base["warm_start"], base["decoder_layers"]
    spec = comp.coref_model.save_compact(output, seed=seed, warm_start=warm_start,
                                         decoder_layers=decoder_layers, rank=rank)
    settings = {k: v for k, v in nlp.config.interpolate()["components"][name].items()
                if k not in ("factory", "model", "device", "scorer")}
    before = nlp.pipe_names[: nlp.pipe_names.index(name)]
    factories = [nlp.get_pipe_meta(n).factory for n in before]
    (Path(output) / COMPONENT_FILE).write_text(
        json.dumps({"config": settings, "before": factories}, indent=2), encoding="utf-8")
    size = sum(f.stat().st_size for f in Path(output).iterdir() if f.is_file())
    return {"bytes": size, "spec": spec}


BUNDLED_COREF_CONFIG = {"@misc": "spacy_kbnlp.BundledCorefModel.v1"}


def load_compact_pipeline(path: Optional[PathLike] = None, nlp: Any = None) -> Any:
    """A pipeline with ``seq2seq_coref`` and the compact model at ``path`` (written by
    :func:`export_compact`; None: the bundled model, whose ``model`` setting is then
    the portable :data:`BUNDLED_COREF_CONFIG`): the components it ran after, then
    the component with its saved settings (KBE157 if ``path`` holds no compact
    model). ``nlp``: add them to this pipeline (default: a blank English one, then
    initialized; into ``nlp`` only ``seq2seq_coref`` is initialized)."""
    import srsly
    from spacy.lang.en import English

    from ..core.bundled import bundled_coref_model, resolve_bundled
    from ..models.seq2seq_compact import COMPACT_SPEC

    folder = Path(resolve_bundled(bundled_coref_model()) if path is None else path)
    if not (folder / COMPACT_SPEC).exists():
        raise FileNotFoundError(Errors.KBE157.format(path=folder))
    component = srsly.read_json(folder / COMPONENT_FILE)
    fresh = nlp is None
    nlp = English() if fresh else nlp
    for factory in component["before"]:
        nlp.add_pipe(factory)
    model = dict(BUNDLED_COREF_CONFIG) if path is None else str(path)
    coref = nlp.add_pipe(NAME, config={**component["config"], "model": model})
    if fresh:
        nlp.initialize()
    else:  # leave the components already there as they are
        coref.initialize(nlp=nlp)
    return nlp


@coref_app.command("export-compact")
def export_compact_cli(
    # fmt: off
    pipeline: Path = Arg(..., help="A trained pipeline with seq2seq_coref (model-best)", exists=True),
    output: Path = Arg(..., help="Output folder"),
    rank: int = Opt(16, "--rank", help="Singular directions kept of each weight's difference", min=1),
    name: str = Opt(NAME, "--component", "-c", help="Name of the seq2seq_coref component"),
    # fmt: on
):
    """Store a trained seq2seq_coref as its low-rank difference from the seeded warm
    start (usable as the component's `model` setting)."""
    info = export_compact(pipeline, output, rank=rank, name=name)
    msg.good(f"Saved the compact model to {output} ({info['bytes'] / 2**20:.1f} MiB)")


def calibrate(pipeline: PathLike, dev: PathLike, output: PathLike, *,
              biases: Sequence[float] = DEFAULT_BIASES, limit: int = 0,
              name: str = NAME) -> Dict[str, Any]:
    """Decode the gold docs of ``dev`` (a .spacy file) with each ``mention_bias``
    and keep the one with the best CoNLL F1 (the smallest bias among ties); write
    the pipeline with it to ``output`` (a new folder) and the curve to
    ``output/{name}_calibration.json``. Returns the choice and the curve."""
    import srsly

    from ..pipeline.base import update_settings
    from .evaluate import evaluate, load_pipeline

    if not biases:
        raise ValueError(Errors.KBE265.format(what="no mention_bias values were given"))
    nlp = load_pipeline(pipeline)
    comp = nlp.get_pipe(name)
    old = float(comp.cfg.get("mention_bias", 0.0))
    curve: List[Dict[str, float]] = []
    try:
        for bias in sorted({round(float(b), 6) for b in biases}):
            comp.cfg["mention_bias"] = bias
            m = evaluate("coref", nlp, dev, "spacy", limit=limit, quiet=True,
                         show_progress=False)
            curve.append({"mention_bias": bias, "conll_f": m["coref_conll_f"],
                          "mention_p": m["coref_mention_p"], "mention_r": m["coref_mention_r"],
                          "lea_f": m["coref_lea_f"], "seconds": m["seconds"]})
            msg.text(f"mention_bias {bias:g}: CoNLL F1 {100 * m['coref_conll_f']:.1f}, mentions "
                     f"P {100 * m['coref_mention_p']:.1f} R {100 * m['coref_mention_r']:.1f}")
        docs = m["docs"]
    finally:
        comp.cfg["mention_bias"] = old
    best = max(curve, key=lambda c: (c["conll_f"], -c["mention_bias"]))
    update_settings(nlp, {f"components.{name}.mention_bias": best["mention_bias"]})
    out = Path(output)
    nlp.to_disk(out)
    at_old = [c for c in curve if c["mention_bias"] == round(old, 6)]
    result = {"mention_bias": best["mention_bias"], "dev_conll_f": best["conll_f"],
              "previous_mention_bias": old, "docs": docs,
              "conll_f_at_previous": at_old[0]["conll_f"] if at_old else None, "curve": curve}
    srsly.write_json(out / f"{name}_calibration.json", result)
    return result


@coref_app.command("calibrate")
def calibrate_cli(
    # fmt: off
    pipeline: Path = Arg(..., help="A trained pipeline with seq2seq_coref", exists=True),
    dev: Path = Arg(..., help="Held-out gold docs (.spacy with coreference spans)", exists=True),
    output: Path = Arg(..., help="Output folder for the calibrated pipeline"),
    biases: str = Opt(",".join(f"{b:g}" for b in DEFAULT_BIASES), "--biases", help="Comma-separated mention_bias values to try"),
    limit: int = Opt(0, "--limit", help="Use the first N dev docs (0: all)", min=0),
    name: str = Opt(NAME, "--component", "-c", help="Name of the seq2seq_coref component"),
    # fmt: on
):
    """Choose seq2seq_coref's mention_bias (logit added to <m> when decoding) by
    CoNLL F1 on held-out gold docs and write it into a copy of the pipeline."""
    try:
        values = [float(b) for b in biases.split(",") if b.strip()]
    except ValueError:
        msg.fail(f"--biases must be comma-separated numbers, got '{biases}'", exits=1)
    try:
        res = calibrate(pipeline, dev, output, biases=values, limit=limit, name=name)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    prev = res["conll_f_at_previous"]
    msg.good(f"mention_bias {res['mention_bias']:g}: dev CoNLL F1 {100 * res['dev_conll_f']:.1f} "
             f"on {res['docs']} docs" + (f" (was {100 * prev:.1f} at {res['previous_mention_bias']:g})"
                                         if prev is not None else "") + f"; saved to {output}")


class _Collect:
    """Stands in for the pair linker in ``predict``: keeps what it would read."""

    def __init__(self):
        self.docs: List[Any] = []

    def link(self, segments, clusters, words, threshold):
        self.docs.append((segments, clusters, list(words)))
        return clusters


def fit_linker(pipeline: Union[PathLike, Any], dev: PathLike, output: PathLike, *,
               thresholds: Sequence[float] = DEFAULT_THRESHOLDS, hidden: int = 32, epochs: int = 16,
               l2: float = 1.0, limit: int = 0, name: str = NAME) -> Dict[str, Any]:
    """Decode the gold docs of ``dev`` once with the pipeline's settings, fit the
    pair linker on the output and the gold clusters, choose ``link_threshold`` by
    2-fold cross-validation over the docs (even/odd; the best CoNLL F1, the smaller
    threshold among ties), refit on all docs and write the linker to ``output``
    with ``linker_fit.json`` (the curve). ``pipeline``: a path or a ``Language``;
    ``hidden``, ``epochs``, ``l2``: as :func:`~spacy_kbnlp.models.coref_linker.fit_pair_linker`."""
    import srsly

    from ..models.coref_linker import fit_pair_linker
    from ..scorers.coref import doc_clusters, score_coref_clusters
    from .evaluate import input_doc, load_pipeline, read_task_docs

    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(Errors.KBE266.format(what=f"thresholds must lie in [0, 1], got {list(thresholds)}"))
    nlp = load_pipeline(pipeline) if isinstance(pipeline, (str, Path)) else pipeline
    comp = nlp.get_pipe(name)
    gold = read_task_docs(dev, "spacy", nlp, "coref", limit=limit)
    if len(gold) < 2:
        raise ValueError(Errors.KBE266.format(what=f"need at least 2 gold docs in {dev}, got {len(gold)}"))
    collect = _Collect()
    saved = (comp.linker, comp.cfg["relink"])
    comp.linker, comp.cfg["relink"] = collect, True
    try:
        comp.predict([input_doc(nlp, doc, False) for doc in gold])
    finally:
        comp.linker, comp.cfg["relink"] = saved
    data = [(segs, merged, words, doc_clusters(g))
            for (segs, merged, words), g in zip(collect.docs, gold)]
    keys = [d[3] for d in data]

    def score(preds) -> Dict[str, float]:
        return score_coref_clusters(zip(keys, [[c for c in p if len(c) > 1] for p in preds]))

    fit = dict(hidden=hidden, epochs=epochs, l2=l2)
    folds = [list(range(0, len(data), 2)), list(range(1, len(data), 2))]
    preds: Dict[float, List[Any]] = {t: [None] * len(data) for t in thresholds}
    for k in (0, 1):
        linker = fit_pair_linker([data[i] for i in folds[1 - k]], **fit)
        for i in folds[k]:
            for t in thresholds:
                preds[t][i] = linker.link(*data[i][:3], t)
    curve = []
    for t in sorted(set(thresholds)):
        m = score(preds[t])
        curve.append({"threshold": t, "conll_f": m["coref_conll_f"], "lea_f": m["coref_lea_f"],
                      "muc_f": m["coref_muc_f"], "b3_f": m["coref_b3_f"], "ceafe_f": m["coref_ceafe_f"]})
    unlinked = score([d[1] for d in data])
    best = max(curve, key=lambda c: (c["conll_f"], -c["threshold"]))
    linker = fit_pair_linker(data, **fit, trained_on=f"{Path(dev).name} ({len(data)} docs)")
    out = Path(output)
    linker.to_disk(out)
    result = {"link_threshold": best["threshold"], "cv_conll_f": best["conll_f"],
              "cv_lea_f": best["lea_f"], "without_linker_conll_f": unlinked["coref_conll_f"],
              "without_linker_lea_f": unlinked["coref_lea_f"], "docs": len(data), **fit,
              "curve": curve}
    srsly.write_json(out / "linker_fit.json", result)
    return result


@coref_app.command("fit-linker")
def fit_linker_cli(
    # fmt: off
    pipeline: Path = Arg(..., help="A pipeline with seq2seq_coref", exists=True),
    dev: Path = Arg(..., help="Held-out gold docs (.spacy with coreference spans)", exists=True),
    output: Path = Arg(..., help="Output folder for the linker"),
    thresholds: str = Opt(",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS), "--thresholds", help="Comma-separated link thresholds to cross-validate"),
    hidden: int = Opt(32, "--hidden", help="Hidden ReLU units of the pair scorer (0: logistic)", min=0),
    epochs: int = Opt(16, "--epochs", help="Training passes over the pairs (hidden units only)", min=1),
    l2: float = Opt(1.0, "--l2", help="L2 penalty of the logistic weights (--hidden 0)", min=0.0),
    limit: int = Opt(0, "--limit", help="Use the first N dev docs (0: all)", min=0),
    name: str = Opt(NAME, "--component", "-c", help="Name of the seq2seq_coref component"),
    # fmt: on
):
    """Fit seq2seq_coref's mention-pair linker (relink) on held-out gold docs and
    choose its link_threshold by 2-fold cross-validation."""
    try:
        values = [float(t) for t in thresholds.split(",") if t.strip()]
    except ValueError:
        msg.fail(f"--thresholds must be comma-separated numbers, got '{thresholds}'", exits=1)
    try:
        res = fit_linker(pipeline, dev, output, thresholds=values, hidden=hidden, epochs=epochs,
                         l2=l2, limit=limit, name=name)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    msg.good(f"link_threshold {res['link_threshold']:g}: cross-validated CoNLL F1 "
             f"{100 * res['cv_conll_f']:.1f} (without the linker {100 * res['without_linker_conll_f']:.1f}) "
             f"on {res['docs']} docs; saved to {output}. Use it with "
             f"[initialize.components.{name}] linker_path and link_threshold "
             f"{res['link_threshold']:g}.")
