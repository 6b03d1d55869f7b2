"""EntQA reader: inputs (faithful and packed), span decoding, loss, overfitting a
tiny example (links exact, rejection of absent candidates), round trip, int8."""
import math

import numpy
import pytest
import torch
from spacy.lang.en import English
from spacy.util import make_tempdir, registry

from spacy_kbnlp.models.passages import doc_pieces, entity_pieces, make_passages
from spacy_kbnlp.models.reader import (ReaderSpec, build_inputs, load_reader, quantize_dynamic,
                                       reader_loss, reader_probs, save_reader, top_spans)
from spacy_kbnlp.training.entqa import TrainPassage, reader_targets

TEXTS = ["Barack Obama visited Berlin .", "The weather was nice today ."]
CANDS = ["Barack Obama: 44th president of the United States",
         "Berlin: capital of Germany", "Apple Inc.: technology company"]
# gold (start, end) word spans per text and candidate index
GOLD = [{0: [(0, 2)], 1: [(3, 4)]}, {}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _passages(tok, texts=TEXTS):
    nlp = English()
    out = []
    for i, text in enumerate(texts):
        doc = nlp(text)
        out.extend(make_passages(i, doc, doc_pieces(tok, doc, topic="first_token"), 32, 16))
    return out


def test_top_spans_rules():
    neg = -50.0
    start = numpy.full((3, 6), neg)
    end = numpy.full((3, 6), neg)
    # row 0: null span most likely -> nothing
    start[0, 0] = end[0, 0] = 0.0
    # row 1: span words [1, 3) (positions 2..3) beats null; a nested [2, 3) and a far [4, 5)
    start[1, [0, 2, 3, 5]] = numpy.log([0.1, 0.6, 0.2, 0.1])
    end[1, [0, 3, 5]] = numpy.log([0.1, 0.7, 0.2])
    # row 2: best span is longer than max_len=2 words
    start[2, [0, 1]] = numpy.log([0.3, 0.7])
    end[2, [0, 5]] = numpy.log([0.3, 0.7])
    got = top_spans(start, end, max_len=2, top_p=3)
    assert got[0] == []
    spans = [(s, e) for s, e, _ in got[1]]
    assert spans == [(1, 3), (4, 5)]  # nested [2, 3) dropped, top-P best first
    assert got[1][0][2] == pytest.approx(0.6 * 0.7)
    assert got[1][1][2] == pytest.approx(0.1 * 0.2)
    assert got[2] == []  # 0.7*0.7 span too long; the others lose to null
    assert top_spans(start, end, max_len=2, top_p=1)[1] == [(1, 3, pytest.approx(0.42))]


@pytest.mark.parametrize("packed", [False, True])
def test_inputs_put_words_and_candidates_where_the_outputs_read_them(packed):
    spec = ReaderSpec(packed=packed, candidates_per_sequence=2)
    reader = spec.build()
    tok = reader.tokenizer
    passages = _passages(tok)
    ents = entity_pieces(tok, CANDS, 8)
    inputs = build_inputs(spec, tok, passages, [ents, ents[:1]])
    assert inputs.pairs == [(0, 0), (0, 1), (0, 2), (1, 0)]
    ids = inputs.batch.input_ids
    # the first piece of "berlin" (word 3 of passage 0) sits at first[row, 3]
    berlin = tok.convert_tokens_to_ids("berlin")
    for r, (p, _) in enumerate(inputs.pairs):
        if p == 0:
            seq = r if not packed else 0 if r < 2 else 1
            assert ids[seq, inputs.first[seq, 3]] == berlin
    if packed:
        # 3 candidates of passage 0 in 2 sequences, 1 of passage 1 in its own
        assert ids.shape[0] == 3
        marker = tok.convert_tokens_to_ids("[ENT]")
        assert [ids[s, m] for s in range(3) for m in inputs.markers[s] if m >= 0] == [marker] * 4
        assert inputs.seq_rows.tolist() == [[0, 1], [2, -1], [3, -1]]
    else:
        assert ids.shape[0] == 4
        sep = tok.sep_token_id
        assert list(ids[1][ids[1] > 0][-len(ents[1]) - 1:]) == ents[1] + [sep]
    start, end, rank = reader(inputs)
    # passage 1 has 6 words, passage 0 has 5: its position 6 is padding
    assert start.shape == end.shape == (4, 7) and rank.shape == (4,)
    assert torch.isinf(start[0, 6]) and torch.isinf(end[2, 6]) and not torch.isinf(start[3, 6])


def test_reader_loss_is_the_mean_of_three_log_likelihood_terms():
    start = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 0.0]])
    end = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    rank = torch.tensor([1.0, -1.0])
    gs = numpy.array([[False, True, False], [True, False, False]])
    ge = numpy.array([[False, False, True], [True, False, False]])
    gc = numpy.array([True, False])
    loss = reader_loss(start, end, rank, [(0, 0), (0, 1)], 1, gs, ge, gc)

    def nce(row, g):
        return -row[g] + math.log(sum(math.exp(v) for v in row))

    ls = (nce([1.0, 2.0, 0.0], 1) + nce([0.5, 0.0, 0.0], 0)) / 2
    le = (nce([0.0, 1.0, 1.0], 2) + nce([0.0, 0.0, 0.0], 0)) / 2
    lr = nce([1.0, -1.0], 0)
    assert loss.item() == pytest.approx((ls + le + lr) / 3, rel=1e-5)


