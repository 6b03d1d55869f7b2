"""benchmarks/el.py: the ablation block of benchmarks/README_el.md is the one generated
from benchmarks/results/el.json; error classification of one document."""
import json
from pathlib import Path

import pytest
from spacy.lang.en import English
from spacy.tokens import Span

from .conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "el.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("el")


def _block(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return text[text.index(start) + len(start): text.index(end)].strip("\n")


def test_ablation_block_is_generated_from_the_results(bench):
    """(The README's status table, EL rows included: tests/test_status.py.)"""
    results = json.loads((REPO / "benchmarks" / "results" / "el.json").read_text(encoding="utf-8"))
    notes = (REPO / "benchmarks" / "README_el.md").read_text(encoding="utf-8")
    assert _block(notes, "el-ablation") == bench.ablation_table(results).strip("\n")
    # the default mode and spaCy's entity_linker come from the same protocol, both on all docs
    assert results["systems"]["entqa_default"]["sample"] == 1
    assert results["systems"]["spacy_entity_linker"]["sample"] == 1


def test_errors_are_classified_by_type(bench):
    from spacy_kbnlp.readers.elevant import build_el_doc

    nlp = English()
    text = "Paris and Berlin met Rome near Oslo town."
    labels = [{"id": 0, "span": [0, 5], "entity_id": "Q90", "name": "Paris"},
              {"id": 1, "span": [10, 16], "entity_id": "Q64", "name": "Berlin"},
              {"id": 2, "span": [21, 25], "entity_id": "Q220", "name": "Rome"},
              {"id": 3, "span": [31, 40], "entity_id": "Q585", "name": "Oslo"},
              ]
    gold = build_el_doc(nlp, text, labels)
    pred = nlp(text)
    pred.spans["entqa"] = [Span(pred, 0, 1, kb_id="Q90"),      # right
                           Span(pred, 2, 3, kb_id="Q1"),       # wrong entity
                           Span(pred, 6, 7, kb_id="Q585"),     # boundary (gold "Oslo town")
                           Span(pred, 3, 4, kb_id="Q5")]       # spurious ("met")
    kinds = [e["type"] for e in bench.classify_errors(gold, pred, "entqa",
                                                       {"Q90", "Q64", "Q220", "Q585"})]
    assert sorted(kinds) == ["boundary", "missed", "spurious", "wrong_entity"]
