"""Dense entity KB: records, FAISS index presets, DenseKB and the spaCy KB adapter.

* ``records``:  ``EntityRecord``, ``read_entities``/``write_entities`` (JSONL, docs/kb.md),
  converters from the Wikidata-style JSON and spaCy's ``InMemoryLookupKB``,
  ``load_records``/``load_entity_ids`` for any KB path, ``entity_text`` templates.
* ``index``:    ``VectorIndex``, the project's one FAISS layer (presets, stable ids).
* ``dense_kb``: ``DenseKB`` = records + vectors + index + manifest.
* ``spacy_kb``: ``DenseSpacyKB`` and candidate generators for spaCy's ``entity_linker``.
"""
from .dense_kb import DenseKB, dense_kb_from_disk
from .index import PRESETS, VectorIndex
from .records import (DEFAULT_TEMPLATE, EntityRecord, entity_text, load_entity_ids, load_records,
                      read_entities, records_from_inmemory_kb, records_from_wikidata_json, write_entities)
from .spacy_kb import DenseSpacyKB

__all__ = [
    "DEFAULT_TEMPLATE", "DenseKB", "DenseSpacyKB", "EntityRecord", "PRESETS", "VectorIndex",
    "dense_kb_from_disk", "entity_text", "load_entity_ids", "load_records", "read_entities",
    "records_from_inmemory_kb", "records_from_wikidata_json", "write_entities",
]
