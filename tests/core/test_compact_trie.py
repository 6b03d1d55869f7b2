"""Decoding-core pieces added for generative entity linking: the compact prefix trie,
forced-token skipping, log-probability scores and the causal-LM stepper."""
import random

import numpy
import pytest

from spacy_kbnlp.core.decoding import (CompactPrefixTrie, HFCausalLMStepper, LogProbStepper,
                                       PrefixTrie, SequenceState, greedy_decode)

from .test_decoding import CopyOrMark, HashStepper


def test_compact_trie_small_example():
    seqs = [(5, 1), (5,), (2, 7, 7), (5, 1), (2, 3)]
    trie = CompactPrefixTrie.build(seqs, values=[10, 11, 12, 13, 14])
    assert trie.max_depth == 3 and len(trie) == 5
    # root, 2, 5, (2,3), (2,7), (5,1), (2,7,7)
    assert trie.n_nodes == 7
    assert trie.next_tokens(trie.root) == [2, 5]
    assert trie.lookup([5, 1]) == (10, 13)
    assert trie.lookup([5]) == (11,)
    assert trie.lookup([2]) == () and trie.lookup([9]) == () and trie.lookup([2, 7, 7, 7]) == ()
    node = trie.walk([2])
    assert trie.next_tokens(node) == [3, 7] and not trie.is_terminal(node)
    assert trie.is_terminal(trie.walk([2, 3]))
    assert sorted(trie.sequences()) == sorted(zip(seqs, [10, 11, 12, 13, 14]))


def test_compact_trie_equals_prefix_trie_on_random_sets():
    rng = random.Random(3)
    for _ in range(30):
        seqs = [tuple(rng.randint(0, 6) for _ in range(rng.randint(1, 5)))
                for _ in range(rng.randint(1, 40))]
        compact = CompactPrefixTrie.build(seqs)
        ref = PrefixTrie()
        by_seq = {}
        for i, q in enumerate(seqs):
            by_seq.setdefault(q, []).append(i)
            ref.insert(q, 0)
        assert sorted(compact.sequences()) == sorted((q, i) for i, q in enumerate(seqs))
        # same nodes and children everywhere
        stack = [((), ref.root)]
        n_ref = 0
        while stack:
            prefix, rnode = stack.pop()
            n_ref += 1
            cnode = compact.walk(prefix)
            assert cnode is not None
            assert compact.next_tokens(cnode) == sorted(rnode.children)
            assert compact.node_values(cnode) == tuple(by_seq.get(prefix, ()))
            stack.extend((prefix + (t,), c) for t, c in rnode.children.items())
        assert n_ref == compact.n_nodes
        assert compact.max_depth == max(len(q) for q in seqs)


def test_compact_trie_bad_input():
    with pytest.raises(ValueError, match="empty"):
        CompactPrefixTrie.build([(1,), ()])
    with pytest.raises(ValueError, match="values"):
        CompactPrefixTrie.build([(1,)], values=[1, 2])
    with pytest.raises(ValueError, match="2\\*\\*31"):
        CompactPrefixTrie.build([(1, -3)])
    empty = CompactPrefixTrie.build([])
    assert empty.n_nodes == 1 and empty.next_tokens(empty.root) == [] and empty.lookup([1]) == ()


def test_compact_trie_memory_is_small():
    rng = numpy.random.default_rng(0)
    seqs = [tuple(rng.integers(0, 30000, size=int(rng.integers(1, 6)))) for _ in range(20000)]
    trie = CompactPrefixTrie.build(seqs)
    assert trie.nbytes < 16 * (trie.n_nodes + 2 * len(seqs))
    for q in seqs[:200]:
        assert seqs.index(q) in trie.lookup(q)


@pytest.mark.parametrize("bias", [{}, {0: 0.4}, {0: 5.0}])
def test_skip_forced_equals_greedy_with_fewer_calls(bias):
    source = [2 + (i * 7) % 9 for i in range(30)]
    full = greedy_decode(HashStepper(bias=bias), CopyOrMark(source), [11], 200)
    skip = greedy_decode(HashStepper(bias=bias), CopyOrMark(source), [11], 200, skip_forced=True)
    assert skip.tokens == full.tokens and skip.n_forward <= full.n_forward
    assert len(skip.token_scores) == len(skip.tokens)
    # a grammar that leaves no choice needs no model call at all
    stepper = HashStepper()
    forced = greedy_decode(stepper, SequenceState([5, 3, 9]), [2], 10, skip_forced=True)
    assert forced.tokens == [5, 3, 9] and forced.n_forward == 0 and stepper.n_calls == 0
    assert forced.token_scores == [0.0, 0.0, 0.0]


def test_log_prob_stepper_scores_are_log_probabilities():
    import torch

    source = [2, 3, 4, 5]
    raw = greedy_decode(HashStepper(), CopyOrMark(source), [11], 50)
    stepper = HashStepper()
    logp = greedy_decode(LogProbStepper(stepper), CopyOrMark(source), [11], 50)
    assert logp.tokens == raw.tokens
    hist, expect = [11], []
    for tok in logp.tokens:
        row = torch.log_softmax(torch.tensor(stepper._row(tuple(hist))), -1)
        expect.append(float(row[tok]))
        hist.append(tok)
    assert logp.token_scores == pytest.approx(expect, abs=1e-5)
    assert logp.score == pytest.approx(sum(expect), abs=1e-4)
    # allowed_mass: the log-probability the grammar left open at each step
    hist, state = [11], CopyOrMark(source)
    for tok, mass in zip(logp.tokens, logp.allowed_mass):
        row = torch.log_softmax(torch.tensor(stepper._row(tuple(hist))), -1)
        allowed = list(state.allowed())
        assert mass == pytest.approx(float(torch.logsumexp(row[allowed], 0)), abs=1e-5)
        state = state.advance(tok)
        hist.append(tok)


def test_causal_lm_stepper_caches_like_a_full_pass():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=64, n_embd=16, n_layer=2,
                                       n_head=2)).eval()
    stepper = HFCausalLMStepper(model)
    prompt = [3, 7, 1]
    out = greedy_decode(stepper, CopyOrMark([4, 5, 6, 7]), prompt, 20)
    with torch.no_grad():
        ids = torch.tensor([prompt + out.tokens[:-1]])
        full = model(input_ids=ids).logits[0, len(prompt) - 1:]
    # each choice equals the constrained argmax of an uncached forward pass
    state = CopyOrMark([4, 5, 6, 7])
    for k, tok in enumerate(out.tokens):
        allowed = list(state.allowed())
        assert tok == max(allowed, key=lambda t: float(full[k, t]))
        state = state.advance(tok)
    skip = greedy_decode(HFCausalLMStepper(model), CopyOrMark([4, 5, 6, 7]), prompt, 20,
                         skip_forced=True)
    assert skip.tokens == out.tokens
