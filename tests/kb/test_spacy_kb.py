import numpy
import pytest
import spacy
from spacy.kb import Candidate, InMemoryLookupKB
from spacy.training import Example
from spacy.util import fix_random_seed, make_tempdir, registry

from spacy_kbnlp.kb.dense_kb import DenseKB
from spacy_kbnlp.kb.records import detect_source, load_entity_ids
from spacy_kbnlp.kb.spacy_kb import DenseSpacyKB, spacy_dense_kb_from_disk

EL_CONFIG = {
    "entity_vector_length": 384,
    "incl_prior": True,
    "generate_empty_kb": {"@misc": "spacy_kbnlp.EmptyDenseKB.v1"},
    "get_candidates": {"@misc": "spacy_kbnlp.DenseCandidateGenerator.v1", "top_k": 5},
    "get_candidates_batch": {"@misc": "spacy_kbnlp.DenseCandidateBatchGenerator.v1", "top_k": 5},
}
TRAIN = [
    ("We flew to Paris and saw the Eiffel Tower.", (11, 16), "paris_france"),
    ("Paris Hilton is a media personality.", (0, 5), "paris_hilton"),
    ("He wrote the script in Python on Linux.", (23, 29), "python_language"),
    ("Amazon ships packages from Seattle.", (0, 6), "amazon_company"),
]


@pytest.fixture(scope="module")
def kb_dir(demo_kb, tmp_path_factory):
    path = tmp_path_factory.mktemp("kb") / "demo_kb"
    demo_kb.to_disk(path)
    return path


def make_nlp():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("entity_ruler")
    nlp.add_pipe("entity_linker", config=EL_CONFIG)
    return nlp


def add_patterns(nlp):
    """After nlp.initialize(), which resets the ruler."""
    nlp.get_pipe("entity_ruler").add_patterns(
        [{"label": "X", "pattern": p} for p in ("Paris", "Python", "Amazon", "Jaguar")])


def examples(nlp):
    out = []
    for text, (s, e), kb_id in TRAIN:
        doc = nlp.make_doc(text)
        out.append(Example.from_dict(doc, {"links": {(s, e): {kb_id: 1.0}}, "entities": [(s, e, "X")],
                                           "sent_starts": [1] + [0] * (len(doc) - 1)}))
    return out


def test_candidates(kb_dir, encoder):
    nlp = spacy.blank("en")
    kb = spacy_dense_kb_from_disk(kb_dir, top_k=4)(nlp.vocab)
    assert isinstance(kb, DenseSpacyKB) and len(kb) == 388 and kb.entity_vector_length == 384
    doc = nlp("She moved from Paris to London.")
    cands = kb.get_candidates(doc[3:4])
    assert len(cands) == 4 and all(isinstance(c, Candidate) for c in cands)
    assert cands[0].entity_ == "paris_france" and cands[0].alias_ == "Paris"
    assert {c.entity_ for c in cands} >= {"paris_france", "paris_texas"}
    priors = [c.prior_prob for c in cands]
    assert priors == sorted(priors, reverse=True) and 0 < priors[-1] <= priors[0] <= 1
    assert numpy.allclose(cands[0].entity_vector, kb.get_vector("paris_france"))
    # batch == one by one; settings per call
    batch = kb.get_candidates_batch([doc[3:4], doc[5:6]])
    assert [c.entity_ for c in batch[0]] == [c.entity_ for c in cands]
    assert batch[1][0].entity_ == "london"
    soft = kb.get_candidates(doc[3:4], prior="softmax", top_k=3)
    assert len(soft) == 3 and abs(sum(c.prior_prob for c in soft) - 1.0) < 1e-5
    assert kb.get_candidates(doc[3:4], min_score=0.99) == []
    mention_only = kb.get_candidates(doc[3:4], context_window=0)
    assert numpy.isclose(mention_only[0].prior_prob,
                         float(encoder.encode(["Paris"])[0] @ kb.get_vector(mention_only[0].entity_)), atol=1e-4)
    assert not numpy.any(kb.get_vector("not_an_entity"))
    with pytest.raises(ValueError, match="KBE024"):
        kb.get_candidates(doc[3:4], top_k=0)


def test_generators_need_a_dense_kb(kb_dir):
    nlp = spacy.blank("en")
    doc = nlp("Paris")
    gen = registry.misc.get("spacy_kbnlp.DenseCandidateGenerator.v1")(top_k=2)
    batch_gen = registry.misc.get("spacy_kbnlp.DenseCandidateBatchGenerator.v1")(top_k=2)
    kb = spacy_dense_kb_from_disk(kb_dir)(nlp.vocab)
    assert [c.entity_ for c in gen(kb, doc[0:1])] == [c.entity_ for c in batch_gen(kb, [doc[0:1]])[0]]
    assert len(gen(kb, doc[0:1])) == 2
    with pytest.raises(ValueError, match="KBE017"):
        gen(InMemoryLookupKB(nlp.vocab, 3), doc[0:1])
    empty = registry.misc.get("spacy_kbnlp.EmptyDenseKB.v1")()(nlp.vocab, 384)
    assert empty.is_empty()
    with pytest.raises(ValueError, match="KBE019"):
        empty.get_candidates(doc[0:1])