def test_two_gold_candidates_share_one_rerank_softmax():
    """Eq. 6.2: both golds are scored under the same softmax over the K candidates
    (the distribution decoding uses), so the loss is lowest when they split the mass."""
    from spacy_kbnlp.models.retriever import multilabel_nce_loss, multilabel_softmax_loss

    gold = torch.tensor([[True, True, False]])
    even = torch.tensor([[3.0, 3.0, -3.0]])
    skewed = torch.tensor([[6.0, 3.0, -3.0]])
    expected = -(math.log(math.exp(3) / (2 * math.exp(3) + math.exp(-3))))
    assert multilabel_softmax_loss(even, gold).item() == pytest.approx(expected, rel=1e-5)
    assert multilabel_softmax_loss(even, gold) < multilabel_softmax_loss(skewed, gold)
    # the retriever's NCE leaves the other gold out of each normalizer: no such preference
    assert multilabel_nce_loss(skewed, gold) < multilabel_nce_loss(even, gold)
    # invalid columns are outside the softmax; rows without gold add nothing
    valid = torch.tensor([[True, True, False], [True, True, True]])
    two = torch.tensor([[3.0, 3.0, 50.0], [1.0, 2.0, 3.0]])
    gold2 = torch.tensor([[True, True, False], [False, False, False]])
    assert multilabel_softmax_loss(two, gold2, valid).item() == pytest.approx(math.log(2), rel=1e-5)


def _train(spec, steps, lr):
    reader = spec.build()
    torch.manual_seed(0)
    tok = reader.tokenizer
    passages = _passages(tok)
    ents = entity_pieces(tok, CANDS, spec.max_entity_pieces)
    tps = [TrainPassage(p, {CANDS[c]: spans for c, spans in GOLD[i].items()})
           for i, p in enumerate(passages)]
    cand_ids = [CANDS, CANDS]
    inputs = build_inputs(spec, tok, passages, [ents, ents])
    width = inputs.first.shape[1]
    gs, ge, gc = reader_targets(tps, cand_ids, inputs.pairs, width)
    params = [p for n, p in reader.named_parameters() if "embeddings" not in n]
    opt = torch.optim.AdamW(params, lr=lr)
    reader.train()
    for _ in range(steps):
        loss = reader_loss(*reader(inputs), inputs.pairs, len(passages), gs, ge, gc)
        opt.zero_grad()
        loss.backward()
        opt.step()
    reader.eval()
    return reader, inputs, passages


