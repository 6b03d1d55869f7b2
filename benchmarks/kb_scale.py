"""KB scaling benchmark (not a test): every FAISS preset of ``spacy_kbnlp.kb.index``
on synthetic 384-d entity vectors, 100k and 1M of them.

    python -m spacy_kbnlp build-kb ../shared/data/el/kb_fb15k237_wikidata/entity2wikidata.json benchmarks/.cache/fb15k_kb
    nice -n 10 python benchmarks/kb_scale.py --output benchmarks/results/kb_scale.json

Data: draws from a Gaussian mixture fitted to real entity embeddings, the MiniLM
vectors of the 14.5k-entity FB15k-237 KB (``--fit-kb``, a DenseKB folder from
``build-kb``): spherical k-means into 32 clusters, then each cluster's mean and
full covariance (with 64 clusters the IVF recall was further from the real one).
Not iid noise, which has no neighbourhood structure (every point's neighbours are
about as far as any other point, so recall means nothing), and not a hand-made
cluster mixture, which (tried first) matched MiniLM's neighbour cosines but was
far easier for IVF than the real vectors. Queries are 1,000 new draws (like unseen
entities). ``--calibrate`` compares real and synthetic vectors at 14.5k: neighbour
cosines at rank 1/10/100 and IVF recall@100 per nprobe (also written to the
markdown file).

Per size and preset, each step runs in its own subprocess so that memory figures
are honest:

* build:  ``VectorIndex.build`` over the memory-mapped vectors -> ``build_s``,
  ``build_peak_rss_gib``; written with FAISS IO -> ``disk_gib``.
* query:  a fresh process imports ``spacy_kbnlp`` (which loads spaCy and torch),
  loads the index with ``VectorIndex.from_disk`` and runs the queries: latency per
  query at batch 1 and 64 (``p50_ms``/``p99_ms``, k=100); ``recall_at_10``/
  ``recall_at_100`` against the ``flat`` preset's results; ``rss_spacy_gib`` = its
  peak RSS (about 0.28 GiB of it is the spaCy/torch import).
* serve:  a lean fresh process (Python, numpy, FAISS; no spaCy, no torch) loads the
  same index file with the same search parameters and runs the same queries:
  ``rss_gib`` = its peak RSS (VmHWM), ``rss_index_gib`` = that minus its RSS
  before loading (``rss_base_gib``).

FAISS runs with ``--threads`` OpenMP threads (default 2) and
``OMP_WAIT_POLICY=PASSIVE`` (spinning threads are very slow on a shared CPU).
The load average at the start of each query step is recorded (``load_avg``).
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _results import merge_rows, read_json, write_block  # noqa: E402  (merge by key, never drop others)
DEFAULT_PRESETS = ["flat", "hnsw", "sq8", "ivf_flat", "ivf_sq8", "ivf_pq"]
# a record of kb_scale.json is one (size, preset, batch size, build + search parameters)
ROW_KEY = ("n", "preset", "batch", "params")
KEYS = ["n", "dim", "preset", "build_s", "rss_gib", "disk_gib", "p50_ms", "p99_ms", "recall_at_10",
        "recall_at_100"]
K = 100
GIB = 2**30
CHUNK = 50_000

GMM_K = 32


# --- data: a Gaussian mixture fitted to real entity embeddings
def fit_gmm(kb_dir: Path, k: int = GMM_K, seed: int = 0) -> Dict[str, numpy.ndarray]:
    """Spherical k-means (k clusters) over the KB's vectors, then each cluster's
    mean and full covariance (as a factor ``A`` with ``A A^T = cov``); clusters of
    fewer than 10 entities are left out."""
    import faiss

    real = numpy.ascontiguousarray(numpy.load(Path(kb_dir) / "vectors.npy"), dtype="float32")
    km = faiss.Kmeans(real.shape[1], k, niter=20, spherical=True, seed=seed, verbose=False)
    km.train(real)
    _, assign = km.index.search(real, 1)
    means, factors, sizes = [], [], []
    for c in range(k):
        xs = real[assign[:, 0] == c]
        if len(xs) < 10:
            continue
        w, v = numpy.linalg.eigh(numpy.cov(xs.T))
        means.append(xs.mean(0))
        factors.append(v * numpy.sqrt(numpy.clip(w, 0, None)))
        sizes.append(len(xs))
    return {"means": numpy.asarray(means, "float32"), "factors": numpy.asarray(factors, "float32"),
            "p": numpy.asarray(sizes, "float64") / sum(sizes)}


def _unit(x: numpy.ndarray) -> numpy.ndarray:
    return x / numpy.linalg.norm(x, axis=1, keepdims=True)


def sample(model: Dict[str, numpy.ndarray], n: int, rng: numpy.random.Generator) -> numpy.ndarray:
    """``n`` L2-normalized draws from the mixture."""
    comp = rng.choice(len(model["p"]), size=n, p=model["p"])
    dim = model["means"].shape[1]
    out = numpy.empty((n, dim), dtype="float32")
    for c in numpy.unique(comp):
        rows = numpy.flatnonzero(comp == c)
        noise = rng.standard_normal((len(rows), dim), dtype="float32")
        out[rows] = model["means"][c] + noise @ model["factors"][c].T
    return _unit(out).astype("float32")


def load_model(kb_dir: Path, work: Path, k: int, seed: int) -> Tuple[Dict[str, numpy.ndarray], Dict[str, Any]]:
    """The fitted mixture (cached in ``work``) and its provenance."""
    manifest = json.loads((Path(kb_dir) / "manifest.json").read_text())
    spec = {"kb": str(kb_dir), "vectors_sha256": manifest.get("checksum", {}).get("vectors.npy"),
            "encoder": manifest.get("encoder"), "count": manifest.get("count"), "k": k, "seed": seed}
    cache = work / f"gmm_k{k}_{(spec['vectors_sha256'] or 'nochecksum')[:12]}.npz"
    if cache.exists():
        model = dict(numpy.load(cache))
    else:
        model = fit_gmm(kb_dir, k, seed)
        work.mkdir(parents=True, exist_ok=True)
        numpy.savez(cache, **model)
    spec["components"] = int(len(model["p"]))
    return model, spec


def make_data(work: Path, n: int, model: Dict[str, numpy.ndarray], model_spec: Dict[str, Any],
              n_queries: int, seed: int) -> Path:
    """``work/n{n}_.../{base,queries}.npy`` (written once per spec)."""
    dim = model["means"].shape[1]
    folder = work / f"n{n}_d{dim}_s{seed}"
    spec = {"n": n, "dim": dim, "queries": n_queries, "seed": seed, "model": model_spec}
    if (folder / "spec.json").exists() and json.loads((folder / "spec.json").read_text()) == spec:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("truth.npy", "spec.json"):
        (folder / stale).unlink(missing_ok=True)
    rng = numpy.random.default_rng(seed + 1)
    base = numpy.lib.format.open_memmap(folder / "base.npy", mode="w+", dtype="float32", shape=(n, dim))
    for s in range(0, n, CHUNK):
        base[s: s + CHUNK] = sample(model, min(CHUNK, n - s), rng)
    base.flush()
    del base
    numpy.save(folder / "queries.npy", sample(model, n_queries, rng))
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


def nn_profile(base: numpy.ndarray, queries: numpy.ndarray, ranks=(1, 10, 100)) -> Dict[str, float]:
    sims = -numpy.sort(-(queries @ base.T), axis=1)
    return {f"cos@{r}": round(float(numpy.mean(sims[:, r - 1])), 3) for r in ranks}


def ivf_profile(base: numpy.ndarray, queries: numpy.ndarray, nlist: int, nprobes=(8, 16, 32, 64)) -> Dict[str, float]:
    """recall@100 of an exact-code IVF index against exact search, per nprobe."""
    import faiss

    dim = base.shape[1]
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    _, truth = flat.search(queries, K)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.min_points_per_centroid = 1
    ivf.train(base)
    ivf.add(base)
    out = {}
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        _, found = ivf.search(queries, K)
        out[f"nprobe={nprobe}"] = round(recall(found, truth, K), 3)
    return out


def calibrate(kb_dir: Path, work: Path, k: int, seed: int) -> Dict[str, Any]:
    """The real KB (each of 500 entities against the others) next to an equally
    large draw from the mixture: neighbour cosines and IVF recall@100 (nlist 128)."""
    real = numpy.ascontiguousarray(numpy.load(Path(kb_dir) / "vectors.npy"), dtype="float32")
    model, _ = load_model(kb_dir, work, k, seed)
    rng = numpy.random.default_rng(seed)
    q = rng.choice(len(real), 500, replace=False)
    mask = numpy.ones(len(real), bool)
    mask[q] = False
    synth, synth_q = sample(model, int(mask.sum()), rng), sample(model, 500, rng)
    out = {"n": int(mask.sum()),
           "real": {**nn_profile(real[mask], real[q]), **ivf_profile(real[mask], real[q], 128)},
           "synthetic": {**nn_profile(synth, synth_q), **ivf_profile(synth, synth_q, 128)}}
    print(json.dumps(out), flush=True)
    return out


# --- workers (run in subprocesses)
def rss_now() -> float:
    import psutil

    return psutil.Process().memory_info().rss / GIB


def peak_rss() -> float:
    """Peak RSS of this process image: VmHWM (ru_maxrss would include the forking
    parent's RSS, which Linux carries over execve)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def worker_build(args) -> Dict[str, Any]:
    import faiss

    from spacy_kbnlp.kb.index import VectorIndex

    faiss.omp_set_num_threads(args.threads)
    base = numpy.load(Path(args.data) / "base.npy", mmap_mode="r")
    t = time.perf_counter()
    index = VectorIndex.build(base, preset=args.preset, **json.loads(args.params))
    build_s = time.perf_counter() - t
    out = Path(args.index_dir)
    index.to_disk(out)
    return {"build_s": build_s, "build_peak_rss_gib": peak_rss(), "effective_preset": index.preset,
            "params": index.params, "disk_gib": sum(p.stat().st_size for p in out.iterdir()) / GIB}


def _latencies(index, queries: numpy.ndarray, batch: int, budget_s: float, min_batches: int) -> List[float]:
    """Per-query milliseconds, one value per batch, cycling over the queries."""
    n_batches = max(1, len(queries) // batch)
    for i in range(min(3, n_batches)):  # warm-up
        index.search(queries[i * batch: (i + 1) * batch], K)
    out: List[float] = []
    start = time.perf_counter()
    i = 0
    while len(out) < min_batches or (time.perf_counter() - start < budget_s and len(out) < 4 * n_batches):
        b = i % n_batches
        q = queries[b * batch: (b + 1) * batch]
        t = time.perf_counter()
        index.search(q, K)
        out.append((time.perf_counter() - t) * 1000 / len(q))
        i += 1
    return out


def worker_serve(args) -> Dict[str, Any]:
    """A lean serving process: Python + numpy + FAISS and the index file, nothing
    of spaCy/torch; loads the index as ``VectorIndex.from_disk`` does and runs the
    same queries (all at once, then 100 one by one)."""
    import faiss

    faiss.omp_set_num_threads(args.threads)
    base_rss = rss_now()
    meta = json.loads((Path(args.index_dir) / "index.json").read_text())
    params = {**meta["params"], **json.loads(args.search_params)}
    index = faiss.read_index(str(Path(args.index_dir) / "index.faiss"))
    if "nprobe" in params:
        index.nprobe = params["nprobe"]
    if "ef_search" in params:
        faiss.downcast_index(index.index).hnsw.efSearch = params["ef_search"]
    queries = numpy.load(Path(args.data) / "queries.npy")
    index.search(queries, K)
    for i in range(100):
        index.search(queries[i: i + 1], K)
    return {"rss_gib": peak_rss(), "rss_base_gib": base_rss, "rss_now_gib": rss_now()}


def worker_query(args) -> Dict[str, Any]:
    import faiss

    from spacy_kbnlp.kb.index import VectorIndex

    faiss.omp_set_num_threads(args.threads)
    base_rss = rss_now()
    load_avg = os.getloadavg()[0]
    queries = numpy.load(Path(args.data) / "queries.npy")
    t = time.perf_counter()
    index = VectorIndex.from_disk(args.index_dir)
    load_s = time.perf_counter() - t
    index.set_search_params(**json.loads(args.search_params))
    _, ids = index.search(queries, K)
    numpy.save(Path(args.index_dir) / "found.npy", ids)
    lat = {b: _latencies(index, queries, b, args.budget, min_batches=20 if b == 1 else 8) for b in (1, 64)}
    peak = peak_rss()
    return {"rss_gib": peak, "rss_base_gib": base_rss, "load_s": load_s, "load_avg": load_avg,
            "latency": {b: {"p50_ms": float(numpy.percentile(v, 50)), "p99_ms": float(numpy.percentile(v, 99)),
                            "samples": len(v)} for b, v in lat.items()}}


# --- driver
def run_worker(kind: str, args, data: Path, preset: str, params: Dict[str, Any], index_dir: Path,
               log, search: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    out_file = index_dir.with_suffix(f".{kind}.json")
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--preset", preset,
           "--params", json.dumps(params), "--search-params", json.dumps(search or {}),
           "--index-dir", str(index_dir), "--threads", str(args.threads),
           "--budget", str(args.budget), "--worker-out", str(out_file)]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        log(f"  {kind} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        raise RuntimeError(f"{kind} worker failed for {preset}")
    log(f"  {kind} done in {time.perf_counter() - t:.1f}s")
    return json.loads(out_file.read_text())


def recall(found: numpy.ndarray, truth: numpy.ndarray, k: int) -> float:
    return float(numpy.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def parse_search_sweeps(items: Optional[List[str]]) -> Dict[str, List[Dict[str, Any]]]:
    """``["hnsw:ef_search=128,512"]`` -> ``{"hnsw": [{"ef_search": 128}, {"ef_search": 512}]}``."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for item in items or ():
        preset, _, kv = item.partition(":")
        key, _, values = kv.partition("=")
        out.setdefault(preset, []).extend({key: json.loads(v)} for v in values.split(","))
    return out


def parse_preset_params(items: Optional[List[str]]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for item in items or ():
        preset, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        out.setdefault(preset, {})[key] = json.loads(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    p.add_argument("--param", action="append", help="PRESET:KEY=VALUE, e.g. ivf_sq8:nlist=2048 (repeatable)")
    p.add_argument("--search", action="append",
                   help="search-time sweep PRESET:KEY=V1,V2, e.g. hnsw:ef_search=128,512 (one index, a row per value)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=30.0, help="seconds of latency measurement per batch size")
    p.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=HERE / ".cache" / "kb_scale")
    p.add_argument("--output", type=Path, default=HERE / "results" / "kb_scale.json")
    p.add_argument("--markdown", type=Path, default=HERE / "README_kb_scale.md")
    p.add_argument("--keep", action="store_true", help="keep the index folders in --work")
    p.add_argument("--fit-kb", type=Path, default=HERE / ".cache" / "fb15k_kb",
                   help="DenseKB whose vectors the synthetic mixture is fitted to (from build-kb)")
    p.add_argument("--gmm-k", type=int, default=GMM_K, help="mixture components")
    p.add_argument("--calibrate", action="store_true", help="compare real and synthetic vectors and exit")
    p.add_argument("--real-kb", metavar="KB_DIR", type=Path, help="index figures of a real DenseKB and exit")
    p.add_argument("--render", action="store_true", help="only rewrite --markdown from --output")
    # worker mode
    p.add_argument("--worker", choices=list(WORKERS))
    p.add_argument("--data")
    p.add_argument("--preset")
    p.add_argument("--params", default="{}")
    p.add_argument("--search-params", default="{}")
    p.add_argument("--index-dir")
    p.add_argument("--worker-out")
    args = p.parse_args()

    if args.worker:
        result = WORKERS[args.worker](args)
        Path(args.worker_out).write_text(json.dumps(result))
        return
    if not (args.fit_kb / "vectors.npy").exists() and not (args.render or args.real_kb):
        sys.exit(f"No DenseKB at {args.fit_kb}. Build it first: python -m spacy_kbnlp build-kb "
                 f"../shared/data/el/kb_fb15k237_wikidata/entity2wikidata.json {args.fit_kb}")
    if args.calibrate:
        calibrate(args.fit_kb, args.work, args.gmm_k, args.seed)
        return
    if args.render:
        write_markdown(json.loads(args.output.read_text()), args)
        return
    if args.real_kb:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS and torch load OpenMP
        real_kb(args.real_kb, args)
        return

    log_lines: List[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        log_lines.append(line)

    model, model_spec = load_model(args.fit_kb, args.work, args.gmm_k, args.seed)
    dim = int(model["means"].shape[1])
    data_name = (f"synthetic: {model_spec['components']}-component Gaussian mixture fitted to the "
                 f"{model_spec['count']} {model_spec['encoder']} vectors of {args.fit_kb.name}, seed {args.seed}")
    log(f"data model: {data_name}")
    calib = calibrate(args.fit_kb, args.work, args.gmm_k, args.seed)
    _block(args.markdown, "kb_calibration", [
        f"| {calib['n']:,} vectors | " + " | ".join(calib["real"]) + " |",
        "|---|" + "---|" * len(calib["real"]),
        "| real (MiniLM, FB15k-237) | " + " | ".join(str(v) for v in calib["real"].values()) + " |",
        "| synthetic (fitted mixture) | " + " | ".join(str(v) for v in calib["synthetic"].values()) + " |"])
    overrides = parse_preset_params(args.param)
    sweeps = parse_search_sweeps(args.search)
    records: List[Dict[str, Any]] = read_json(args.output, [])
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    for n in args.sizes:
        t = time.perf_counter()
        data = make_data(args.work, n, model, model_spec, args.queries, args.seed)
        log(f"n={n}: data ready in {time.perf_counter() - t:.1f}s ({data})")
        base_profile = nn_profile(numpy.load(data / "base.npy", mmap_mode="r")[: min(n, 100_000)],
                                  numpy.load(data / "queries.npy")[:200])
        # flat gives the ground truth (kept with the data; rerun when flat is asked for)
        presets = list(args.presets)
        if "flat" in presets or not (data / "truth.npy").exists():
            presets = ["flat"] + [x for x in presets if x != "flat"]
        for preset in presets:
            params = overrides.get(preset, {})
            index_dir = args.work / f"index_n{n}_{preset}"
            log(f"n={n} preset={preset} params={params}")
            built = run_worker("build", args, data, preset, params, index_dir, log)
            rows: List[Dict[str, Any]] = []
            for search in sweeps.get(preset, [{}]):
                if search:
                    log(f"  search {search}")
                queried = run_worker("query", args, data, preset, params, index_dir, log, search)
                served = run_worker("serve", args, data, preset, params, index_dir, log, search)
                found = numpy.load(index_dir / "found.npy")
                if preset == "flat":
                    numpy.save(data / "truth.npy", found)
                truth = numpy.load(data / "truth.npy")
                for batch, lat in queried["latency"].items():
                    rec = {"n": n, "dim": dim, "preset": preset, "batch": int(batch),
                           "build_s": round(built["build_s"], 2), "rss_gib": round(served["rss_gib"], 3),
                           "disk_gib": round(built["disk_gib"], 3), "p50_ms": round(lat["p50_ms"], 3),
                           "p99_ms": round(lat["p99_ms"], 3), "recall_at_10": round(recall(found, truth, 10), 4),
                           "recall_at_100": round(recall(found, truth, 100), 4),
                           "params": {**built["params"], **search}, "effective_preset": built["effective_preset"],
                           "rss_base_gib": round(served["rss_base_gib"], 3),
                           "rss_index_gib": round(served["rss_gib"] - served["rss_base_gib"], 3),
                           "rss_spacy_gib": round(queried["rss_gib"], 3),
                           "build_peak_rss_gib": round(built["build_peak_rss_gib"], 3),
                           "latency_samples": lat["samples"], "threads": args.threads,
                           "load_avg": round(queried["load_avg"], 2), "queries": args.queries, "k": K,
                           "data": data_name,
                           "neighbour_cosines": base_profile if n <= 100_000 else None, "machine": machine,
                           "date": time.strftime("%Y-%m-%d", time.gmtime())}
                    rows.append(rec)
                    log("  " + json.dumps({k: rec[k] for k in KEYS + ["batch", "rss_index_gib"]}))
            if not args.keep:
                _remove_index(index_dir)
            # rows of other sizes, presets and search settings stay (benchmarks/_results.py)
            records = merge_rows(args.output, rows, ROW_KEY)
    write_markdown(records, args)


WORKERS = {"build": worker_build, "query": worker_query, "serve": worker_serve}


def real_kb(kb_dir: Path, args) -> List[Dict[str, Any]]:
    """Index figures on a real DenseKB (e.g. FB15k-237 + MiniLM from ``build-kb``):
    per preset, index build seconds and size, batch-1 latency, and recall against
    ``flat`` for 1,000 random entities' own vectors as queries; plus the KB folder
    size with float32 and float16 vectors."""
    import tempfile

    import faiss

    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.kb.index import VectorIndex

    faiss.omp_set_num_threads(args.threads)
    kb = DenseKB.from_disk(kb_dir)
    vectors = numpy.ascontiguousarray(kb.vectors)
    rng = numpy.random.default_rng(args.seed)
    queries = vectors[rng.choice(len(vectors), min(1000, len(vectors)), replace=False)]
    out, truth = [], None
    for preset in ["flat"] + [p for p in args.presets if p != "flat"]:
        t = time.perf_counter()
        index = VectorIndex.build(vectors, preset=preset)
        build_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            index.to_disk(tmp)
            disk = sum(p.stat().st_size for p in Path(tmp).iterdir())
        for search in parse_search_sweeps(args.search).get(preset, [{}]):
            index.set_search_params(**search)
            _, found = index.search(queries, K)
            truth = found if preset == "flat" else truth
            lat = _latencies(index, queries, 1, budget_s=5.0, min_batches=100)
            out.append({"n": len(kb), "dim": kb.dim, "preset": preset, "effective_preset": index.preset,
                        "params": dict(index.params), "index_build_s": round(build_s, 2),
                        "index_disk_mib": round(disk / 2**20, 2),
                        "p50_ms": round(float(numpy.percentile(lat, 50)), 3),
                        "recall_at_10": round(recall(found, truth, 10), 4),
                        "recall_at_100": round(recall(found, truth, 100), 4)})
            print(json.dumps(out[-1]), flush=True)
    sizes = {}
    for dtype in ("float32", "float16"):
        with tempfile.TemporaryDirectory() as tmp:
            DenseKB.from_vectors(kb.records, vectors, encoder_name=kb.encoder_name, dtype=dtype).to_disk(tmp)
            sizes[dtype] = round(sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2**20, 2)
    print(json.dumps({"kb_folder_mib_flat": sizes}), flush=True)
    lines = ["| preset | params | index build s | index MiB | p50 ms, batch 1 | recall@10 | recall@100 |",
             "|---|---|---|---|---|---|---|"]
    for r in out:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "train_size")
        name = r["preset"] if r["preset"] == r["effective_preset"] else f"{r['preset']} (-> {r['effective_preset']})"
        lines.append(f"| {name} | {params} | {r['index_build_s']:.2f} | {r['index_disk_mib']:.1f} | {r['p50_ms']:.2f} "
                     f"| {r['recall_at_10']:.3f} | {r['recall_at_100']:.3f} |")
    lines.append("")
    lines.append(f"KB folder with the flat index: {sizes['float32']:.1f} MiB (float32 vectors), "
                 f"{sizes['float16']:.1f} MiB (float16 vectors).")
    _block(args.markdown, "kb_real", lines)
    return out


def _remove_index(index_dir: Path) -> None:
    for f in index_dir.glob("*"):
        f.unlink()
    if index_dir.exists():
        index_dir.rmdir()


def status_rows(records: List[Dict[str, Any]]) -> List[Dict[str, str]]:
    """The status table's KB rows (``benchmarks/status.py``): at each size, the preset
    recommended for it (``ivf_sq8`` at 1M, ``hnsw`` up to ~100k) with its default
    search parameters, against exact search (``flat``), batch 1."""
    rows = []
    for n, preset in ((1_000_000, "ivf_sq8"), (100_000, "hnsw")):
        found = [r for r in records if r["n"] == n and r["batch"] == 1 and r["preset"] in (preset, "flat")
                 and default_search(r)]
        ours = next((r for r in found if r["preset"] == preset), None)
        flat = next((r for r in found if r["preset"] == "flat"), None)
        if ours is None or flat is None:
            continue
        params = ", ".join(f"{k} {v}" for k, v in ours["params"].items() if k != "train_size")
        rows.append({"component": f"`DenseKB` `{preset}` ({params})",
                     "task": f"KB search, {n:,} synthetic {ours['dim']}-d entities, k={ours['k']}: "
                             "recall@100, p50 latency, serving RSS",
                     "ours": f"{ours['recall_at_100']:.3f}, {ours['p50_ms']:.2f} ms, {ours['rss_gib']:.2f} GiB",
                     "alternative": f"exact search (`flat`): {flat['recall_at_100']:.3f}, {flat['p50_ms']:.2f} ms, "
                                    f"{flat['rss_gib']:.2f} GiB",
                     "speed": f"{flat['p50_ms'] / ours['p50_ms']:.0f}x queries/s (batch 1)",
                     "measured": f"{ours.get('date', '?')}, {ours['machine']['cpu_count']}-core CPU, "
                                 f"{ours['threads']} threads, load {ours['load_avg']:.0f}"})
    return rows


def default_search(r: Dict[str, Any]) -> bool:
    """Whether a record ran with its preset's default search parameters."""
    from spacy_kbnlp.kb.index import PRESETS, auto_nprobe

    p = r["params"]
    if r["preset"] == "hnsw":
        return p.get("ef_search") == PRESETS["hnsw"]["ef_search"]
    return "nlist" not in p or p.get("nprobe") == auto_nprobe(p["nlist"])


# the 1M-entity goal of the KB: one preset within these bounds (batch 1, 2 cores)
GOAL = {"n": 1_000_000, "rss_gib": 0.5, "recall_at_100": 0.95, "p50_ms": 5.0}


def goal_lines(records: List[Dict[str, Any]]) -> List[str]:
    """README_kb_scale.md's goal paragraph, from the records: the preset that meets the
    1M goal (default search parameters first), and what HNSW does at that size."""
    at = [r for r in records if r["n"] == GOAL["n"]]
    b1 = [r for r in at if r["batch"] == 1]
    met = [r for r in b1 if r["rss_gib"] <= GOAL["rss_gib"] and r["recall_at_100"] >= GOAL["recall_at_100"]
           and r["p50_ms"] <= GOAL["p50_ms"]]
    head = (f"**Goal at {GOAL['n']:,} entities** (one preset at <= {GOAL['rss_gib']} GiB RAM, recall@100 >= "
            f"{GOAL['recall_at_100']}, p50 <= {GOAL['p50_ms']:g} ms per query on 2 cores): ")
    if not b1:
        return [head + f"not measured (no {GOAL['n']:,}-entity rows in the results)."]
    if not met:
        small = [r for r in b1 if r["rss_gib"] <= GOAL["rss_gib"]]
        near = []
        fast = [r for r in small if r["p50_ms"] <= GOAL["p50_ms"]]
        if fast:
            near.append(("the best recall within the latency bound", max(fast, key=lambda r: r["recall_at_100"])))
        good = [r for r in small if r["recall_at_100"] >= GOAL["recall_at_100"]]
        if good:
            near.append(("the fastest within the recall bound", min(good, key=lambda r: r["p50_ms"])))
        return [head + "not met in these results" + ("; " if near else ".") + "; ".join(
            f"{what}: `{r['preset']}` ({', '.join(f'{k} {v}' for k, v in r['params'].items() if k != 'train_size')}), "
            f"recall@100 {r['recall_at_100']:.3f}, p50 {r['p50_ms']:.2f} ms, {r['rss_gib']:.2f} GiB, "
            f"load average {r['load_avg']:.0f}" for what, r in near) + ("." if near else "")]
    best = min(met, key=lambda r: (not default_search(r), r["p50_ms"]))
    r64 = next((r for r in at if r["batch"] == 64 and r["preset"] == best["preset"]
                and r["params"] == best["params"]), None)
    params = ", ".join(f"{k} {v}" for k, v in best["params"].items() if k != "train_size")
    lines = [head + f"met by `{best['preset']}` ({params}{', the default search' if default_search(best) else ''}): "
             f"{best['rss_gib']:.2f} GiB lean RSS, recall@100 {best['recall_at_100']:.3f}, p50 {best['p50_ms']:.2f} ms "
             f"at batch 1" + (f" ({r64['p50_ms']:.2f} ms per query in batches of 64)" if r64 else "")
             + f", load average {best['load_avg']:.0f}."]
    hnsw = [r for r in b1 if r["preset"] == "hnsw"]
    if hnsw:
        recalls = sorted(r["recall_at_100"] for r in hnsw)
        p = hnsw[0]["params"]
        lines.append(f"HNSW (M={p.get('M')}, efConstruction={p.get('ef_construction')}) builds in "
                     f"{hnsw[0]['build_s'] / 60:.0f} minutes at this size; recall@100 {recalls[0]:.3f}-{recalls[-1]:.3f} "
                     f"over ef_search {', '.join(str(r['params'].get('ef_search')) for r in hnsw)}.")
    return lines


def write_markdown(records: List[Dict[str, Any]], args) -> None:
    rows: Dict[tuple, Dict[int, Dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["n"], r["preset"], json.dumps(r["params"], sort_keys=True)), {})[r["batch"]] = r
    lines = [
        "| n | preset | params | build s | RSS GiB: lean (index) | RSS GiB with spaCy | disk GiB | p50 / p99 ms, batch 1 | p50 / p99 ms per query, batch 64 | recall@10 | recall@100 | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {(r["n"], r["preset"], json.dumps(r["params"], sort_keys=True)): i for i, r in enumerate(records)}
    for (n, preset, _), by_batch in sorted(rows.items(), key=lambda x: (x[0][0], DEFAULT_PRESETS.index(x[0][1])
                                                                         if x[0][1] in DEFAULT_PRESETS else 99,
                                                                         order[x[0]])):
        r1, r64 = by_batch.get(1), by_batch.get(64)
        r = r1 or r64
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "train_size")
        lines.append(f"| {n:,} | {preset} | {params} | {r['build_s']:.1f} | {r['rss_gib']:.2f} ({r['rss_index_gib']:.2f}) "
                     f"| {r['rss_spacy_gib']:.2f} | {r['disk_gib']:.3f} | {_lat(r1)} | {_lat(r64)} | {r['recall_at_10']:.3f} "
                     f"| {r['recall_at_100']:.3f} | {r['load_avg']:.0f} |")
    _block(args.markdown, "kb_scale", lines)
    _block(args.markdown, "kb_goal", goal_lines(records))


def _block(path: Path, name: str, lines: List[str]) -> None:
    write_block(path, name, "\n".join(lines) + "\n", opening="begin", append=True)


def _lat(r: Optional[Dict[str, Any]]) -> str:
    return "-" if r is None else f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"


if __name__ == "__main__":
    main()
