import warnings

import numpy
import pytest

from spacy_kbnlp.kb.index import PRESETS, VectorIndex, auto_nlist, resolve_params

from .conftest import clustered

DIM = 32
# small ivf_pq so that it trains on a few thousand vectors (39 * 2**nbits points)
SMALL = {"ivf_pq": {"m": 16, "nbits": 5}}


@pytest.fixture(scope="module")
def data():
    base = clustered(4000, DIM, 60, seed=1)
    # queries near (but not on) base vectors
    rng = numpy.random.default_rng(2)
    queries = base[rng.choice(4000, 200, replace=False)] + 0.05 * rng.normal(size=(200, DIM)).astype("float32")
    queries /= numpy.linalg.norm(queries, axis=1, keepdims=True)
    return base, queries.astype("float32")


@pytest.fixture(scope="module")
def flat_truth(data):
    base, queries = data
    return numpy.argsort(-(queries @ base.T), axis=1)[:, :10]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_finds_itself(data, preset):
    base, _ = data
    ids = numpy.arange(len(base), dtype="int64") * 7 + 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough data: no fallback
        index = VectorIndex.build(base, ids, preset=preset, **SMALL.get(preset, {}))
    assert index.preset == preset and index.ntotal == len(base) and index.dim == DIM
    scores, found = index.search(base[:100], 5)
    assert scores.dtype == numpy.float32 and found.dtype == numpy.int64 and found.shape == (100, 5)
    assert (found[:, 0] == ids[:100]).mean() >= 0.98
    assert numpy.all(numpy.diff(scores, axis=1) <= 1e-6)  # best first


@pytest.mark.parametrize("preset", ["hnsw", "sq8", "ivf_flat", "ivf_sq8", "ivf_pq"])
def test_recall_of_approximate_presets(data, flat_truth, preset):
    base, queries = data
    index = VectorIndex.build(base, preset=preset, **SMALL.get(preset, {}))
    _, found = index.search(queries, 10)
    recall = numpy.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, flat_truth)])
    floor = {"ivf_pq": 0.65}.get(preset, 0.95)
    assert recall >= floor, (preset, recall)
    exact = VectorIndex.build(base, preset="flat")
    _, exact_found = exact.search(queries, 10)
    assert (exact_found == flat_truth).mean() > 0.99


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("n", [1, 10])
def test_tiny_indexes_fall_back_to_exact(preset, n):
    base = clustered(n, DIM, 3, seed=n)
    trained = preset not in ("flat", "hnsw")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = VectorIndex.build(base, preset=preset)
    assert [str(w.message)[:8] for w in caught] == (["[KBW001]"] if trained else [])
    assert index.preset == ("flat" if trained else preset) and index.requested_preset == preset
    scores, found = index.search(base, 4)
    assert found[:, 0].tolist() == list(range(n))
    assert (found[:, n:] == -1).all() and numpy.isneginf(scores[:, n:]).all()
    assert (found[:, :n] >= 0).all()


def test_auto_params():
    assert auto_nlist(1) == 1 and auto_nlist(100) == 2 and auto_nlist(100_000) == 1024
    assert auto_nlist(1_000_000) == 4096
    p = resolve_params("ivf_pq", 384, 1_000_000, {})
    assert (p["nlist"], p["nprobe"], p["m"], p["nbits"]) == (4096, 32, 96, 8)
    assert resolve_params("ivf_sq8", 64, 50_000, {"nprobe": 3})["nprobe"] == 3
    assert resolve_params("ivf_flat", 64, 100_000, {})["nprobe"] == 16
    with pytest.raises(ValueError, match="KBE007"):
        resolve_params("lsh", 64, 10, {})
    with pytest.raises(ValueError, match="KBE013.*nprobe"):
        resolve_params("hnsw", 64, 10, {"nprobe": 3})
    with pytest.raises(ValueError, match="KBE013.*'m'|KBE013.*m=5"):
        resolve_params("ivf_pq", 64, 10_000, {"m": 5})
    with pytest.raises(ValueError, match="KBE013"):
        resolve_params("ivf_flat", 64, 10_000, {"nlist": 0})