def _links(reader, inputs, passages, threshold=0.2):
    with torch.no_grad():
        out = reader_probs(*reader(inputs), inputs.pairs, len(passages))
    spans = top_spans(out.start_logp, out.end_logp, reader.spec.max_span_words, 3)
    links = set()
    for r, (p, c) in enumerate(out.pairs):
        for s, e, ps in spans[r]:
            if out.rerank_p[r] * ps > threshold:
                links.add((p, s, e, c))
    return links, out


@pytest.mark.parametrize("packed", [False, True])
def test_overfit_tiny_example_links_exactly_and_rejects_absent_candidates(packed):
    spec = ReaderSpec(packed=packed, max_entity_pieces=12)
    reader, inputs, passages = _train(spec, steps=25 if packed else 15, lr=5e-4 if packed else 2e-4)
    links, out = _links(reader, inputs, passages)
    assert links == {(0, 0, 2, 0), (0, 3, 4, 1)}
    # passage 1 mentions none of the candidates: every candidate's best span is [CLS]
    spans = top_spans(out.start_logp, out.end_logp, 10, 3)
    assert all(spans[r] == [] for r, (p, _) in enumerate(out.pairs) if p == 1)
    # round trip: identical probabilities
    with make_tempdir() as tmp:
        save_reader(reader, tmp / "reader")
        loaded = load_reader(tmp / "reader")
    links2, out2 = _links(loaded, inputs, passages)
    assert links2 == links
    numpy.testing.assert_allclose(out2.start_logp, out.start_logp, atol=1e-5)
    numpy.testing.assert_allclose(out2.rerank_p, out.rerank_p, atol=1e-5)
    # dynamic int8 keeps the best span of each gold candidate and the rejections
    _, out3 = _links(quantize_dynamic(loaded), inputs, passages)
    spans3 = top_spans(out3.start_logp, out3.end_logp, 10, 1)
    assert [s[:1] and s[0][:2] for s in spans3] == [s[:1] and s[0][:2] for s in
                                                   top_spans(out.start_logp, out.end_logp, 10, 1)]
    numpy.testing.assert_allclose(out3.rerank_p, out.rerank_p, atol=0.15)


