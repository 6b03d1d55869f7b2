"""EntQA retriever: multi-label NCE, the four score functions, registration,
zero-shot ranking with the bundled MiniLM, training and safetensors round trip."""
import math

import numpy
import pytest
import torch
from spacy.lang.en import English
from spacy.util import make_tempdir, registry

from spacy_kbnlp.models.passages import (Batch, doc_pieces, entity_input, entity_pieces,
                                         make_passages, passage_query, special_ids)
from spacy_kbnlp.models.retriever import (SCORE_KINDS, RetrieverSpec, ScoreSpec,
                                          encode_entity_texts, load_retriever,
                                          multilabel_nce_loss, save_retriever, topk_exhaustive)

ENTITIES = [
    "Barack Obama: 44th president of the United States",
    "Berlin: capital and largest city of Germany",
    "Apple Inc.: American technology company",
    "Angela Merkel: chancellor of Germany from 2005 to 2021",
    "Mount Everest: highest mountain on Earth",
]
TEXT = "Barack Obama visited Berlin and met Angela Merkel."


pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def dual():
    return RetrieverSpec().build()


def _passage_batch(model, text, length=32, stride=16):
    doc = English()(text)
    dp = doc_pieces(model.tokenizer, doc, topic="none")
    passages = make_passages(0, doc, dp, length, stride)
    cls, sep, pad = special_ids(model.tokenizer)
    seqs = [passage_query(p, cls, sep, 64) for p in passages]
    return passages, Batch.pad(seqs, [[0] * len(s) for s in seqs], pad).to_torch("cpu")


def _entity_batch(model, texts):
    cls, sep, pad = special_ids(model.tokenizer)
    seqs = [entity_input(p, cls, sep) for p in entity_pieces(model.tokenizer, texts, 32)]
    return Batch.pad(seqs, [[0] * len(s) for s in seqs], pad).to_torch("cpu")


def test_multilabel_nce_matches_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    gold = torch.tensor([[True, True, False, False]])
    loss = multilabel_nce_loss(logits, gold, reduction="sum")
    neg = math.exp(0.0) + math.exp(-1.0)
    expected = -math.log(math.exp(2) / (math.exp(2) + neg)) - math.log(math.exp(1) / (math.exp(1) + neg))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the other gold is never in a gold's normalizer: raising it leaves gold 0's term unchanged
    raised = multilabel_nce_loss(torch.tensor([[2.0, 9.0, 0.0, -1.0]]), gold, reduction="sum")
    term1 = -math.log(math.exp(9) / (math.exp(9) + neg))
    assert raised.item() - term1 == pytest.approx(expected - (-math.log(math.exp(1) / (math.exp(1) + neg))), rel=1e-5)
    # the mean is over golds
    assert multilabel_nce_loss(logits, gold).item() == pytest.approx(expected / 2, rel=1e-6)


