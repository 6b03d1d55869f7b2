"""The demo pipeline packages small and travels (issue 14, item 3), end to end:
build it to disk, `spacy package --build wheel`, install the wheel and this
package into a fresh venv (no system site packages), load it by name from
another directory, run a doc, nlp.initialize(), run a doc again."""
import json
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_WHEEL_MB = 60
TEXT = "Marie Curie was born in Warsaw. She moved to Paris, where she met Pierre Curie."

CHECK = r"""
import json, os, sys, time
import spacy
t = time.perf_counter()
nlp = spacy.load(sys.argv[1])
load_s = time.perf_counter() - t
text = sys.argv[2]

def run():
    doc = nlp(text)
    return {"links": [[s.text, s.kb_id_] for s in doc.spans["entqa"]],
            "clusters": [[m.text for m in c] for c in doc._.coref_clusters]}

before = run()
t = time.perf_counter()
nlp.initialize()
init_s = time.perf_counter() - t
after = run()
print(json.dumps({"cwd": os.getcwd(), "pipe_names": nlp.pipe_names, "before": before,
                  "after": after, "load_s": load_s, "initialize_s": init_s,
                  "spacy_kbnlp": __import__("spacy_kbnlp").__file__}))
"""


def _run(cmd, cwd, timings, key):
    start = time.perf_counter()
    done = subprocess.run([str(c) for c in cmd], cwd=str(cwd), capture_output=True, text=True)
    timings[key] = round(time.perf_counter() - start, 1)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_demo_pipeline_wheel_installs_and_loads_by_name(tmp_path):
    timings = {}
    pipeline = tmp_path / "demo_pipeline"
    _run([sys.executable, "-m", "spacy_kbnlp", "demo-pipeline", pipeline,
          "--assets", ROOT / "assets" / "demo"], tmp_path, timings, "build_pipeline_s")
    for cfg in [pipeline / "config.cfg", *pipeline.rglob("cfg"), *pipeline.rglob("*.json")]:
        text = cfg.read_text(encoding="utf-8", errors="replace")
        for root in (str(ROOT), str(tmp_path), str(Path.home())):
            assert root not in text, f"absolute path {root} in {cfg}"
    pipeline_mb = sum(f.stat().st_size for f in pipeline.rglob("*") if f.is_file()) / 2**20

    packages = tmp_path / "packages"
    packages.mkdir()
    _run([sys.executable, "-m", "spacy", "package", pipeline, packages, "--name", "kbnlp_demo",
          "--version", "0.0.1", "--build", "wheel", "--force"], tmp_path, timings, "package_s")
    wheel = next(packages.rglob("*.whl"))
    wheel_mb = wheel.stat().st_size / 2**20
    assert wheel.name.startswith("en_kbnlp_demo-0.0.1")
    assert wheel_mb < MAX_WHEEL_MB, f"wheel is {wheel_mb:.1f} MB"

    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env)
    python = env / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", ROOT, wheel],
         tmp_path, timings, "install_s")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = json.loads(_run([python, "-c", CHECK, "en_kbnlp_demo", TEXT], elsewhere, timings,
                          "load_run_initialize_s").strip().splitlines()[-1])
    assert out["cwd"] == str(elsewhere)
    assert str(env) in out["spacy_kbnlp"]  # the venv's copy, not the worktree's
    assert out["pipe_names"] == ["tok2vec", "ner", "entqa_linker", "seq2seq_coref"]
    assert out["before"]["links"] == [["Marie Curie", "marie_curie"], ["Warsaw", "warsaw"],
                                      ["Paris", "paris_france"], ["Pierre Curie", "pierre_curie"]]
    assert out["before"]["clusters"]
    # nlp.initialize() reloads the bundled models from their config values (the NER is
    # re-initialized at random, as spaCy does for any component it initializes)
    assert out["after"]["clusters"] == out["before"]["clusters"]
    report = {"wheel": wheel.name, "wheel_mb": round(wheel_mb, 2),
              "pipeline_mb": round(pipeline_mb, 2), "load_s": round(out["load_s"], 1),
              "initialize_s": round(out["initialize_s"], 1), **timings}
    print("PACKAGE_DEMO", json.dumps(report))
