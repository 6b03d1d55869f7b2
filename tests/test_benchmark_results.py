"""benchmarks/_results.py: every benchmark script merges its rows into
benchmarks/results/*.json by key and never drops the rows of other runs."""
import json
import re
from pathlib import Path

import pytest

from .conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["el", "coref", "re", "insgenel", "kb_scale", "trie_scale"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def results():
    return load_benchmark("_results")


def test_merge_rows_keeps_foreign_rows_and_replaces_by_key(results, tmp_path):
    path = tmp_path / "kb_scale.json"
    key = ("n", "preset", "batch", "params")
    foreign = [{"n": 1_000_000, "preset": "ivf_sq8", "batch": 1, "params": {"nprobe": 32}, "p50_ms": 2.3},
               {"n": 100_000, "preset": "hnsw", "batch": 1, "params": {"ef_search": 64}, "p50_ms": 0.4},
               {"n": 100_000, "preset": "flat", "batch": 1, "params": {}, "p50_ms": 222.6}]
    path.write_text(json.dumps(foreign))
    new = [{"n": 100_000, "preset": "flat", "batch": 1, "params": {}, "p50_ms": 44.0},
           {"n": 100_000, "preset": "flat", "batch": 64, "params": {}, "p50_ms": 9.9}]
    out = results.merge_rows(path, new, key)
    assert out == json.loads(path.read_text())
    # the 1M row and the hnsw row of another search setting stay; flat batch 1 is replaced in place
    assert [r["p50_ms"] for r in out] == [2.3, 0.4, 44.0, 9.9]
    # merging again is idempotent
    assert results.merge_rows(path, new, key) == out


def test_merge_json_merges_by_key_to_depth(results, tmp_path):
    path = tmp_path / "el.json"
    path.write_text(json.dumps({"protocol": {"kb": "FB15k-237"}, "systems": {
        "spacy_entity_linker": {"micro": {"f1": 0.458}, "threads": 2},
        "entqa_default": {"micro": {"f1": 0.5}, "threshold": 0.4}}, "retrieval_mentions": 1320}))
    out = results.merge_json(path, {"systems": {"entqa_default": {"micro": {"f1": 0.509}}},
                                    "retrieval_mentions": 1321}, depth=2)
    assert out == json.loads(path.read_text())
    assert out["systems"]["spacy_entity_linker"] == {"micro": {"f1": 0.458}, "threads": 2}  # foreign entry kept
    assert out["systems"]["entqa_default"] == {"micro": {"f1": 0.509}}  # an entry is replaced whole
    assert out["protocol"] == {"kb": "FB15k-237"} and out["retrieval_mentions"] == 1321
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no leftovers
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's private mode


def test_coref_save_keeps_other_systems(tmp_path, monkeypatch):
    coref = load_benchmark("coref")
    path = tmp_path / "coref.json"
    path.write_text(json.dumps({"dataset": "OntoGUM test", "systems": {"peer": {"conll_f1": 0.304}},
                                "training": {"peer": {"minutes": 51}}}))
    monkeypatch.setattr(coref, "RESULT", path)
    coref.save_result({"systems": {"ours": {"conll_f1": 0.37}}})
    out = json.loads(path.read_text())
    assert out["systems"]["peer"] == {"conll_f1": 0.304}  # another system's entry stays as it was
    ours = out["systems"].pop("ours")
    assert ours["conll_f1"] == 0.37 and re.fullmatch(r"\d{4}-\d\d-\d\d", ours["date"])  # dated
    assert list(out["systems"]) == ["peer"]
    assert out["training"] == {"peer": {"minutes": 51}} and out["dataset"] == "OntoGUM test"
    assert out["machine"].startswith("shared 2-core CPU")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_writes_results_through_the_merge_helper(name):
    """No benchmark script writes a file of benchmarks/results/ whole: each imports the
    merge helper, and its only direct JSON writes are its own per-run files."""
    source = (REPO / "benchmarks" / f"{name}.py").read_text(encoding="utf-8")
    assert re.search(r"^from _results import .*merge_(json|rows)", source, re.M)
    direct = re.findall(r"^\s*(.*?)\.write_text\(json\.dumps", source, re.M)
    own_files = {'(RUNS / f"{name}.json")',  # el_runs/<name>.json, re_runs/<name>.json: one per run
                 "Path(args.worker_out)", '(folder / "spec.json")',  # kb_scale's scratch files in .cache
                 '(out / "train_seconds.json")'}  # el.py spacy-el-train: in the training folder
    assert set(direct) <= own_files, direct


def test_write_block_replaces_only_the_generated_block(results, tmp_path):
    notes = tmp_path / "README_x.md"
    notes.write_text("intro\n<!-- t:start -->\nold\n<!-- t:end -->\nafter\n")
    results.write_block(notes, "t", "new\n")
    assert notes.read_text() == "intro\n<!-- t:start -->\nnew\n<!-- t:end -->\nafter\n"
    results.write_block(notes, "other", "x\n")  # no such block: left alone
    assert notes.read_text() == "intro\n<!-- t:start -->\nnew\n<!-- t:end -->\nafter\n"
    results.write_block(notes, "kb", "| a |\n", opening="begin", append=True)
    assert notes.read_text().endswith("after\n\n<!-- kb:begin -->\n| a |\n<!-- kb:end -->\n")
