"""Scale-out benchmark (not a test): ``annotate`` locally and on Ray, a killed Ray
worker, a killed and resumed command, and ``build-kb`` on Ray with 1 and 2 workers.
Rows are merged by key into ``benchmarks/results/scale.json`` (other keys are kept).

    nice -n 10 python benchmarks/scale.py --docs 2000 --kb-entities 1000000

Corpus: the texts of the EL test sets (``benchmarks/el.py``'s ``TEST_SETS``, read
with the package's ELEVANT reader from ``../shared/data/el``) repeated with distinct
ids up to ``--docs``. Pipeline: the demo pipeline (``entqa_linker`` with NER hints
over the demo KB + ``seq2seq_coref`` with the bundled compact model), written to
``benchmarks/.cache/scale/pipeline`` once.

* ``annotate``: ``local_1`` (``nlp.pipe``), ``local_2`` (``nlp.pipe(n_process=2)``),
  ``ray_1``, ``ray_2`` (local Ray, 1 and 2 actors): ``docs_per_s`` (documents over
  the whole command), ``peak_rss_gib`` (largest peak RSS of one worker process:
  this process for ``local_1``, sampled every 0.2 s for the others), ``seconds``,
  ``first_shard_s`` (start-up cost plus one shard); ``speedup_ray_1_to_2``, ``docs``.
  Each setting runs in a fresh subprocess.
* ``fault``: Ray with 2 workers on ``--fault-docs`` documents; one actor process is
  killed (SIGKILL) once a shard is written: ``lost``, ``duplicated`` (input ids
  missing from / repeated in the output), ``restarts``.
* ``resume``: the ``annotate`` command (local engine) on ``--fault-docs`` documents
  killed (SIGKILL) once a shard is written, then run again: ``lost``, ``duplicated``.
* ``kb_build``: ``--kb-entities`` synthetic entities (the Gaussian mixture of
  ``benchmarks/kb_scale.py``, fitted to the FB15k-237 KB's MiniLM vectors; ``--fit-kb``)
  built with ``DenseKB.build`` through ``RayEncoder`` with 1 and 2 workers; the
  "encoder" reads entity i's vector from the mixture sample: ``workers_1_s``,
  ``workers_2_s``, ``peak_rss_gib_1``/``_2`` (the driver), ``preset``.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "scale.json"
CACHE = HERE / ".cache" / "scale"
GIB = 2 ** 30

sys.path.insert(0, str(HERE))
from _results import machine, merge_json  # noqa: E402  (benchmarks/_results.py)


# --- data and pipeline
def test_set_texts(data_dir: Path) -> List[str]:
    """The texts of the EL test sets, read as ``benchmarks/el.py`` reads them."""
    import warnings

    import spacy
    from el import load_test_sets  # noqa: E402

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # span alignment notes of the gold labels (unused here)
        sets = load_test_sets(data_dir, spacy.blank("en"))
    return [doc.text for docs in sets.values() for doc in docs]


def write_corpus(texts: List[str], n: int, path: Path) -> Path:
    """``texts`` repeated with distinct ids up to ``n`` documents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"doc-{i}", "text": texts[i % len(texts)],
                                "source_doc": i % len(texts)}) + "\n")
    return path


PIPELINES = {"demo": "demo (entqa_linker + seq2seq_coref)", "linker": "demo linker (NER + entqa_linker)"}


def build_demo_pipeline(path: Path, components: str = "demo") -> Path:
    """The demo pipeline: NER hints + entqa_linker over the demo KB, then (``components
    = "demo"``) seq2seq_coref with the bundled compact model (see ``cli/demo.py``)."""
    if (path / "config.cfg").exists():
        return path
    from spacy_kbnlp.cli.coref import load_compact_pipeline
    from spacy_kbnlp.cli.demo import BUNDLED_COREF, find_demo_assets
    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.kb.records import read_entities
    from spacy_kbnlp.linking.bundled import bundled_linker_pipeline

    kb = DenseKB.build(read_entities(find_demo_assets() / "kb.jsonl"), HFEncoder().load(),
                       show_progress=False)
    nlp = bundled_linker_pipeline(kb)
    if components == "demo":
        nlp.add_pipe("seq2seq_coref", source=load_compact_pipeline(BUNDLED_COREF))
    path.parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(path)
    return path


