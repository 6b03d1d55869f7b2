"""benchmarks/kb_scale.py: the tables and the goal paragraph of README_kb_scale.md are the
ones generated from benchmarks/results/kb_scale.json, which holds both sizes."""
import json
from pathlib import Path
from types import SimpleNamespace

from .conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def _block(text, name):
    start, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    return text[text.index(start) + len(start): text.index(end)]


def test_readme_kb_scale_is_generated_from_the_results(tmp_path):
    bench = load_benchmark("kb_scale")
    records = json.loads((REPO / "benchmarks" / "results" / "kb_scale.json").read_text())
    assert {r["n"] for r in records} >= {100_000, 1_000_000}
    assert {r["preset"] for r in records if r["n"] == 1_000_000} == set(bench.DEFAULT_PRESETS)
    out = tmp_path / "README_kb_scale.md"
    bench.write_markdown(records, SimpleNamespace(markdown=out))
    notes = (REPO / "benchmarks" / "README_kb_scale.md").read_text(encoding="utf-8")
    generated = out.read_text(encoding="utf-8")
    for name in ("kb_scale", "kb_goal"):
        assert _block(notes, name) == _block(generated, name), name
