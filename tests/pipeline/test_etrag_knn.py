"""ETRAG's retrieval path on top of a frozen backbone and the neighbours' label vote:
``warm_lr_scale`` (the weights copied by ``init_from`` step with that scale; 0 freezes
them) and ``knn_mix`` (prediction: the label distribution of the retrieved neighbours
interpolated with the model's, as kNN-LM does)."""
from collections import Counter

import numpy
import pytest
import spacy

from spacy_kbnlp.pipeline.etrag_relation_extractor import knn_mix_scores, log_softmax

from ..retrieval.util import re_docs, unannotated
from .test_etrag import _examples, _nlp, _train, tiny  # noqa: F401  (the tiny fixture)
from .test_etrag_init_from import _save_tiny, _with_init_from

NAME = "etrag_relation_extractor"


def test_knn_mix_scores():
    scores = numpy.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype="float32")
    votes = numpy.array([[0.0, 1.0, 0.0], [0.0, 0.25, 0.75]], dtype="float32")
    assert numpy.allclose(knn_mix_scores(scores, votes, 0.0), log_softmax(scores), atol=1e-6)
    assert numpy.allclose(numpy.exp(knn_mix_scores(scores, votes, 1.0)), votes, atol=1e-6)
    half = numpy.exp(knn_mix_scores(scores, votes, 0.5))
    assert numpy.allclose(half, 0.5 * numpy.exp(log_softmax(scores)) + 0.5 * votes, atol=1e-6)
    assert numpy.allclose(half.sum(1), 1.0, atol=1e-6)
    # first row: the model gives label 0 p 0.84, label 1 p 0.11; the vote is all label 1
    assert numpy.exp(knn_mix_scores(scores, votes, 0.25))[0].argmax() == 0  # 0.63 against 0.34
    assert half[0].argmax() == 1  # 0.42 against 0.56


def test_neighbour_votes_and_the_knn_mix(tiny):
    with pytest.raises(ValueError, match=r"KBE312.*knn_mix.*label vote"):
        nlp = spacy.blank("en")
        nlp.add_pipe(NAME, config={"model": {"backbone": tiny["t5"]}, "knn_mix": 1.5})
    # one neighbour, a sharp top-1: the vote is the label of the nearest bank row
    nlp = _nlp(tiny["t5"], n_neighbors=1, temperature=1e-4)
    _train(nlp, steps=3)
    pipe = nlp.get_pipe(NAME)
    pipe.refresh_bank()
    gold = [i for d in re_docs(nlp) for i in pipe.instances(d, gold=True)]
    # each training sentence with one entity pair as a new document (another key): its
    # nearest neighbour is its own copy in the bank, so its own label tops the vote (a
    # sentence with three entities has three pair instances, nearly the same text)
    pairs = Counter(i["key"] for i in gold)
    single = [i for i in gold if pairs[i["key"]] == 1]
    assert len(single) == 6
    votes = pipe.neighbour_votes([dict(i, key="new") for i in single])
    assert votes.shape == (6, len(pipe.labels))
    assert numpy.allclose(votes.sum(1), 1.0, atol=1e-5) and numpy.allclose(votes.max(1), 1.0, atol=1e-3)
    assert [pipe.labels[j] for j in votes.argmax(1)] == [i["label"] for i in single]
    gold = single
    # with its own key the copy is left out (leave-one-out, as in training): the vote changes
    assert not numpy.allclose(pipe.neighbour_votes(gold), votes, atol=1e-3)
    # knn_mix 1: the predicted labels are the vote's; 0 (default): the model's
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    insts = [i for d in docs for i in pipe.instances(d, gold=False)]
    model_top = pipe.score_instances(insts).argmax(1)
    vote_top = pipe.neighbour_votes(insts).argmax(1)
    assert (model_top != vote_top).any()  # otherwise the test could not tell them apart
    for mix, expected in ((0.0, model_top), (1.0, vote_top)):
        pipe.cfg["knn_mix"] = mix
        (_, scores), = pipe.predict([docs[0]])
        n = len(pipe.instances(docs[0], gold=False))
        assert list(scores.argmax(1)) == list(expected[:n])
    # the baseline (no neighbours) has no vote: knn_mix changes nothing
    base = _nlp(tiny["t5"], n_neighbors=0)
    _train(base, steps=1)
    bpipe = base.get_pipe(NAME)
    assert not bpipe.neighbour_votes(insts).any()


