"""benchmarks/status.py: the README's status table is the one generated from
benchmarks/results/*.json, and the check fails when they differ."""
import json
import shutil
from pathlib import Path

import pytest

from .conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def status():
    return load_benchmark("status")


def test_readme_status_table_is_generated_from_the_results(status):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert status.block(readme) == status.table(status.rows())
    assert status.main(["--check"]) == 0


def test_check_fails_when_the_readme_differs(status, tmp_path):
    readme = tmp_path / "README.md"
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = status.block(text)
    first = status.rows()[0]
    assert first["ours"] in body
    readme.write_text(text.replace(f"| {first['ours']} |", "| 99.9 |", 1), encoding="utf-8")
    assert status.main(["--check", "--readme", str(readme)]) == 1
    assert status.main(["--readme", str(readme)]) == 0  # rewrites the block
    assert status.main(["--check", "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == text


def test_rows_come_from_each_results_file(status, tmp_path):
    """One row source per results file; a missing file leaves its rows out, and
    scale.json (parallel annotation) gets its row when it exists."""
    results = tmp_path / "results"
    results.mkdir()
    assert status.rows(results) == []
    shutil.copy(REPO / "benchmarks" / "results" / "coref.json", results)
    got = status.rows(results)
    assert [r["component"].split()[0].rstrip(",") for r in got] == ["`seq2seq_coref`"] * 4
    coref = json.loads((results / "coref.json").read_text())
    ours = coref["systems"][coref["speed"]["system"]]  # the default decoding's latest run
    assert got[0]["ours"] == f"{100 * ours['conll_f1']:.1f} / {100 * ours['lea']:.1f}"
    assert got[1]["speed"] == f"{coref['speed']['ratio']:.2f}x docs/s"
    (results / "scale.json").write_text(json.dumps({
        "annotate": {"local_1": {"docs_per_s": 10.0}, "local_2": {"docs_per_s": 15.0},
                     "ray_1": {"docs_per_s": 9.0}, "ray_2": {"docs_per_s": 16.0},
                     "speedup_ray_1_to_2": 16.0 / 9.0},  # issue 17's keys, as scale.py writes them
        "date": "2026-12-06", "machine": {"cpus": 2}}))
    scale = status.rows(results)[-1]
    assert scale["ours"] == "16.0 docs/s" and scale["alternative"].endswith("10.0 docs/s")
    assert scale["speed"] == "1.60x docs/s; 1 -> 2 Ray workers 1.78x"
    assert scale["measured"] == "2026-12-06, 2-core CPU"
    table = status.table(status.rows(results))
    assert table.count("\n| ") == 1 + 5  # header + four coref rows + the scale row