def test_multilabel_nce_padding_and_no_gold_rows():
    logits = torch.tensor([[1.0, float("-inf"), 0.5], [0.3, 0.2, 0.1]], requires_grad=True)
    gold = torch.tensor([[True, False, False], [False, False, False]])
    valid = torch.tensor([[True, False, True], [True, True, True]])
    loss = multilabel_nce_loss(logits, gold, valid)
    expected = -math.log(math.exp(1) / (math.exp(1) + math.exp(0.5)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[1].abs().sum().item() == 0.0  # a row without gold gives no gradient


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_score_functions_match_their_definition(kind):
    torch.manual_seed(0)
    fn = ScoreSpec(kind, n_codes=3, n_vectors=2).build(4, normalize=False, scale=1.0)
    hidden_p = torch.randn(2, 5, 4)
    mask_p = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    hidden_e = torch.randn(3, 4, 4)
    mask_e = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    pooled_p, pooled_e = hidden_p[:, 0], hidden_e[:, 0]
    p, pm = fn.passage_reps(hidden_p, mask_p, pooled_p)
    e, em = fn.entity_reps(hidden_e, mask_e, pooled_e)
    got = fn.score(p, pm, e, em)
    want = torch.zeros(2, 3)
    for b in range(2):
        for n in range(3):
            if kind == "dual":
                want[b, n] = pooled_p[b] @ pooled_e[n]
            elif kind == "poly":
                att = (hidden_p[b] @ fn.codes.T).T  # (m, T)
                att = att.masked_fill(mask_p[b] == 0, float("-inf")).softmax(-1)
                codes = att @ hidden_p[b]  # (m, d)
                a = codes @ pooled_e[n]
                want[b, n] = (a.softmax(0) * a).sum()
            elif kind == "multi":
                vecs = [pooled_e[n]] + [hidden_e[n, t] for t in (1,) if mask_e[n, t]]
                want[b, n] = max(pooled_p[b] @ v for v in vecs)
            else:
                toks = [t for t in range(5) if mask_p[b, t]]
                ents = [t for t in range(4) if mask_e[n, t]]
                want[b, n] = sum(max(hidden_p[b, t] @ hidden_e[n, u] for u in ents) for t in toks) / len(toks)
    assert torch.allclose(got, want, atol=1e-5)


def test_registered_architecture_and_score_functions_resolve():
    cfg = {"retriever": {"@architectures": "spacy_kbnlp.EntQARetriever.v1",
                         "score": {"@misc": "spacy_kbnlp.PolyScore.v1", "n_codes": 4},
                         "shared_encoder": False}}
    spec = registry.resolve(cfg)["retriever"]
    assert isinstance(spec, RetrieverSpec)
    assert spec.score == ScoreSpec("poly", n_codes=4) and not spec.shared_encoder
    for name, kind in (("DualScore", "dual"), ("MultiVectorScore", "multi"),
                       ("SumOfMaxScore", "som")):
        got = registry.resolve({"s": {"@misc": f"spacy_kbnlp.{name}.v1"}})["s"]
        assert got.kind == kind
    with pytest.raises(ValueError, match="KBE203"):
        ScoreSpec("cosine")


def test_zero_shot_dual_retrieves_the_mentioned_entities(dual):
    _, pb = _passage_batch(dual, TEXT)
    reps, mask = encode_entity_texts(dual, entity_pieces(dual.tokenizer, ENTITIES, 32))
    p, pm = dual.encode_passages(pb)
    scores, rows = topk_exhaustive(dual, p, pm, reps, mask, k=3)
    assert set(rows[0].tolist()) == {0, 1, 3}  # Obama, Berlin, Merkel; not Apple or Everest
    assert numpy.all(numpy.diff(scores[0]) <= 0)
    # exclusion removes exactly the excluded rows
    _, rows_ex = topk_exhaustive(dual, p, pm, reps, mask, k=3, exclude=[{0}])
    assert 0 not in rows_ex[0].tolist() and len(rows_ex[0]) == 3


def test_topk_exhaustive_equals_full_ranking_across_chunks(dual):
    _, pb = _passage_batch(dual, TEXT)
    reps, mask = encode_entity_texts(dual, entity_pieces(dual.tokenizer, ENTITIES, 32))
    p, pm = dual.encode_passages(pb)
    full = dual.score(p, pm, torch.from_numpy(reps), torch.from_numpy(mask))[0].detach().numpy()
    _, rows = topk_exhaustive(dual, p, pm, reps, mask, k=5, chunk=2)
    assert rows[0].tolist() == numpy.argsort(-full).tolist()


def test_training_steps_put_the_gold_first_then_round_trip():
    spec = RetrieverSpec(score=ScoreSpec("poly", n_codes=2), shared_encoder=False)
    model = spec.build()
    texts = ["Mount Everest: highest mountain on Earth", "Apple Inc.: American technology company",
             "Berlin: capital and largest city of Germany"]
    _, pb = _passage_batch(model, "The company released a new phone in California.")
    eb = _entity_batch(model, texts)
    cand = torch.tensor([[0, 1, 2]])
    gold = torch.tensor([[False, True, False]])
    with torch.no_grad():
        before = model(pb, eb, cand)
    # train the top layers of both towers and the poly codes (cheap on CPU)
    params = [p for n, p in model.named_parameters() if "layer.5." in n or n.startswith("score_fn")]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=2e-4)
    model.train()
    for _ in range(4):
        loss = multilabel_nce_loss(model(pb, eb, cand), gold)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        scores = model(pb, eb, cand)
    margin = lambda s: (s[0, 1] - torch.max(s[0, 0], s[0, 2])).item()  # noqa: E731
    assert scores.argmax(-1).item() == 1 and margin(scores) > margin(before)
    with make_tempdir() as tmp:
        save_retriever(model, tmp / "retriever")
        # on the bundled MiniLM: only the trained tensors (layer 5 of both towers, the
        # poly codes) are written, exactly, not two full encoders (2 x 87 MiB)
        assert not (tmp / "retriever" / "entity").exists()
        from safetensors.torch import load_file

        saved = load_file(str(tmp / "retriever" / "delta.safetensors"))
        assert saved and all("layer.5." in n or n.startswith("score_fn") for n in saved)
        assert (tmp / "retriever" / "delta.safetensors").stat().st_size < 20 * 2**20
        loaded = load_retriever(tmp / "retriever")
        with torch.no_grad():
            again = loaded(pb, eb, cand)
    assert loaded.spec == model.spec and not loaded.shared
    assert torch.allclose(scores, again, atol=1e-5)


def test_missing_retriever_dir_is_a_coded_error(tmp_path):
    with pytest.raises(ValueError, match="KBE207"):
        load_retriever(tmp_path)
