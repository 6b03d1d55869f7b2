"""``python -m spacy_kbnlp insgenel ...``: INSGENEL / INSGENEL-R helpers.

Training is the generic command (``python -m spacy_kbnlp train configs/insgenel.cfg
--output training/insgenel ...``, see :mod:`spacy_kbnlp.cli.train`); this module adds:

* ``attach-retriever``: a trained INSGENEL pipeline + a trained ``entqa_linker``
  pipeline -> an INSGENEL-R pipeline (the retriever and its KB are stored inside the
  component; ``mode`` becomes ``retrieval``);
* ``calibrate``: pick the link-probability threshold on held-out gold docs (the
  EntQA calibration, Appendix D.1, applied to this component) and write it into the
  pipeline;
* ``render``: print a text rewritten with ``{mention}[entity name]`` markup.

Each command is a thin wrapper around an importable function.
"""
from pathlib import Path
from typing import Any, Dict, Optional, Union

import typer
from wasabi import msg

from ._util import Arg, Opt, app

insgenel_app = typer.Typer(name="insgenel", no_args_is_help=True,
                           help="INSGENEL generative entity linking: retriever, calibration, markup")
app.add_typer(insgenel_app, name="insgenel")

PathLike = Union[str, Path]
NAME = "insgenel_linker"


def attach_retriever(pipeline: PathLike, retriever_pipeline: PathLike, output: PathLike, *,
                     name: str = NAME, retriever_component: str = "entqa_linker",
                     top_k: Optional[int] = None) -> Path:
    """Save ``pipeline`` to ``output`` with ``name`` in INSGENEL-R mode, using the
    retriever of ``retriever_pipeline``'s ``retriever_component``."""
    from ..pipeline.base import update_settings
    from .evaluate import load_pipeline

    nlp = load_pipeline(pipeline)
    linker = nlp.get_pipe(name)
    linker.attach_retriever(retriever_pipeline, retriever_component)
    settings = {f"components.{name}.mode": "retrieval"}
    if top_k is not None:
        settings[f"components.{name}.top_k"] = int(top_k)
    update_settings(nlp, settings)
    nlp.to_disk(output)
    return Path(output)


def render(pipeline: PathLike, text: str, name: str = NAME) -> str:
    """``text`` with each link of ``name`` written as ``{mention}[entity name]``."""
    from .evaluate import load_pipeline

    nlp = load_pipeline(pipeline)
    linker = nlp.get_pipe(name)
    return linker.markup_text(nlp(text))


@insgenel_app.command("attach-retriever")
def attach_retriever_cli(
    # fmt: off
    pipeline: Path = Arg(..., help="Trained pipeline with an insgenel_linker", exists=True),
    retriever_pipeline: Path = Arg(..., help="Trained pipeline with an entqa_linker (its retriever and KB)", exists=True),
    output: Path = Arg(..., help="Output pipeline folder (INSGENEL-R)"),
    name: str = Opt(NAME, "--name", help="insgenel_linker component name"),
    retriever_component: str = Opt("entqa_linker", "--retriever-component", help="entqa_linker component name"),
    top_k: Optional[int] = Opt(None, "--top-k", "-k", help="Entities retrieved per document (default: the component's)"),
    # fmt: on
):
    """Make an INSGENEL-R pipeline: the insgenel_linker restricted to the entities that
    the entqa_linker's retriever finds for each document, called only on their
    surface forms."""
    try:
        out = attach_retriever(pipeline, retriever_pipeline, output, name=name,
                               retriever_component=retriever_component, top_k=top_k)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    msg.good(f"INSGENEL-R pipeline written to {out}")


@insgenel_app.command("calibrate")
def calibrate_cli(
    # fmt: off
    pipeline: Path = Arg(..., help="Pipeline folder with an insgenel_linker", exists=True),
    dev: Path = Arg(..., help="Held-out gold docs (.spacy, ELEVANT Docs)", exists=True),
    output: Optional[Path] = Opt(None, "--output", "-o", help="Output pipeline folder (default: in place)"),
    name: str = Opt(NAME, "--name", help="Component name"),
    # fmt: on
):
    """Choose the link-probability threshold that maximizes InKB micro F1 on held-out
    docs and write it into the pipeline (the entqa calibration, for this component)."""
    from .entqa import calibrate, calibration_message

    try:
        res: Dict[str, Any] = calibrate(pipeline, dev, output, name=name)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    msg.good(calibration_message(res))


@insgenel_app.command("render")
def render_cli(
    # fmt: off
    pipeline: Path = Arg(..., help="Pipeline folder with an insgenel_linker", exists=True),
    text: str = Arg(..., help="Text to link"),
    name: str = Opt(NAME, "--name", help="Component name"),
    # fmt: on
):
    r"""Print TEXT with the links as {mention}\[entity name] markup."""
    try:
        print(render(pipeline, text, name))
    except ValueError as err:
        msg.fail(str(err), exits=1)
