"""The nested seeded subset (readers.select.fraction_subset) and the SubsetCorpus reader
of configs/etrag.cfg; the JSONL reader keeps overlapping entities in doc.spans["entities"]."""
from pathlib import Path

import pytest
import spacy
from spacy.util import registry

from spacy_kbnlp.readers.select import fraction_subset

NEW_LABELS = Path(__file__).resolve().parents[1] / "fixtures" / "re" / "new_labels.jsonl"


def test_fraction_subset_nested_seeded_in_order():
    items = list(range(100))
    small, big = fraction_subset(items, 0.05, 1), fraction_subset(items, 0.2, 1)
    assert len(small) == 5 and len(big) == 20
    assert set(small) <= set(big) and small == sorted(small)
    assert fraction_subset(items, 0.05, 2) != small
    assert fraction_subset(items, 1.0, 7) == items
    assert fraction_subset(items[:3], 0.01) and len(fraction_subset(items[:3], 0.01)) == 1
    for bad in (0, -0.1, 1.5, "half"):
        with pytest.raises(ValueError, match="KBE320"):
            fraction_subset(items, bad)


def test_subset_corpus_jsonl_keeps_overlapping_entities():
    nlp = spacy.blank("en")
    make = registry.readers.get("spacy_kbnlp.SubsetCorpus.v1")
    egs = list(make(str(NEW_LABELS))(nlp))
    assert len(egs) == 7
    bank = egs[0].reference
    # doc.ents holds the non-overlapping entity; the span group every entity
    assert [(e.text, e.label_) for e in bank.ents] == [("Bank of Rome", "ORG")]
    assert [(e.text, e.label_) for e in bank.spans["entities"]] == [("Bank of Rome", "ORG"), ("Rome", "CITY")]
    assert bank._.rel_records[0]["label"] == "named_after"
    half = [eg.reference._.source["id"] for eg in make(str(NEW_LABELS), fraction=0.5, seed=1)(nlp)]
    ids = [eg.reference._.source["id"] for eg in egs]
    assert half == [d._.source["id"] for d in fraction_subset([e.reference for e in egs], 0.5, 1)]
    assert len(half) == 4 and half == [i for i in ids if i in half]
    with pytest.raises(ValueError, match="KBE320"):
        make(str(NEW_LABELS), fraction=0.0)
