import pytest
import spacy
from spacy.training import Example
from spacy.util import make_tempdir

from spacy_kbnlp.retrieval.store import DemoStore

from ..retrieval.util import re_docs, unannotated


def _examples(nlp):
    return [Example(unannotated(nlp, d), d) for d in re_docs(nlp)]


def _same(a, b):
    """Same demonstrations; scores equal up to float noise of batched encoding."""
    assert [[d["id"] for d in x] for x in a] == [[d["id"] for d in x] for x in b]
    for x, y in zip(a, b):
        assert [d["score"] for d in x] == pytest.approx([d["score"] for d in y], abs=1e-5)


def test_add_pipe_and_uninitialized(nlp):
    pipe = nlp.add_pipe("demo_retriever")
    assert pipe.cfg["retriever"] == "bm25" and pipe.cfg["top_k"] == 5
    with pytest.raises(ValueError, match="KBE304"):
        nlp("Alan Turing lived in London .")
    with pytest.raises(ValueError, match="KBE300"):
        nlp.add_pipe("demo_retriever", name="bad", config={"retriever": "sparse"})


@pytest.mark.parametrize("retriever", ["bm25", "dense"])
def test_leave_one_out_sorted_and_round_trip(nlp, encoder, retriever):
    pipe = nlp.add_pipe("demo_retriever", config={"retriever": retriever, "top_k": 3})
    pipe.encoder = encoder
    egs = _examples(nlp)
    nlp.initialize(lambda: egs)
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    out = [nlp(d) for d in docs]
    for doc in out:
        demos = doc._.demonstrations
        assert len(demos) == 3
        assert doc.text not in [d["text"] for d in demos]  # leave-one-out
        assert [d["score"] for d in demos] == sorted((d["score"] for d in demos), reverse=True)
        assert set(demos[0]) == {"id", "text", "input", "target", "labels", "score"}
    # a new sentence is not in the store: nothing left out, its nearest neighbour is first
    new = nlp(unannotated(nlp, re_docs(nlp)[0]).copy())
    pipe.cfg["leave_one_out"] = False
    assert nlp(unannotated(nlp, re_docs(nlp)[0]))._.demonstrations[0]["text"] == re_docs(nlp)[0].text
    pipe.cfg["leave_one_out"] = True
    # pipe twice == per doc
    piped = list(nlp.pipe([unannotated(nlp, d) for d in re_docs(nlp)], batch_size=3))
    _same([p._.demonstrations for p in piped], [o._.demonstrations for o in out])
    with make_tempdir() as tmp:
        nlp.to_disk(tmp)
        nlp2 = spacy.load(tmp)
        again = [nlp2(unannotated(nlp2, d)) for d in re_docs(nlp2)]
        _same([a._.demonstrations for a in again], [o._.demonstrations for o in out])
    assert new._.demonstrations


def test_edge_docs_and_empty_store(nlp):
    pipe = nlp.add_pipe("demo_retriever", config={"top_k": 2})
    nlp.initialize(lambda: _examples(nlp))
    for text in ["", " ", "London", "the of and"]:
        doc = nlp(text)
        assert isinstance(doc._.demonstrations, list) and len(doc._.demonstrations) <= 2
    pipe.set_store(DemoStore())
    with pytest.warns(UserWarning, match="KBW301"):
        doc = nlp("Alan Turing lived in London .")
    assert doc._.demonstrations == []


def test_store_from_disk_and_encoder_mismatch(nlp, encoder):
    store = DemoStore.from_docs(re_docs(nlp), encoder=encoder)
    with make_tempdir() as tmp:
        store.to_disk(tmp / "store")
        pipe = nlp.add_pipe("demo_retriever", config={"retriever": "dense", "top_k": 2})
        pipe.encoder = encoder
        pipe.initialize(store_path=tmp / "store")
        doc = nlp(unannotated(nlp, re_docs(nlp)[3]))
        assert len(doc._.demonstrations) == 2
        assert doc.text not in [d["text"] for d in doc._.demonstrations]
        from spacy_kbnlp.encoders.hf import HFEncoder
        other = HFEncoder(pooling="cls")
        other.name = "other"
        pipe.encoder = other
        with pytest.raises(ValueError, match="KBE302"):
            pipe.initialize(store_path=tmp / "store")


@pytest.mark.slow
def test_n_process_2_equals_serial(nlp):
    nlp.add_pipe("demo_retriever", config={"top_k": 2})
    nlp.initialize(lambda: _examples(nlp))
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    serial = [d._.demonstrations for d in nlp.pipe([x.copy() for x in docs])]
    parallel = [d._.demonstrations for d in nlp.pipe([x.copy() for x in docs], n_process=2)]
    assert [[dict(x, labels=list(x["labels"])) for x in p] for p in parallel] == serial


@pytest.mark.parametrize("name", ["demo_retriever.cfg", "test/demo_retriever.cfg"])
def test_configs_build_and_initialize(name, tmp_path):
    from pathlib import Path

    from spacy.util import load_config, load_model_from_config

    store = DemoStore.from_docs(re_docs(spacy.blank("en")))
    store.to_disk(tmp_path / "store")
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / name,
                         overrides={"paths.store": str(tmp_path / "store")})
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["demo_retriever", "icl_relation_extractor"]
    if name.startswith("test/"):  # BM25: no embedding needed
        nlp.initialize()
        doc = nlp.get_pipe("demo_retriever")(unannotated(nlp, re_docs(nlp)[0]))
        assert len(doc._.demonstrations) == 2
        assert nlp.get_pipe("icl_relation_extractor")._doc_labels(doc) == ["Live_In"]


def test_extensions_survive_to_bytes(nlp):
    from spacy.tokens import Doc

    nlp.add_pipe("demo_retriever", config={"top_k": 2})
    nlp.initialize(lambda: _examples(nlp))
    doc = nlp(unannotated(nlp, re_docs(nlp)[0]))
    doc._.llm_errors = [{"kind": "unparsable", "detail": "x"}]
    back = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert [dict(d, labels=list(d["labels"])) for d in back._.demonstrations] == doc._.demonstrations
    assert back._.llm_errors == doc._.llm_errors


def test_load_config_overrides_settings(nlp, tmp_path):
    """``spacy.load(path, config=...)`` changes the saved component's settings
    (``top_k``, ``leave_one_out``); what the store decides (task, input format) and
    the format version are the only state kept in its ``cfg``."""
    import srsly

    nlp.add_pipe("demo_retriever", config={"top_k": 3})
    nlp.initialize(lambda: _examples(nlp))
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    before = [nlp(d.copy())._.demonstrations for d in docs]
    nlp.to_disk(tmp_path)
    saved = srsly.read_json(tmp_path / "demo_retriever" / "cfg")
    assert set(saved) == {"format_version", "task", "input_format", "encoder", "encoder_pooling"}
    loaded = spacy.load(tmp_path, config={"components": {"demo_retriever": {"top_k": 1}}})
    assert loaded.get_pipe("demo_retriever").cfg["top_k"] == 1
    after = [loaded(unannotated(loaded, d))._.demonstrations for d in re_docs(loaded)]
    _same(after, [b[:1] for b in before])
    own = spacy.load(tmp_path, config={"components": {"demo_retriever": {"leave_one_out": False}}})
    first = own(unannotated(own, re_docs(own)[0]))._.demonstrations[0]
    assert first["text"] == re_docs(own)[0].text
