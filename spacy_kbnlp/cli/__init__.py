"""Command line interface: ``python -m spacy_kbnlp COMMAND``."""
from ._util import app

# each module registers its commands on ``app``
from . import convert, coref, data, demo, entqa, evaluate, insgenel, kb, retrieval, score, train  # noqa: F401,E402
from . import annotate, visualize  # noqa: F401,E402


def main() -> None:
    app()


__all__ = ["app", "main"]