def test_warm_lr_scale_zero_trains_only_the_retrieval_path(tiny, tmp_path):
    """Started from a saved baseline with ``warm_lr_scale = 0``: after training, every
    copied weight is the baseline's, the retrieval path has moved, and with the prompts
    hidden the model scores exactly as the baseline."""
    import torch

    with pytest.raises(ValueError, match=r"KBE312.*warm_lr_scale"):
        nlp = spacy.blank("en")
        nlp.add_pipe(NAME, config={"model": {"backbone": tiny["t5"]}, "warm_lr_scale": -1.0})
    src = _save_tiny(tmp_path, "base", tiny["t5"])
    saved = spacy.load(src).get_pipe(NAME)
    before = {n: p.clone() for n, p in saved.module.state_dict().items()}

    def trained(scale):
        return trained_steps(src, 4, scale, tiny["t5"])

    frozen, losses = trained(0.0)
    module = frozen.module
    after = module.state_dict()
    warm = sorted(module.warm_parameters & set(after))
    assert warm and all(torch.equal(after[n], before[n]) for n in warm)
    assert all(not p.requires_grad for n, p in module.named_parameters() if n in module.warm_parameters)
    start, _ = trained_steps(src, 0, 0.0, tiny["t5"])  # the same initialisation, no update
    for name in ("value.weight", "label_emb.weight"):  # the retrieval path trained
        assert not torch.equal(after[name], start.module.state_dict()[name])
    insts = [i for d in re_docs(spacy.blank("en")) for i in frozen.instances(d, gold=False)]
    assert numpy.allclose(frozen.score_instances(insts, no_prompts=True),
                          saved.score_instances(insts), atol=1e-5)
    assert not numpy.allclose(frozen.score_instances(insts), saved.score_instances(insts), atol=1e-3)
    assert losses[-1] < losses[0]
    moved, _ = trained(1.0)  # the default: the copied weights train too
    assert any(not torch.equal(moved.module.state_dict()[n], before[n]) for n in warm)


def trained_steps(src, steps, scale=0.0, backbone=None):
    nlp = _with_init_from(_nlp(backbone), src)
    nlp.get_pipe(NAME).cfg["warm_lr_scale"] = scale
    return nlp.get_pipe(NAME), _train(nlp, steps=steps)


def test_shipped_config_freezes_the_copied_weights(tiny, tmp_path):
    """configs/etrag.cfg with --paths.init_from and warm_lr_scale 0 (docs/relations.md):
    the copied weights do not train, the retrieval path does."""
    import torch
    from spacy.util import load_config, load_model_from_config
    from thinc.api import Adam

    from .test_etrag import CONFIGS, _examples

    src = _save_tiny(tmp_path, "base", tiny["t5"])
    config = load_config(CONFIGS / "etrag.cfg", overrides={
        "paths.backbone": tiny["t5"], "paths.init_from": str(src), "vars.n_neighbors": 2,
        "components.etrag_relation_extractor.warm_lr_scale": 0.0,
        "components.etrag_relation_extractor.knn_mix": 0.25}, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: _examples(nlp))
    optimizer = Adam(0.01)  # (the config's schedule starts with a warmup at 0)
    pipe = nlp.get_pipe(NAME)
    assert pipe.cfg["warm_lr_scale"] == 0.0 and pipe.cfg["knn_mix"] == 0.25
    before = {n: p.detach().clone() for n, p in pipe.module.named_parameters()}
    for _ in range(2):
        nlp.update(_examples(nlp), sgd=optimizer, losses={})
    after = dict(pipe.module.named_parameters())
    warm = [n for n in before if n in pipe.module.warm_parameters]
    assert warm and all(torch.equal(after[n], before[n]) for n in warm)
    assert not torch.equal(after["value.weight"], before["value.weight"])


