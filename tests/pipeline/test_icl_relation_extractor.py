"""icl_relation_extractor with demo_retriever and the OpenAI-compatible backend
against a real loopback server (tests/llm/openai_server.py)."""
import pytest
import spacy
from spacy.training import Example
from spacy.util import make_tempdir

from ..llm.openai_server import FakeOpenAI
from ..retrieval.util import make_doc, re_docs, unannotated

ANSWERS = {
    # keys are matched against the prompt's last text
    "[E0 Peop: Niels Bohr] lived in": "Niels Bohr | Live_In | Copenhagen",
    "[E0 Peop: Booth] killed": "Booth | Kill | Lincoln\nBooth | Kill | Oswald\ngarbage line",
}


def _pipeline(nlp, server, **backend):
    nlp.add_pipe("demo_retriever", config={"top_k": 2})
    cfg = {"@misc": "spacy_kbnlp.OpenAICompatLLM.v1", "base_url": server.base_url, "model": "m",
           "api_key_env": None, "timeout": 1.0, "max_tries": 2, "backoff": 0.0}
    cfg.update(backend)
    icl = nlp.add_pipe("icl_relation_extractor", config={"backend": cfg})
    egs = [Example(unannotated(nlp, d), d) for d in re_docs(nlp)]
    nlp.initialize(lambda: egs)
    return icl


def _last_text(prompt):
    return prompt.rsplit("Text: ", 1)[1]


def test_end_to_end_with_partial_answers(nlp):
    with FakeOpenAI(ANSWERS) as server:
        icl = _pipeline(nlp, server)
        assert icl.labels == ["Kill", "Live_In", "OrgBased_In", "Work_For"]
        bohr = make_doc(nlp, "Niels Bohr lived in Copenhagen .", [(0, 10, "Peop"), (20, 30, "Loc")], [])
        booth = unannotated(nlp, re_docs(nlp)[5])
        with pytest.warns(UserWarning, match="KBW300"):
            docs = list(nlp.pipe([unannotated(nlp, bohr), booth]))
        prompts = [r["json"]["messages"][-1]["content"] for r in server.requests]
    assert docs[0]._.kb_rels == {(0, 4): {"Live_In": 1.0}}
    assert [(h.text, t.text, l) for h, t, l, _ in docs[0]._.relations] == [("Niels Bohr", "Copenhagen", "Live_In")]
    assert docs[0]._.llm_errors == []
    assert docs[1]._.kb_rels == {(0, 2): {"Kill": 1.0}}
    assert [e["kind"] for e in docs[1]._.llm_errors] == ["unparsable", "unknown_entity"]
    assert icl.error_counts == {"unknown_entity": 1, "unparsable": 1}
    # the prompts hold the retrieved demonstrations (leave-one-out: Booth's own sentence is not there)
    booth_prompt = next(p for p in prompts if "[E0 Peop: Booth] killed" in _last_text(p))
    assert booth_prompt.count("Answer:") == 3 and "Oswald | Kill | Kennedy" in booth_prompt
    assert "Booth | Kill | Lincoln" not in booth_prompt


def test_faulty_endpoint_drops_nothing(nlp):
    with FakeOpenAI(ANSWERS, slow_s=1.0) as server:
        _pipeline(nlp, server, timeout=0.2, max_tries=2)
        texts = [("Ann lived in Rome [500] .", [(0, 3, "Peop"), (13, 17, "Loc")]),
                 ("Bob lived in Oslo [garbage] .", [(0, 3, "Peop"), (13, 17, "Loc")]),
                 ("Cy lived in Bonn [slow] .", [(0, 2, "Peop"), (12, 16, "Loc")]),
                 ("Nobody here .", []),
                 ("Only Paris .", [(5, 10, "Loc")]),
                 ("", [])]
        inputs = [make_doc(nlp, t, e, []) for t, e in texts]
        for d in inputs:
            d._.rel_records = None
        with pytest.warns(UserWarning, match="KBW300"):
            docs = list(nlp.pipe(inputs, batch_size=4))
        n_requests = len(server.requests)
    assert len(docs) == 6
    assert all(d._.rel_records == [] for d in docs)
    kinds = [[e["kind"] for e in d._.llm_errors] for d in docs]
    assert kinds == [["backend_error"], ["backend_error"], ["backend_error"], [], [], []]
    assert "HTTP 500" in docs[0]._.llm_errors[0]["detail"]
    assert n_requests == 6  # three docs sent, two tries each; the others never sent


