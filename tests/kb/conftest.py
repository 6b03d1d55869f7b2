import numpy
import pytest

from spacy_kbnlp.kb.records import read_entities

from ..conftest import REPO

DEMO_KB = REPO / "assets" / "demo" / "kb.jsonl"


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """FAISS's OpenMP threads spin-wait; on a shared, oversubscribed CPU that makes
    small trainings 10-20x slower (measured: 0.25 s vs 4.9 s for an ivf_pq build of
    4,000 vectors). Tests run FAISS single-threaded and restore the setting."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def demo_records():
    return read_entities(DEMO_KB)


@pytest.fixture(scope="session")
def demo_kb(demo_records, encoder):
    """The 388-entity demo KB encoded once with MiniLM (flat preset)."""
    from spacy_kbnlp.kb.dense_kb import DenseKB

    return DenseKB.build(demo_records, encoder, preset="flat", show_progress=False)


def clustered(n: int, dim: int, n_clusters: int, seed: int = 0, spread: float = 0.08) -> numpy.ndarray:
    """Unit vectors drawn around ``n_clusters`` random centres (a mixture of Gaussians
    on the sphere), so that neighbourhoods are structured as in real embeddings."""
    rng = numpy.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype("float32")
    centres /= numpy.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, n_clusters, size=n)] + spread * rng.normal(size=(n, dim)).astype("float32")
    return (x / numpy.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