def test_pair_region_finds_the_marked_pair():
    from spacy_kbnlp.retrieval.render import instance_text, pair_region

    nlp = spacy.blank("en")
    doc = re_docs(nlp)[0]
    a, b = doc.ents[0], doc.ents[1]
    text = instance_text(doc, a, b)
    start, end = pair_region(text)
    assert text[start:].startswith("[E1 ") and text[:end].endswith(f"{b.text}]")
    assert text[start:end].count("[E2 ") == 1 and text[end:].find("[E") < 0
    assert pair_region(doc.text) is None


def test_pair_pooling_averages_the_marked_pair_only(tiny):
    """``pooling = "pair"``: the retrieval embedding averages the word pieces from
    ``[E1`` to the end of ``[E2 ...]``; the text outside does not enter the pool."""
    import torch

    from spacy_kbnlp.retrieval.render import pair_region

    nlp = _nlp(tiny["t5"], pooling="pair")
    nlp.initialize(lambda: _examples(nlp))
    module = nlp.get_pipe(NAME).module
    text = "Yesterday in the morning [E1 Peop: Ann] was born in [E2 Loc: Rome] , they say ."
    start, end = pair_region(text)
    ids, mask = module.tokenize([text, "no marks here ."])
    pool = module.pool_mask([text, "no marks here ."], mask)
    pieces = module.tokenizer.convert_ids_to_tokens(ids[0][pool[0].bool()].tolist())
    assert pieces == module.tokenizer.tokenize(text[start:end])
    # without marks: every word piece, no special token
    assert module.tokenizer.convert_ids_to_tokens(ids[1][pool[1].bool()].tolist()) == \
        module.tokenizer.tokenize("no marks here .")
    # the pooled mean by hand
    hidden = module.seq2seq.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    by_hand = torch.nn.functional.normalize(hidden[0][pool[0].bool()].mean(0), dim=-1)
    assert torch.allclose(module.embed_texts([text])[0], by_hand, atol=1e-5)
    module.pooling = "text"  # all tokens: another embedding
    assert not torch.allclose(module.embed_texts([text])[0], by_hand, atol=1e-3)
    with pytest.raises(ValueError, match=r"KBE312.*pooling"):
        _nlp(tiny["t5"], pooling="words")


def test_knn_k_votes_of_the_nearest_rows(tiny):
    """``knn_k > 0``: the ``knn_k`` nearest bank rows vote with softmax(similarity /
    knn_temperature), leave-one-out as always; worked out from the similarities."""
    import torch

    nlp = _nlp(tiny["t5"])
    _train(nlp, steps=2)
    pipe = nlp.get_pipe(NAME)
    pipe.refresh_bank()
    module = pipe.module
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    insts = [i for d in docs for i in pipe.instances(d, gold=False)]
    q = pipe.vote_queries(insts)
    sims = module.similarities(torch.as_tensor(q), [i["key"] for i in insts])
    top, rows = sims.topk(3, dim=1)
    by_hand = numpy.zeros((len(insts), len(pipe.labels)), dtype="float32")
    w = torch.softmax(top / 0.2, -1).numpy()
    for n in range(len(insts)):
        for j in range(3):
            by_hand[n, int(module.bank_labels[rows[n, j]])] += w[n, j]
    votes = pipe.neighbour_votes(insts, knn_k=3, knn_temperature=0.2)
    assert numpy.allclose(votes, by_hand, atol=1e-5) and numpy.allclose(votes.sum(1), 1.0, atol=1e-5)
    assert numpy.allclose(pipe.neighbour_votes(insts, queries=q, knn_k=3, knn_temperature=0.2), votes)
    one = pipe.neighbour_votes(insts, knn_k=1)  # the nearest row's label
    assert [int(module.bank_labels[r]) for r in rows[:, 0]] == list(one.argmax(1)) and numpy.allclose(one.max(1), 1)
    # knn_k 0 (default): the soft neighbours' vote, as before
    assert numpy.allclose(pipe.neighbour_votes(insts), module.neighbour_votes(
        [i["text"] for i in insts], [i["key"] for i in insts]).numpy(), atol=1e-6)
    # the component's settings reach predict
    pipe.cfg.update(knn_mix=1.0, knn_k=1)
    (_, scores), = pipe.predict([docs[0]])
    n = len(pipe.instances(docs[0], gold=False))
    assert list(scores.argmax(1)) == list(one.argmax(1)[:n])
    for bad in ({"knn_k": -1}, {"knn_temperature": 0.0}):
        with pytest.raises(ValueError, match=r"KBE312.*knn_(k|temperature)"):
            spacy.blank("en").add_pipe(NAME, config=dict({"model": {"backbone": tiny["t5"]}}, **bad))