@pytest.mark.parametrize("preset", list(PRESETS))
def test_add_remove_update_keep_ids(data, preset):
    base, _ = data
    n = 3000
    index = VectorIndex.build(base[:n], numpy.arange(n) + 100, preset=preset, **SMALL.get(preset, {}))
    # add: new ids, the old ones unchanged
    index.add(base[n:n + 10], numpy.arange(10) + 10_000)
    assert index.ntotal == n + 10 and index.next_id == 10_010
    assert index.search(base[n + 3], 1)[1][0, 0] == 10_003
    assert index.search(base[5], 1)[1][0, 0] == 105
    # remove: gone from results, the others keep their ids
    assert index.remove([105, 106, 999_999]) == 2
    assert index.ntotal == n + 8
    _, found = index.search(base[[5, 6, 7]], 3)
    assert 105 not in found and 106 not in found and found[2, 0] == 107
    # update: id 107 now has the vector of row 20 (upsert semantics)
    index.update(base[20:21], [107])
    assert index.ntotal == n + 8
    _, found = index.search(base[20], 2)
    assert set(found[0].tolist()) == {107, 120}
    assert 107 in index.live_ids() and 105 not in index.live_ids() and len(index.live_ids()) == n + 8
    # add without ids continues after the largest id
    assert index.add(base[:1]).tolist() == [10_010]


def test_hnsw_tombstones_and_compaction(data):
    base, _ = data
    index = VectorIndex.build(base[:400], preset="hnsw")
    index.remove(range(150))
    assert index.n_deleted == 150 and index.ntotal == 250
    _, found = index.search(base[:150], 5)
    assert found.min() >= 150
    index.remove(range(150, 250))  # more than half are tombstones now: compacted
    assert index.n_deleted == 0 and index.ntotal == 150 and index.index.ntotal == 150
    _, found = index.search(base[300:310], 1)
    assert found[:, 0].tolist() == list(range(300, 310))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_serialization_round_trip(tmp_path, data, preset):
    base, queries = data
    index = VectorIndex.build(base[:3000], preset=preset, **SMALL.get(preset, {}))
    index.remove([1, 2])
    if preset.startswith("ivf"):
        index.set_search_params(nprobe=5)
    if preset == "hnsw":
        index.set_search_params(ef_search=40)
    scores, found = index.search(queries, 10)
    index.to_disk(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["index.faiss", "index.json"]
    for loaded in (VectorIndex.from_disk(tmp_path / "index"), VectorIndex.from_bytes(index.to_bytes())):
        assert (loaded.preset, loaded.params, loaded.ntotal) == (index.preset, index.params, index.ntotal)
        s2, f2 = loaded.search(queries, 10)
        assert (f2 == found).all() and numpy.allclose(s2, scores)


def test_search_params_change_results(data, flat_truth):
    base, queries = data
    index = VectorIndex.build(base, preset="ivf_flat", nlist=64, nprobe=1)
    _, few = index.search(queries, 10)
    index.set_search_params(nprobe=64)
    _, all_lists = index.search(queries, 10)
    assert (all_lists == flat_truth).mean() > 0.99 > (few == flat_truth).mean()
    with pytest.raises(ValueError, match="KBE013"):
        index.set_search_params(ef_search=10)


def test_bad_inputs(data, tmp_path):
    base, _ = data
    index = VectorIndex.build(base[:50])
    with pytest.raises(ValueError, match="KBE002"):
        index.search(base[:3, :10], 2)
    with pytest.raises(ValueError, match="KBE020"):
        index.add(base[:3, :10], [1, 2, 3])
    with pytest.raises(ValueError, match="KBE011"):
        index.add(base[:3], [1, 2])
    with pytest.raises(ValueError, match="KBE024"):
        index.add(base[:1], [-5])
    with pytest.raises(FileNotFoundError, match="KBE021"):
        VectorIndex.from_disk(tmp_path)
    empty = VectorIndex.empty(DIM, "ivf_sq8")
    assert empty.preset == "flat" and empty.search(base[:2], 3)[1].tolist() == [[-1] * 3] * 2


def test_normalize_option():
    x = numpy.array([[3.0, 4.0], [1.0, 0.0]], dtype="float32")
    index = VectorIndex.build(x, preset="flat", normalize=True)
    scores, found = index.search(numpy.array([[0.0, 2.0]], dtype="float32"), 2)
    assert found.tolist() == [[0, 1]] and numpy.allclose(scores, [[0.8, 0.0]], atol=1e-6)
    assert x[0, 0] == 3.0  # the caller's array is left alone
