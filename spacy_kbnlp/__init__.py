"""spacy-kbnlp: knowledge-backed NLP components for spaCy.

Importing the package registers its readers, scorers, misc functions and
components with spaCy's registries (entry points do the same without an import).
It loads no model and touches no network.
"""
from .about import __version__
from .extensions import install_extensions
from .visualize import render

# registering modules: keep them free of heavy imports at module level
from .encoders import hf  # noqa: F401
from .kb import dense_kb, spacy_kb  # noqa: F401
from .pipeline import seq2seq_coref  # noqa: F401
from .pipeline import insgenel_linker  # noqa: F401
from .readers import conll04, conll2012, elevant, gum_tsv, jsonl, semeval2010  # noqa: F401
from .scorers import coref, el, rel  # noqa: F401
from .llm import backends  # noqa: F401
from .models import etrag  # noqa: F401
from .pipeline import demo_retriever, etrag_relation_extractor, icl_relation_extractor  # noqa: F401

install_extensions()

__all__ = ["__version__", "install_extensions", "render"]