# --- measuring
class PeakRss:
    """Peak RSS per process of this process tree (sampled), in GiB."""

    def __init__(self, period: float = 0.2):
        self.period, self.peaks, self._stop = period, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for proc in [me] + me.children(recursive=True):
                try:
                    rss = proc.memory_info().rss / GIB
                except psutil.Error:
                    continue
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0.0), rss)
            self._stop.wait(self.period)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_setting(args) -> Dict[str, Any]:
    """One annotate setting in this (fresh) process."""
    from spacy_kbnlp.scale import annotate

    out = CACHE / "runs" / args.setting
    if out.exists():
        import shutil

        shutil.rmtree(out)
    engine, workers = args.setting.split("_")
    with PeakRss() as rss:
        s = annotate(args.pipeline, args.corpus, out, engine=engine, workers=int(workers),
                     batch_size=args.batch_size, shard_size=args.shard_size, show_progress=False)
    me = os.getpid()
    others = [v for pid, v in rss.peaks.items() if pid != me]
    peak = max(others) if (engine == "ray" or int(workers) > 1) and others else rss.peaks.get(me, 0.0)
    return {"docs_per_s": s["docs_per_s"], "peak_rss_gib": round(peak, 3), "seconds": s["seconds"],
            "first_shard_s": s["first_shard_s"], "docs": s["docs"], "driver_peak_rss_gib":
            round(rss.peaks.get(me, 0.0), 3), "workers": s["workers"]}