def test_saved_bank_is_re_embedded_for_another_pooling(tiny, tmp_path):
    """The bank keys remember their pooling: a pipeline saved with ``text`` and loaded with
    ``model.pooling = "pair"`` re-embeds its bank before it retrieves; loaded as saved, it
    keeps the saved keys."""
    import torch

    nlp = _nlp(tiny["t5"])
    _train(nlp, steps=2)
    nlp.get_pipe(NAME).refresh_bank()
    nlp.to_disk(tmp_path / "p")
    same = spacy.load(tmp_path / "p").get_pipe(NAME)
    assert not same._stale
    assert torch.equal(same.module.bank_keys, nlp.get_pipe(NAME).module.bank_keys)
    pair_nlp = spacy.load(tmp_path / "p", config={f"components.{NAME}.model.pooling": "pair"})
    pair = pair_nlp.get_pipe(NAME)
    assert pair.module.pooling == "pair" and pair._stale
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    pair.predict(docs[:1])
    expected = pair.module.embed_texts([b[0] for b in pair._bank])
    assert torch.allclose(pair.module.bank_keys, expected, atol=1e-6)
    assert not torch.allclose(pair.module.bank_keys, same.module.bank_keys, atol=1e-3)
    # saved before its first retrieval, the bank is re-embedded first: loaded again it holds
    # the pair keys and re-embeds nothing
    spacy.load(tmp_path / "p", config={f"components.{NAME}.model.pooling": "pair"}).to_disk(tmp_path / "early")
    early = spacy.load(tmp_path / "early").get_pipe(NAME)
    assert not early._stale and torch.allclose(early.module.bank_keys, expected, atol=1e-6)
    pair_nlp.to_disk(tmp_path / "pair")
    again = spacy.load(tmp_path / "pair", config={f"components.{NAME}.model.pooling": "pair"}).get_pipe(NAME)
    assert not again._stale and torch.allclose(again.module.bank_keys, expected, atol=1e-6)


def test_shipped_config_votes_on_a_frozen_baseline(tiny, tmp_path):
    """The documented route to the vote on a trained baseline (docs/relations.md):
    configs/etrag.cfg from the saved baseline, its weights frozen, ``pooling`` pair,
    ``retrieval_mix`` 1 and the vote of the nearest instances: the prediction is the
    baseline's label distribution interpolated with that vote, by hand."""
    from spacy.util import load_config, load_model_from_config

    from .test_etrag import CONFIGS

    src = _save_tiny(tmp_path, "base", tiny["t5"])
    comp = "components.etrag_relation_extractor"
    config = load_config(CONFIGS / "etrag.cfg", overrides={
        "paths.backbone": tiny["t5"], "paths.init_from": str(src), "vars.n_neighbors": 2,
        f"{comp}.warm_lr_scale": 0.0, f"{comp}.model.pooling": "pair", f"{comp}.retrieval_mix": 1.0,
        f"{comp}.knn_mix": 0.5, f"{comp}.knn_k": 3, f"{comp}.knn_temperature": 0.1}, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: _examples(nlp))
    nlp.to_disk(tmp_path / "vote")
    vote = spacy.load(tmp_path / "vote")
    pipe = vote.get_pipe(NAME)
    assert pipe.module.pooling == "pair" and (pipe.cfg["knn_k"], pipe.cfg["knn_mix"]) == (3, 0.5)
    base = spacy.load(src).get_pipe(NAME)
    docs = [unannotated(vote, d) for d in re_docs(vote)]
    insts = [i for d in docs for i in pipe.instances(d, gold=False)]
    by_hand = knn_mix_scores(base.score_instances(insts), pipe.neighbour_votes(insts, knn_k=3, knn_temperature=0.1), 0.5)
    predicted = numpy.concatenate([scores for _, scores in pipe.predict(docs)])
    assert numpy.allclose(predicted, by_hand, atol=1e-4)
    assert not numpy.allclose(predicted, log_softmax(base.score_instances(insts)), atol=1e-3)  # the vote counts


