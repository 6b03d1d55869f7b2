"""``python -m spacy_kbnlp coref ...``: seq2seq coreference helpers.

Training is the generic command (``python -m spacy_kbnlp train configs/coref.cfg
--output training/coref ...``, see :mod:`spacy_kbnlp.cli.train`); this module adds:

* ``export-compact``: a trained ``seq2seq_coref`` as its low-rank int8 difference
  from the warm start drawn again with the training seed (a few MB instead of
  ~180 MB; :meth:`Seq2SeqCorefModel.save_compact`). The folder is a valid
  ``model`` setting of the component, and the demo's bundled coreference model.
"""
import json
from pathlib import Path
from typing import Any, Dict, Union

import typer
from wasabi import msg

from ..errors import Errors
from ._util import Arg, Opt, app

coref_app = typer.Typer(name="coref", no_args_is_help=True,
                        help="seq2seq coreference: compact export")
app.add_typer(coref_app, name="coref")

PathLike = Union[str, Path]
NAME = "seq2seq_coref"
COMPONENT_FILE = "component.json"


def export_compact(pipeline: PathLike, output: PathLike, *, rank: int = 16,
                   name: str = NAME) -> Dict[str, Any]:
    """Write ``name`` of the trained ``pipeline`` to ``output`` in compact form,
    with the component's settings (``component.json``) and the names of the
    components before it. Returns the size in bytes and the spec."""
    from .evaluate import load_pipeline

    nlp = load_pipeline(pipeline)
    comp = nlp.get_pipe(name)
    if comp.cfg.get("model"):
        raise ValueError(Errors.KBE263.format(name=name, path=pipeline, model=comp.cfg["model"]))
    seed = int(nlp.config["system"].get("seed") or 0)
    spec = comp.coref_model.save_compact(output, seed=seed, warm_start=comp.cfg["warm_start"],
                                         decoder_layers=comp.cfg["decoder_layers"], rank=rank)
    settings = {k: v for k, v in nlp.config.interpolate()["components"][name].items()
                if k not in ("factory", "model", "device", "scorer")}
    before = nlp.pipe_names[: nlp.pipe_names.index(name)]
    factories = [nlp.get_pipe_meta(n).factory for n in before]
    (Path(output) / COMPONENT_FILE).write_text(
        json.dumps({"config": settings, "before": factories}, indent=2), encoding="utf-8")
    size = sum(f.stat().st_size for f in Path(output).iterdir() if f.is_file())
    return {"bytes": size, "spec": spec}


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
