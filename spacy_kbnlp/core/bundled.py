"""The models that ship inside the package (``spacy_kbnlp/assets``), by portable name.

A saved config must not carry the absolute path of the machine that wrote it, so a
bundled model is named by a reference, ``"spacy_kbnlp:<asset>"``, that each
installation resolves to its own copy (:func:`resolve_bundled`). Registered
functions give the references as config values:

* ``{"@misc": "spacy_kbnlp.BundledCorefModel.v1"}``: the ``model`` setting of
  ``seq2seq_coref`` for the bundled compact coreference model;
* ``seq2seq_coref_linker``: the pair linker fitted on the bundled coreference model's
  output (``models.coref_linker``), used by ``seq2seq_coref`` with ``relink``;
* ``{"@architectures": "spacy_kbnlp.BundledEntQAReader.v1"}`` (``models.reader``):
  the ``reader`` of ``entqa_linker`` that starts from the bundled reader.
"""
from pathlib import Path
from typing import Optional

from spacy.util import registry

from ..errors import Errors

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PREFIX = "spacy_kbnlp:"
BUNDLED = ("entqa_reader", "entqa_scorer", "seq2seq_coref", "seq2seq_coref_linker")


def bundled_ref(name: str) -> str:
    """The portable reference of the bundled model ``name`` (KBE174 if unknown)."""
    if name not in BUNDLED:
        raise ValueError(Errors.KBE174.format(name=name, options=", ".join(BUNDLED)))
    return PREFIX + name


def is_bundled_ref(value: Optional[str]) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def resolve_bundled(value: Optional[str]) -> Optional[str]:
    """The folder of a bundled model for its reference; any other value unchanged."""
    if not is_bundled_ref(value):
        return value
    return str(ASSETS / bundled_ref(value[len(PREFIX):])[len(PREFIX):])


@registry.misc("spacy_kbnlp.BundledCorefModel.v1")
def bundled_coref_model() -> str:
    """The bundled compact coreference model, as the ``model`` setting of
    ``seq2seq_coref`` (a reference each installation resolves to its own copy)."""
    return bundled_ref("seq2seq_coref")
