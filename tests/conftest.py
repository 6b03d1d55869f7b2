import os
from pathlib import Path

import pytest
from spacy.lang.en import English

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _shared_data_dir() -> Path:
    env = os.environ.get("KBNLP_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="include slow tests")
    parser.addoption("--gpu", action="store_true", default=False, help="include GPU tests")


def pytest_runtest_setup(item):
    def opt(name, env):
        return item.config.getoption(f"--{name}") or os.environ.get(env, "") not in ("", "0")

    if "slow" in item.keywords and not opt("slow", "KBNLP_SLOW"):
        pytest.skip("slow test: run with --slow or KBNLP_SLOW=1")
    if "gpu" in item.keywords and not opt("gpu", "KBNLP_GPU"):
        pytest.skip("GPU test: run with --gpu or KBNLP_GPU=1")


@pytest.fixture
def nlp():
    return English()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared corpora (``../shared/data`` next to the repo, or $KBNLP_DATA_DIR).

    Tests on real corpora are skipped where the data is absent (a user's clone);
    CI always has it."""
    path = _shared_data_dir()
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set KBNLP_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def encoder():
    """The bundled all-MiniLM-L6-v2 encoder, loaded once per test session."""
    from spacy_kbnlp.encoders.hf import HFEncoder

    return HFEncoder().load()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures(
    "one_torch_thread")``): on a shared, oversubscribed CPU, OpenMP spin-waiting with two
    threads makes small forward/backward passes many times slower (measured: a MiniLM
    reader test 100 s with 2 threads, 19 s with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_benchmark(name: str):
    """A script of ``benchmarks/`` (``name`` without ``.py``, e.g. ``peers/coref_predict``;
    not a package) imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_" + name.replace("/", "_"),
                                                  REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