def test_encoder_mismatch_on_load(kb_dir):
    class Other:
        name, dim, pooling = "other-encoder", 384, "mean"

    with pytest.raises(ValueError, match="KBE001.*other-encoder"):
        spacy_dense_kb_from_disk(kb_dir, encoder=Other())(spacy.blank("en").vocab)


def test_entity_linker_trains_predicts_and_round_trips(kb_dir):
    fix_random_seed(0)
    nlp = make_nlp()
    egs = examples(nlp)
    nlp.config["initialize"]["components"]["entity_linker"] = {
        "kb_loader": {"@misc": "spacy_kbnlp.SpacyDenseKBFromDisk.v1", "path": str(kb_dir)}}
    nlp.initialize(lambda: egs)
    add_patterns(nlp)
    el = nlp.get_pipe("entity_linker")
    assert isinstance(el.kb, DenseSpacyKB) and el.kb.entity_vector_length == 384
    optimizer = nlp.resume_training()
    losses_seen = []
    for _ in range(3):
        losses = {}
        nlp.update(egs, sgd=optimizer, losses=losses)
        losses_seen.append(losses["entity_linker"])
    assert losses_seen[-1] < losses_seen[0]
    texts = [t for t, _, _ in TRAIN] + ["Jaguar built a new car in Coventry."]
    predicted = [[(e.text, e.kb_id_) for e in doc.ents] for doc in nlp.pipe(texts)]
    assert predicted[:4] == [[("Paris", "paris_france")], [("Paris", "paris_hilton")],
                             [("Python", "python_language")], [("Amazon", "amazon_company")]]
    # an unseen sentence: the dense candidates rank the car maker first; the trained
    # linker picks one of the candidates (which one depends on its few updates)
    held_out = nlp(texts[-1]).ents[0]
    cands = [c.entity_ for c in el.get_candidates(el.kb, held_out)]
    assert cands[0] == "jaguar_cars" and "jaguar_animal" in cands and held_out.kb_id_ in cands
    with make_tempdir() as d:
        nlp.to_disk(d)
        assert (d / "entity_linker" / "kb" / "manifest.json").exists()
        assert not (d / "entity_linker" / "kb" / "encoder").exists()  # bundled default encoder
        nlp2 = spacy.load(d)
        kb2 = nlp2.get_pipe("entity_linker").kb
        assert isinstance(kb2, DenseSpacyKB) and len(kb2) == 388 and kb2.cfg == el.kb.cfg
        assert [[(e.text, e.kb_id_) for e in doc.ents] for doc in nlp2.pipe(texts)] == predicted
        # the pipeline folder is a KB source too (e.g. for InKB evaluation)
        assert detect_source(d) == "pipeline" and load_entity_ids(d) == set(kb2.get_entity_strings())
    # the KB through bytes as well
    kb3 = DenseSpacyKB(nlp.vocab, 1).from_bytes(el.kb.to_bytes())
    doc = nlp.make_doc("Paris")
    assert [c.entity_ for c in kb3.get_candidates(doc[0:1])] == [c.entity_ for c in el.kb.get_candidates(doc[0:1])]


def test_saves_a_non_default_encoder(tmp_path, demo_kb, encoder):
    """A KB whose encoder is not the bundled default keeps its encoder in the folder."""
    kb = DenseKB.from_vectors(demo_kb.records[:20], demo_kb.vectors[:20], encoder_name="my-minilm", pooling="mean")
    encoder_copy = type(encoder)(encoder.path)
    encoder_copy.name = "my-minilm"
    skb = DenseSpacyKB(spacy.blank("en").vocab, 384, dense_kb=kb, encoder=encoder_copy)
    skb.to_disk(tmp_path / "kb")
    assert (tmp_path / "kb" / "encoder" / "model.safetensors").exists()
    loaded = DenseSpacyKB(spacy.blank("en").vocab, 1).from_disk(tmp_path / "kb")
    assert loaded.encoder.name == "my-minilm" and loaded.encoder.path == str(tmp_path / "kb" / "encoder")
    doc = spacy.blank("en")("Paris")
    assert [c.entity_ for c in loaded.get_candidates(doc[0:1])] == [c.entity_ for c in skb.get_candidates(doc[0:1])]
