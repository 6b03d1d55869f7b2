__title__ = "spacy-kbnlp"
__version__ = "0.1.0.dev0"