@pytest.mark.parametrize("pooling", ["text", "pair"])
def test_the_pass_without_prompts_embeds_the_vote_queries(tiny, pooling):
    """With the prompts hidden the text's encoder states are those of the text alone: the
    pass that scores without neighbours also gives the vote's queries (no encoder pass of
    their own), equal to ``vote_queries``; its scores are ``score_instances(no_prompts)``'s."""
    nlp = _nlp(tiny["t5"], pooling=pooling)
    _train(nlp, steps=2)
    pipe = nlp.get_pipe(NAME)
    pipe.refresh_bank()
    docs = [unannotated(nlp, d) for d in re_docs(nlp)]
    insts = [i for d in docs for i in pipe.instances(d, gold=False)]
    scores, queries = pipe.scores_without_prompts(insts)
    assert numpy.array_equal(scores, pipe.score_instances(insts, no_prompts=True))
    assert numpy.allclose(queries, pipe.vote_queries(insts), atol=1e-5)
    # predict at retrieval_mix 1 with the vote: the baseline's scores and the vote, by hand
    pipe.cfg.update(retrieval_mix=1.0, knn_mix=0.5, knn_k=3)
    predicted = numpy.concatenate([s for _, s in pipe.predict(docs)])
    by_hand = knn_mix_scores(log_softmax(scores), pipe.neighbour_votes(insts), 0.5)
    assert numpy.allclose(predicted, by_hand, atol=1e-5)


def test_a_saved_baseline_votes_when_loaded_with_neighbours(tiny, tmp_path):
    """A saved baseline (``n_neighbors`` 0) kept its training instances, not their keys:
    loaded with ``model.n_neighbors`` > 0, ``retrieval_mix`` 1 and a vote, it embeds its bank
    before the first retrieval and predicts its own label distribution interpolated with the
    vote, as the one-step route from its weights does (no training at all)."""
    from spacy.util import load_config, load_model_from_config

    from .test_etrag import CONFIGS

    src = _save_tiny(tmp_path, "base", tiny["t5"])
    base = spacy.load(src).get_pipe(NAME)
    comp = f"components.{NAME}"
    vote_cfg = {f"{comp}.model.n_neighbors": 2, f"{comp}.model.pooling": "pair", f"{comp}.retrieval_mix": 1.0,
                f"{comp}.knn_mix": 0.5, f"{comp}.knn_k": 3}
    loaded = spacy.load(src, config=vote_cfg).get_pipe(NAME)
    assert loaded._stale and loaded.module.bank_keys.shape[0] == 0
    docs = [unannotated(spacy.blank("en"), d) for d in re_docs(spacy.blank("en"))]
    insts = [i for d in docs for i in loaded.instances(d, gold=False)]
    predicted = numpy.concatenate([s for _, s in loaded.predict(docs)])
    assert loaded.module.bank_keys.shape[0] == len(loaded._bank) > 0
    by_hand = knn_mix_scores(base.score_instances(insts), loaded.neighbour_votes(insts), 0.5)
    assert numpy.allclose(predicted, by_hand, atol=1e-5)
    assert not numpy.allclose(predicted, log_softmax(base.score_instances(insts)), atol=1e-3)
    # the same as the documented one-step route from the baseline's weights
    config = load_config(CONFIGS / "etrag.cfg", overrides=dict({
        "paths.backbone": tiny["t5"], "paths.init_from": str(src), "vars.n_neighbors": 2,
        f"{comp}.warm_lr_scale": 0.0}, **{k: v for k, v in vote_cfg.items() if "n_neighbors" not in k}),
        interpolate=True)
    route = load_model_from_config(config, auto_fill=True, validate=True)
    route.initialize(lambda: _examples(route))
    again = numpy.concatenate([s for _, s in route.get_pipe(NAME).predict(docs)])
    assert numpy.allclose(again, predicted, atol=1e-5)