def test_top_layer_reader_round_trips_as_a_small_delta_of_its_base():
    from spacy_kbnlp.training.entqa import train_top_layers

    spec = ReaderSpec(packed=True, max_entity_pieces=12)
    reader = spec.build()
    n_frozen = train_top_layers(reader, 1)
    trainable = {n for n, p in reader.named_parameters() if p.requires_grad}
    assert n_frozen > 0 and trainable and all(
        n.startswith("encoder.encoder.layer.5.") or not n.startswith("encoder.") for n in trainable)
    assert any(n.startswith("start_q") for n in trainable)
    # a "trained" reader: the top layer and heads moved, the rest is the base
    with torch.no_grad():
        for p in reader.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    tok = reader.tokenizer
    passages = _passages(tok)
    ents = entity_pieces(tok, CANDS, spec.max_entity_pieces)
    inputs = build_inputs(spec, tok, passages, [ents, ents])
    _, out = _links(reader, inputs, passages)
    with make_tempdir() as tmp:
        save_reader(reader, tmp / "full")
        save_reader(reader, tmp / "delta", delta=True)
        full = sum(f.stat().st_size for f in (tmp / "full").rglob("*") if f.is_file())
        small = sum(f.stat().st_size for f in (tmp / "delta").rglob("*") if f.is_file())
        assert not (tmp / "delta" / "encoder").exists() and small < full / 5
        loaded = load_reader(tmp / "delta")
        _, out2 = _links(loaded, inputs, passages)
        numpy.testing.assert_allclose(out2.start_logp, out.start_logp, atol=1e-5)
        numpy.testing.assert_allclose(out2.rerank_p, out.rerank_p, atol=1e-5)
        # int8 differences from the base (fp16 heads): smaller still, nearly the same output
        save_reader(reader, tmp / "q8", delta=True, half=True, int8=True)
        q8 = sum(f.stat().st_size for f in (tmp / "q8").rglob("*") if f.is_file())
        assert q8 < small / 2
        _, out3 = _links(load_reader(tmp / "q8"), inputs, passages)
        numpy.testing.assert_allclose(out3.rerank_p, out.rerank_p, atol=2e-3)
        numpy.testing.assert_allclose(numpy.exp(out3.start_logp), numpy.exp(out.start_logp), atol=2e-3)
        # the [ENT] marker row (random at build) is restored, not drawn again
        marker = tok.convert_tokens_to_ids("[ENT]")
        emb = "embeddings.word_embeddings.weight"
        assert torch.equal(loaded.encoder.state_dict()[emb][marker], reader.encoder.state_dict()[emb][marker])
        # on another base (a changed frozen tensor) loading fails clearly
        import json

        meta = json.loads((tmp / "delta" / "spec.json").read_text())
        meta["base_check"] = {k: v + 1.0 for k, v in meta["base_check"].items()}
        (tmp / "delta" / "spec.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match="KBE213"):
            load_reader(tmp / "delta")


def test_low_rank_reader_round_trip_keeps_a_low_rank_difference():
    """``rank``: each changed matrix's difference as two int8 SVD factors and the
    heads as int8 values. A reader whose fine-tuning difference has rank 2 comes
    back nearly exactly from rank 4, in a fraction of the int8 delta's size; the
    truncation really drops directions (rank 1 of that difference changes the
    weights); a rank below 1 is refused."""
    spec = ReaderSpec(packed=True, max_entity_pieces=12)
    reader = spec.build()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in reader.named_parameters():
            if name.startswith("encoder.encoder.layer.") and p.ndim == 2:
                u = torch.randn(p.shape[0], 2, generator=gen)
                v = torch.randn(2, p.shape[1], generator=gen)
                p.add_(0.002 * u @ v)
    tok = reader.tokenizer
    passages = _passages(tok)
    ents = entity_pieces(tok, CANDS, spec.max_entity_pieces)
    inputs = build_inputs(spec, tok, passages, [ents, ents])
    _, out = _links(reader, inputs, passages)
    state = reader.state_dict()
    with make_tempdir() as tmp:
        save_reader(reader, tmp / "q8", delta=True, half=True, int8=True)
        save_reader(reader, tmp / "r4", rank=4, half=True)
        save_reader(reader, tmp / "r1", rank=1, half=True)
        q8 = (tmp / "q8" / "delta.safetensors").stat().st_size
        r4 = (tmp / "r4" / "delta.safetensors").stat().st_size
        assert r4 < q8 / 4
        low = load_reader(tmp / "r4")
        _, out4 = _links(low, inputs, passages)
        numpy.testing.assert_allclose(out4.rerank_p, out.rerank_p, atol=5e-3)
        numpy.testing.assert_allclose(numpy.exp(out4.start_logp), numpy.exp(out.start_logp), atol=5e-3)
        name = "encoder.encoder.layer.3.intermediate.dense.weight"
        err4 = (low.state_dict()[name] - state[name]).abs().max()
        err1 = (load_reader(tmp / "r1").state_dict()[name] - state[name]).abs().max()
        assert err4 < 2e-4 < err1
        # heads (random at build) come back as their int8 values, not drawn again
        assert (low.state_dict()["start_q.weight"] - state["start_q.weight"]).abs().max() < 1e-3
        with pytest.raises(ValueError, match="rank"):
            save_reader(reader, tmp / "r0", rank=0)


def test_registered_readers_resolve():
    got = registry.resolve({"a": {"@architectures": "spacy_kbnlp.EntQAReader.v1"},
                            "b": {"@architectures": "spacy_kbnlp.EntQAPackedReader.v1",
                                  "candidates_per_sequence": 8}})
    assert got["a"] == ReaderSpec(packed=False)
    assert got["b"].packed and got["b"].candidates_per_sequence == 8
    assert got["b"].max_entity_pieces == 16
