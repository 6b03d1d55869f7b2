"""The typer app shared by every CLI module, and small CLI helpers (as in spacy/cli/_util.py)."""
import typer
from spacy.cli._util import Arg, Opt, parse_config_overrides  # noqa: F401  (re-exported)

NAME = "python -m spacy_kbnlp"
HELP = """spacy-kbnlp: knowledge-backed NLP components for spaCy.

Build and query dense entity KBs, convert corpora to .spacy files, score and
evaluate pipelines, and run the demo."""

app = typer.Typer(name=NAME, help=HELP, no_args_is_help=True, add_completion=False)


def setup_gpu(gpu_id: int) -> None:
    """Use GPU ``gpu_id`` (spaCy convention: -1 = CPU)."""
    if gpu_id >= 0:
        from spacy.util import require_gpu

        require_gpu(gpu_id)

