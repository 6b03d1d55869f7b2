"""spaCy pipeline components of spacy_kbnlp (one module and factory each).

* :mod:`.seq2seq_coref`: ``seq2seq_coref``, coreference as constrained seq2seq generation.
"""