def test_pipe_equals_per_doc_and_round_trip(nlp):
    with FakeOpenAI(ANSWERS) as server:
        _pipeline(nlp, server)
        inputs = [unannotated(nlp, d) for d in re_docs(nlp)]
        with pytest.warns(UserWarning):
            per_doc = [nlp(d.copy())._.rel_records for d in inputs]
            piped = [d._.rel_records for d in nlp.pipe([d.copy() for d in inputs], batch_size=3)]
        assert piped == per_doc
        with make_tempdir() as tmp:
            nlp.to_disk(tmp)
            nlp2 = spacy.load(tmp)
            assert nlp2.get_pipe("icl_relation_extractor").labels == nlp.get_pipe("icl_relation_extractor").labels
            with pytest.warns(UserWarning):
                again = [nlp2(unannotated(nlp2, d))._.rel_records for d in re_docs(nlp2)]
        assert again == per_doc


def test_uninitialized_and_evaluate(nlp):
    nlp.add_pipe("icl_relation_extractor")
    with pytest.raises(ValueError, match=r"KBE173.*no LLM `backend`.*spacy_kbnlp.HFLocalLLM.v1"):
        nlp(make_doc(nlp, "Ann lived in Rome .", [(0, 3, "Peop"), (13, 17, "Loc")], []))
    with FakeOpenAI(ANSWERS) as server:
        nlp2 = spacy.blank("en")
        _pipeline(nlp2, server)
        bohr = make_doc(nlp2, "Niels Bohr lived in Copenhagen .", [(0, 10, "Peop"), (20, 30, "Loc")],
                        [(0, 1, "Live_In")])
        scores = nlp2.evaluate([Example(unannotated(nlp2, bohr), bohr)])
    assert scores["rel_micro_f"] == 1.0 and {"rel_micro_p", "rel_micro_r"} <= set(scores)


def test_local_hf_backend_in_the_pipeline(nlp, tmp_path):
    """A tiny random causal LM answers nonsense: parsed as far as possible, counted."""
    from ..llm.tiny import build_tiny_models

    gpt = build_tiny_models(tmp_path)["gpt"]
    nlp.add_pipe("demo_retriever", config={"top_k": 1})
    nlp.add_pipe("icl_relation_extractor", config={"backend": {
        "@misc": "spacy_kbnlp.HFLocalLLM.v1", "path": gpt, "max_new_tokens": 8}})
    nlp.initialize(lambda: [Example(unannotated(nlp, d), d) for d in re_docs(nlp)])
    with pytest.warns(UserWarning, match="KBW300"):
        docs = list(nlp.pipe([unannotated(nlp, d) for d in re_docs(nlp)[:3]]))
    assert len(docs) == 3
    for doc in docs:
        assert isinstance(doc._.rel_records, list)
        assert doc._.rel_records or doc._.llm_errors  # nonsense is counted, never silent


def test_load_config_overrides_settings(nlp, tmp_path):
    """``spacy.load(path, config=...)`` overrides the saved settings (here the
    relation ``score``); the labels learned at initialize are derived state, kept
    unless the config gives labels."""
    import srsly

    with FakeOpenAI(ANSWERS) as server:
        _pipeline(nlp, server)
        inputs = [unannotated(nlp, d) for d in re_docs(nlp)]
        with pytest.warns(UserWarning):
            before = [nlp(d.copy())._.rel_records for d in inputs]
        assert any(before)
        nlp.to_disk(tmp_path)
        saved = srsly.read_json(tmp_path / "icl_relation_extractor" / "cfg")
        assert set(saved) == {"labels", "format_version"}
        loaded = spacy.load(tmp_path, config={"components": {"icl_relation_extractor": {
            "score": 0.5}}})
        icl = loaded.get_pipe("icl_relation_extractor")
        assert icl.labels == nlp.get_pipe("icl_relation_extractor").labels
        with pytest.warns(UserWarning):
            after = [loaded(unannotated(loaded, d))._.rel_records for d in re_docs(loaded)]
        assert after == [[dict(r, score=0.5) for r in recs] for recs in before]
        fixed = spacy.load(tmp_path, config={"components": {"icl_relation_extractor": {
            "labels": ["Kill"]}}})
        assert fixed.get_pipe("icl_relation_extractor").labels == ["Kill"]
