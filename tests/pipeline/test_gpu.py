"""GPU follows the pipeline: weights and inputs run on thinc's current device whether
``spacy.require_gpu()`` comes before or after ``spacy.load`` (run with --gpu or
KBNLP_GPU=1; skipped without CUDA)."""
import importlib.util

import numpy
import pytest
import spacy
import torch
from spacy.lang.en import English

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

needs_cupy = pytest.mark.skipif(importlib.util.find_spec("cupy") is None,
                                reason="spacy.require_gpu() needs cupy")

TEXT = "Lord Byron wrote poems . He loved them and his friends loved him ."


@pytest.fixture
def on_cpu_after():
    yield
    spacy.require_cpu()


def _devices(pipe):
    return {next(m.parameters()).device.type for m in pipe.torch_modules()}


def _coref_pipeline(tmp_path):
    from tests.models.tiny_seq2seq import build_tiny_seq2seq

    model = build_tiny_seq2seq(tmp_path / "tiny", hidden=64)
    nlp = English()
    nlp.add_pipe("seq2seq_coref", config={"model": str(model), "segment_length": 32,
                                          "stride": 16, "max_target_length": 96,
                                          "max_clusters": 5, "mention_bias": 3.0})
    nlp.initialize()
    nlp.to_disk(tmp_path / "pipeline")
    return nlp


def _clusters(doc):
    return [[(s.start, s.end) for s in cl] for cl in doc._.coref_clusters]


@needs_cupy
def test_require_gpu_after_load_moves_the_weights(tmp_path, on_cpu_after):
    cpu = _coref_pipeline(tmp_path)
    expected = _clusters(cpu(TEXT))
    nlp = spacy.load(tmp_path / "pipeline")
    comp = nlp.get_pipe("seq2seq_coref")
    assert _devices(comp) == {"cpu"}
    spacy.require_gpu()
    assert _clusters(nlp(TEXT)) == expected
    assert _devices(comp) == {"cuda"}
    spacy.require_cpu()
    assert _clusters(nlp(TEXT)) == expected and _devices(comp) == {"cpu"}


@needs_cupy
def test_require_gpu_before_load(tmp_path, on_cpu_after):
    expected = _clusters(_coref_pipeline(tmp_path)(TEXT))
    spacy.require_gpu()
    nlp = spacy.load(tmp_path / "pipeline")
    assert _clusters(nlp(TEXT)) == expected
    assert _devices(nlp.get_pipe("seq2seq_coref")) == {"cuda"}


@needs_cupy
def test_entqa_linker_and_encoder_follow_require_gpu(on_cpu_after):
    from spacy_kbnlp.encoders.hf import HFEncoder
    from spacy_kbnlp.kb.dense_kb import DenseKB
    from spacy_kbnlp.kb.records import EntityRecord

    records = [EntityRecord("Q76", "Barack Obama", "44th president of the United States"),
               EntityRecord("Q64", "Berlin", "capital and largest city of Germany")]
    kb = DenseKB.from_vectors(records, numpy.eye(2, 8, dtype="float32"),
                              encoder_name="placeholder")
    nlp = English()
    linker = nlp.add_pipe("entqa_linker", config={"mention_hints": None, "top_k": 2,
                                                  "quantize": False})
    linker.initialize(kb_loader=lambda vocab: kb, reencode_kb=True)
    text = "Barack Obama visited Berlin last week."
    before = nlp(text)._.entqa_candidates
    spacy.require_gpu()
    after = nlp(text)._.entqa_candidates
    assert _devices(linker) == {"cuda"}
    assert [[c[0] for c in p["candidates"]] for p in after] == \
        [[c[0] for c in p["candidates"]] for p in before]
    encoder = HFEncoder()
    spacy.require_cpu()
    vectors = encoder.encode(["Berlin"])
    spacy.require_gpu()
    assert numpy.allclose(encoder.encode(["Berlin"]), vectors, atol=1e-4)
    assert next(encoder.model.parameters()).device.type == "cuda"


def test_device_setting_without_cupy(tmp_path):
    """A ``device`` setting (torch-only installs) puts the weights there at the next
    call, also for a pipeline loaded on CPU, with the same clusters."""
    expected = _clusters(_coref_pipeline(tmp_path)(TEXT))
    nlp = spacy.load(tmp_path / "pipeline", config={"components": {"seq2seq_coref": {
        "device": "cuda"}}})
    assert _clusters(nlp(TEXT)) == expected
    assert _devices(nlp.get_pipe("seq2seq_coref")) == {"cuda"}