def in_subprocess(*argv: str) -> Dict[str, Any]:
    res = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def output_ids(folder: Path) -> List[str]:
    return [json.loads(line)["id"] for f in sorted(folder.glob("shard-*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines()]


def lost_and_duplicated(corpus: Path, folder: Path) -> Dict[str, int]:
    want = [json.loads(line)["id"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    got = output_ids(folder)
    return {"lost": len(set(want) - set(got)), "duplicated": len(got) - len(set(got)),
            "docs": len(want)}


def wait_for_a_shard(folder: Path, timeout: float = 1800) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        manifest = folder / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text())["shards"]:
            return True
        time.sleep(0.2)
    return False


def run_fault(args) -> Dict[str, Any]:
    """In this (fresh) process: Ray, 2 workers, one actor killed after the first shard."""
    import warnings

    from spacy_kbnlp.scale import annotate
    from spacy_kbnlp.scale.ray_engine import local_worker_processes

    out = CACHE / "runs" / "fault"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    killed: List[int] = []

    def kill_one() -> None:
        if wait_for_a_shard(out):
            while not killed:
                procs = local_worker_processes()
                if len(procs) == 2:
                    os.kill(procs[0].pid, signal.SIGKILL)
                    killed.append(procs[0].pid)
                time.sleep(0.2)

    threading.Thread(target=kill_one, daemon=True).start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = annotate(args.pipeline, args.corpus, out, engine="ray", workers=2,
                     batch_size=args.batch_size, shard_size=args.shard_size, show_progress=False)
    return {**lost_and_duplicated(Path(args.corpus), out), "killed_pids": killed,
            "restarts": s["restarts"], "logged": any("KBW400" in str(w.message) for w in caught)}


def run_resume(pipeline: Path, corpus: Path, batch_size: int, shard_size: int) -> Dict[str, Any]:
    out = CACHE / "runs" / "resume"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "spacy_kbnlp", "annotate", str(pipeline), str(corpus), str(out),
           "--batch-size", str(batch_size), "--shard-size", str(shard_size)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_a_shard(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(json.loads((out / "manifest.json").read_text())["shards"])
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = json.loads((out / "manifest.json").read_text())
    return {**lost_and_duplicated(corpus, out), "shards_done_at_kill": before,
            "skipped_on_rerun": manifest["summary"]["skipped"]}


class MixtureRows:
    """A stand-in encoder: the text ``"entity {i}"`` -> row i of the mixture sample."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, texts: List[str]):
        import numpy

        base = numpy.load(self.path, mmap_mode="r")
        return numpy.asarray(base[[int(t.rsplit(" ", 1)[1]) for t in texts]], dtype="float32")


def run_kb(args) -> Dict[str, Any]:
    """In this (fresh) process: DenseKB.build of the synthetic KB on Ray."""
    import resource

    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.kb.records import EntityRecord
    from spacy_kbnlp.scale.ray_engine import RayEncoder

    n = args.kb_entities
    records = [EntityRecord(id=f"e{i}", name=f"entity {i}") for i in range(n)]
    enc = RayEncoder(MixtureRows(str(Path(args.kb_data) / "base.npy")), workers=args.workers,
                     encoder_name="synthetic-mixture")
    t = time.perf_counter()
    kb = DenseKB.build(records, enc, preset=args.preset, template="{name}", show_progress=False)
    seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 2), "count": len(kb), "preset": kb.index.preset,
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3)}


def kb_data(args) -> Path:
    import kb_scale  # noqa: E402  (its mixture and data generator)

    model, spec = kb_scale.load_model(Path(args.fit_kb), CACHE / "kb", kb_scale.GMM_K, 0)
    return kb_scale.make_data(CACHE / "kb", args.kb_entities, model, spec, 10, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=2000, help="annotate corpus size (>= 2000 for the figures)")
    p.add_argument("--fault-docs", type=int, default=200, help="corpus size of the fault and resume runs")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-size", type=int, default=100)
    p.add_argument("--settings", default="local_1,local_2,ray_1,ray_2")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: annotate, fault, resume, kb")
    p.add_argument("--components", choices=sorted(PIPELINES), default="demo",
                   help="the demo pipeline (linker + coreference) or its linker alone")
    p.add_argument("--key", default="annotate", help="results key of the annotate rows")
    p.add_argument("--kb-entities", type=int, default=1_000_000)
    p.add_argument("--kb-preset", default="ivf_sq8")
    p.add_argument("--fit-kb", default=str(HERE / ".cache" / "fb15k_kb"),
                   help="DenseKB folder whose vectors the mixture is fitted to (kb_scale.py)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--output", default=str(RESULTS))
    p.add_argument("--_run", help=argparse.SUPPRESS)  # internal: one measurement in this process
    p.add_argument("--setting", help=argparse.SUPPRESS)
    p.add_argument("--pipeline", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    p.add_argument("--kb-data", help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._run:
        fn = {"annotate": run_setting, "fault": run_fault, "kb": run_kb}[args._run]
        print(json.dumps(fn(args)))
        return
    skip = set(filter(None, args.skip.split(",")))
    pipeline = build_demo_pipeline(CACHE / f"pipeline_{args.components}", args.components)
    texts = test_set_texts(Path(args.data))
    rows: Dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d", time.gmtime())}
    common = ["--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size),
              "--pipeline", str(pipeline)]
    if "annotate" not in skip:
        corpus = write_corpus(texts, args.docs, CACHE / f"corpus_{args.docs}.jsonl")
        ann: Dict[str, Any] = {"docs": args.docs, "batch_size": args.batch_size,
                               "shard_size": args.shard_size, "pipeline": PIPELINES[args.components]}
        for setting in args.settings.split(","):
            ann[setting] = in_subprocess("--_run", "annotate", "--setting", setting,
                                         "--corpus", str(corpus), *common)
            print(setting, json.dumps(ann[setting]), flush=True)
        if "ray_1" in ann and "ray_2" in ann:
            ann["speedup_ray_1_to_2"] = round(ann["ray_2"]["docs_per_s"] / ann["ray_1"]["docs_per_s"], 3)
        rows[args.key] = ann
    small = write_corpus(texts, args.fault_docs, CACHE / f"corpus_{args.fault_docs}.jsonl")
    if "fault" not in skip:
        rows["fault"] = in_subprocess("--_run", "fault", "--corpus", str(small), *common)
        rows["fault"]["pipeline"] = PIPELINES[args.components]
        print("fault", json.dumps(rows["fault"]), flush=True)
    if "resume" not in skip:
        rows["resume"] = run_resume(pipeline, small, args.batch_size, args.shard_size)
        rows["resume"]["pipeline"] = PIPELINES[args.components]
        print("resume", json.dumps(rows["resume"]), flush=True)
    if "kb" not in skip:
        data = kb_data(args)
        kb = {"entities": args.kb_entities, "preset": args.kb_preset}
        for w in (1, 2):
            r = in_subprocess("--_run", "kb", "--workers", str(w), "--kb-data", str(data),
                              "--preset", args.kb_preset, "--kb-entities", str(args.kb_entities))
            kb[f"workers_{w}_s"], kb[f"peak_rss_gib_{w}"] = r["seconds"], r["peak_rss_gib"]
            print("kb", w, json.dumps(r), flush=True)
        rows["kb_build"] = kb
    merge_json(Path(args.output), rows, depth=2)


if __name__ == "__main__":
    main()
