"""LLM backends: the OpenAI-compatible client against a real loopback HTTP server
(canned, slow, 500, garbage answers), and the local HF backend on tiny models built
from a config (no hub)."""
import time

import pytest
from spacy.util import registry

from spacy_kbnlp.llm.backends import HFLocalBackend, OpenAICompatBackend

from .openai_server import FakeOpenAI


def _client(server, **kw):
    sleeps = []
    kw.setdefault("timeout", 1.0)
    kw.setdefault("max_tries", 3)
    kw.setdefault("backoff", 0.01)
    client = OpenAICompatBackend(server.base_url, "test-model", api_key_env="KBNLP_TEST_KEY",
                                 sleep=sleeps.append, **kw)
    return client, sleeps


def test_no_connection_at_construction(monkeypatch):
    monkeypatch.delenv("KBNLP_TEST_KEY", raising=False)
    # nothing listens on port 9 of the loopback; construction must not notice
    client = registry.misc.get("spacy_kbnlp.OpenAICompatLLM.v1")(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env="KBNLP_TEST_KEY")
    assert client.n_requests == 0
    with pytest.raises(ValueError, match="KBE307"):
        client(["hello"])
    assert client(["x"][:0]) == []


def test_canned_answers_and_auth(monkeypatch):
    monkeypatch.setenv("KBNLP_TEST_KEY", "sk-test")
    with FakeOpenAI({"Turing": "Alan Turing | Live_In | London"}) as server:
        client, sleeps = _client(server)
        out = client(["Where did Turing live?", "something else"])
        assert out == [{"text": "Alan Turing | Live_In | London", "error": None},
                       {"text": "none", "error": None}]
        assert sleeps == []
        assert all(r["auth"] == "Bearer sk-test" for r in server.requests)
        assert server.requests[0]["json"]["model"] == "test-model"
        sent = sorted(r["json"]["messages"][-1]["content"] for r in server.requests)
        assert sent == ["Where did Turing live?", "something else"]


def test_retries_with_backoff_then_succeeds(monkeypatch):
    monkeypatch.setenv("KBNLP_TEST_KEY", "k")
    with FakeOpenAI({"q": "ok"}) as server:
        client, sleeps = _client(server, max_tries=4, backoff=0.5, max_backoff=0.8)
        assert client(["q [500x2]"]) == [{"text": "ok", "error": None}]
        assert server.seen["q [500x2]"] == 3
        assert sleeps == [0.5, 0.8]  # exponential, capped at max_backoff


def test_faulty_server_is_survived(monkeypatch):
    monkeypatch.setenv("KBNLP_TEST_KEY", "k")
    with FakeOpenAI({"fine": "a | b | c"}, slow_s=1.5) as server:
        client, sleeps = _client(server, timeout=0.3, max_tries=2, concurrency=3, batch_size=2)
        prompts = ["p [500]", "p [garbage]", "p [slow]", "fine", "p [400]"]
        t = time.perf_counter()
        out = client(prompts)
        elapsed = time.perf_counter() - t
    assert [o["text"] for o in out] == [None, None, None, "a | b | c", None]
    assert "HTTP 500" in out[0]["error"] and "KBE308" in out[0]["error"]
    assert "unreadable answer" in out[1]["error"]
    assert "Timeout" in out[2]["error"] or "timed out" in out[2]["error"]
    assert out[4]["error"] == "HTTP 400"  # not retried
    assert server.seen["p [500]"] == 2 and server.seen["p [garbage]"] == 2
    assert server.seen["p [400]"] == 1
    assert elapsed < 5  # bounded: two tries of 0.3 s for the slow prompt, no real sleeping


def test_unreachable_endpoint(monkeypatch):
    monkeypatch.setenv("KBNLP_TEST_KEY", "k")
    with FakeOpenAI() as server:
        url = server.base_url
    # the server is closed now: connection refused on every try
    client = OpenAICompatBackend(url, "m", api_key_env="KBNLP_TEST_KEY", timeout=0.5, max_tries=2,
                                 backoff=0.0, sleep=lambda s: None)
    out = client(["a", "b"])
    assert all(o["text"] is None and "KBE308" in o["error"] for o in out)
    assert client.n_requests == 4


def test_concurrency_limit(monkeypatch):
    monkeypatch.setenv("KBNLP_TEST_KEY", "k")
    with FakeOpenAI(slow_s=0.3) as server:
        client, _ = _client(server, concurrency=4, batch_size=8, timeout=2.0)
        t = time.perf_counter()
        out = client([f"q{i} [slow]" for i in range(8)])
        elapsed = time.perf_counter() - t
    assert all(o["text"] == "none" for o in out)
    assert 0.55 < elapsed < 1.5  # 8 slow answers, 4 at a time: two rounds


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from .tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("kind", ["gpt", "t5"])
def test_local_score_is_average_token_loglik(tiny_models, kind):
    import torch

    backend = HFLocalBackend(tiny_models[kind], batch_size=2)
    prompts = ["the cat sat on", "a dog barked at the", "stocks fell"]
    targets = ["the mat", "postman", "sharply today"]
    scores = backend.score(prompts, targets)
    # reference: one example at a time, computed by hand from the logits
    model, tok = backend.model, backend.tokenizer
    for p, t, s in zip(prompts, targets, scores):
        with torch.no_grad():
            if kind == "t5":
                enc = tok(p, return_tensors="pt", return_token_type_ids=False)
                lab = tok(text_target=t, return_tensors="pt").input_ids
                logits = model(**enc, labels=lab).logits[0]
                tgt = lab[0]
            else:
                p_ids = tok(p)["input_ids"]
                t_ids = tok(t, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]  # no eos: sep
                ids = torch.tensor([p_ids + t_ids])
                logits = model(input_ids=ids).logits[0, len(p_ids) - 1:-1]
                tgt = torch.tensor(t_ids)
            ref = torch.log_softmax(logits, -1).gather(-1, tgt[:, None]).mean().item()
        assert s == pytest.approx(ref, abs=1e-4)
    gen = backend(["the cat"])
    assert gen[0]["error"] is None and isinstance(gen[0]["text"], str)


def test_local_backend_bad_path(tmp_path):
    backend = HFLocalBackend(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="KBE252"):
        backend.load()
