"""Decoding core: prefix trie, Gotoh alignment, greedy / copy-speculative / beam loops,
the Hugging Face logits-processor adapter."""
import hashlib
import itertools
import random

import numpy
import pytest

from spacy_kbnlp.core.alignment import gotoh_align
from spacy_kbnlp.core.decoding import (BiasedStepper, batched_greedy_decode, ConstrainedLogitsProcessor, ConstraintState,
                                       PrefixTrie,
                                       SequenceState, beam_decode, column_index, crop_cache,
                                       greedy_decode, speculative_decode)


# --------------------------------------------------------------------------- prefix trie
def test_prefix_trie_ranks_and_values():
    trie = PrefixTrie([((1,), 1), ((2,), 2), ((1, 0), 10), ((1, 1), 11), ((2, 5), 25)])
    assert trie.max_depth == 2
    assert sorted(trie.next_tokens(trie.root)) == [1, 2]
    assert trie.next_tokens(trie.root, max_rank=1) == [1]
    node = trie.walk([1])
    assert node.value == 1
    assert sorted(trie.next_tokens(node)) == [0, 1]
    assert trie.next_tokens(node, max_rank=10) == [0]
    assert trie.lookup([2, 5]) == 25
    assert trie.lookup([3]) is None and trie.walk([1, 7]) is None
    with pytest.raises(ValueError):
        trie.insert([], 3)


# --------------------------------------------------------------------------- alignment
def _reference_score(a, b, o, e):
    """Plain Gotoh recurrences, cell by cell (independent of the vectorised version)."""
    n, m = len(a), len(b)
    NEG = -1e18
    M = [[NEG] * (m + 1) for _ in range(n + 1)]
    X = [[NEG] * (m + 1) for _ in range(n + 1)]
    Y = [[NEG] * (m + 1) for _ in range(n + 1)]
    M[0][0] = 0.0
    for i in range(1, n + 1):
        X[i][0] = -(o + e * (i - 1))
    for j in range(1, m + 1):
        Y[0][j] = -(o + e * (j - 1))
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            s = 1.0 if a[i - 1] == b[j - 1] else -1.0
            M[i][j] = s + max(M[i - 1][j - 1], X[i - 1][j - 1], Y[i - 1][j - 1])
            X[i][j] = max(M[i - 1][j] - o, X[i - 1][j] - e, Y[i - 1][j] - o)
            Y[i][j] = max(M[i][j - 1] - o, Y[i][j - 1] - e, X[i][j - 1] - o)
    return max(M[n][m], X[n][m], Y[n][m])


def _score_of(a, b, positions, o, e):
    """Score of the alignment given by ``positions`` (recomputed from scratch)."""
    score = 0.0
    pairs = [(p, j) for j, p in enumerate(positions) if p >= 0]
    score += sum(1.0 if a[p] == b[j] else -1.0 for p, j in pairs)
    # gaps: walk both sequences in order
    ops = []
    i = 0
    for j, p in enumerate(positions):
        if p < 0:
            ops.append("Y")
            continue
        ops.extend("X" * (p - i))
        ops.append("M")
        i = p + 1
    ops.extend("X" * (len(a) - i))
    for kind, run in itertools.groupby(ops):
        k = len(list(run))
        if kind != "M":
            score -= o + e * (k - 1)
    return score


def test_gotoh_paper_example():
    # x = (a, b, c, d, e, b, b), two mentions "b" "b": the dense placement wins (§7.3.4)
    assert gotoh_align(list("abcdebb"), list("bb")) == ([5, 6], 1.0)


@pytest.mark.parametrize("gap_extend", [0.0, 0.3, 1.0])
def test_gotoh_matches_reference_dp(gap_extend):
    rng = random.Random(7)
    for _ in range(120):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        positions, score = gotoh_align(a, b, gap_extend=gap_extend)
        if a or b:
            assert score == pytest.approx(_reference_score(a, b, 1.0, gap_extend))
            assert _score_of(a, b, positions, 1.0, gap_extend) == pytest.approx(score)
        used = [p for p in positions if p >= 0]
        assert used == sorted(used) and len(set(used)) == len(used)


# --------------------------------------------------------------------------- decode loops
class HashStepper:
    """A deterministic fake decoder: the logits after a prefix depend only on the
    prefix (hash), so any correct cache handling gives exactly the same numbers."""

    def __init__(self, vocab=12, columns=None, bias=None):
        self.vocab = vocab
        self.columns = columns
        self.col_of = column_index(columns, vocab)
        self.bias = bias or {}
        self.fed = [[]]
        self.n_calls = 0

    def reset(self):
        self.fed = [[]]

    def _row(self, prefix):
        digest = hashlib.sha256(repr(prefix).encode()).digest()
        row = numpy.frombuffer(digest, dtype=numpy.uint8)[: self.vocab].astype("float32") / 25.0
        for tok, add in self.bias.items():
            row[tok] += add
        if self.columns is not None:
            row = row[self.columns]
        return row

    def step(self, ids):
        import torch

        ids = ids.tolist() if hasattr(ids, "tolist") else [list(ids)]
        self.n_calls += 1
        out = []
        first = list(self.fed[0])  # rows beyond the fed ones start from row 0's history
        for b, row in enumerate(ids):
            hist = self.fed[b] if b < len(self.fed) else list(first)
            rows = []
            for tok in row:
                hist = hist + [tok]
                rows.append(self._row(tuple(hist)))
            if b < len(self.fed):
                self.fed[b] = hist
            else:
                self.fed.append(hist)
            out.append(rows)
        return torch.tensor(numpy.array(out))

    def step_numpy(self, ids):
        return self.step(ids)[0].numpy()

    def crop(self, length):
        self.fed = [f[:length] for f in self.fed]

    def reorder(self, index):
        self.fed = [list(self.fed[i]) for i in index]

    def step_ragged(self, ids, lengths, fed=None):
        """Row r continues after its first ``lengths[r]`` fed tokens."""
        self.fed = [list(self.fed[b] if b < len(self.fed) else self.fed[0])[:n]
                    for b, n in enumerate(lengths)]
        return self.step(ids)

    def crop_rows(self, lengths):
        self.fed = [f[:n] for f, n in zip(self.fed, lengths)]


class CopyOrMark(ConstraintState):
    """Copy ``source`` token by token; before each token a marker 0 may be written
    (at most once in a row). Ends with token 1."""

    def __init__(self, source, pos=0, marked=False, done=False):
        self.source, self.pos, self.marked, self.done = source, pos, marked, done

    @property
    def finished(self):
        return self.done

    def allowed(self):
        if self.done:
            return {}
        if self.pos == len(self.source):
            return {1: 1}
        res = {self.source[self.pos]: self.source[self.pos]}
        if not self.marked:
            res[0] = 0
        return res

    def advance(self, tok):
        if tok == 1 and self.pos == len(self.source):
            return CopyOrMark(self.source, self.pos, False, True)
        if tok == 0 and not self.marked and self.pos < len(self.source) and tok != self.source[self.pos]:
            return CopyOrMark(self.source, self.pos, True)
        return CopyOrMark(self.source, self.pos + 1, False)

    def proposal(self, n):
        return list(self.source[self.pos: self.pos + n])


def test_sequence_state_forces_output():
    out = greedy_decode(HashStepper(), SequenceState([5, 3, 9]), [2], 10)
    assert out.tokens == [5, 3, 9] and out.finished


@pytest.mark.parametrize("bias", [{}, {0: 0.4}, {0: 5.0}])
@pytest.mark.parametrize("n_propose", [1, 3, 8])
def test_speculative_equals_greedy(bias, n_propose):
    source = [2 + (i * 7) % 9 for i in range(40)]
    greedy = greedy_decode(HashStepper(bias=bias), CopyOrMark(source), [11], 200)
    spec = speculative_decode(HashStepper(bias=bias), CopyOrMark(source), [11], 200,
                              n_propose=n_propose)
    assert spec.tokens == greedy.tokens
    assert spec.score == pytest.approx(greedy.score)
    assert [t for t in spec.tokens if t not in (0, 1)] == source
    assert spec.n_forward <= greedy.n_forward
    if not bias:
        assert spec.n_accepted > 0


def test_speculative_respects_max_tokens():
    source = list(range(2, 11))
    for limit in (1, 4, 7):
        g = greedy_decode(HashStepper(), CopyOrMark(source), [11], limit)
        s = speculative_decode(HashStepper(), CopyOrMark(source), [11], limit, n_propose=4)
        assert g.tokens == s.tokens and len(s.tokens) == limit and not s.finished


def test_restricted_columns_give_the_same_choice():
    source = [2, 3, 4, 5]
    full = greedy_decode(HashStepper(), CopyOrMark(source), [11], 50)
    cols = [0, 1, 2, 3, 4, 5]
    restricted = greedy_decode(HashStepper(columns=cols), CopyOrMark(source), [11], 50)
    assert restricted.tokens == full.tokens


def test_beam_search_finds_the_best_sequence():
    """Exhaustive check on a short grammar: beam with a wide beam returns the
    sequence of highest length-normalised log-probability."""
    import torch

    source = [2, 3, 4]
    stepper = HashStepper()
    best = beam_decode(stepper, CopyOrMark(source), [11], 20, beam_size=16, length_penalty=1.0)
    assert best.finished and [t for t in best.tokens if t not in (0, 1)] == source

    def all_sequences(state, prefix):
        if state.finished:
            yield prefix
            return
        for tok in state.allowed():
            yield from all_sequences(state.advance(tok), prefix + [tok])

    def logprob(seq):
        total, hist = 0.0, [11]
        for tok in seq:
            row = torch.log_softmax(torch.tensor(stepper._row(tuple(hist))), -1)
            total += float(row[tok])
            hist.append(tok)
        return total / len(seq)

    seqs = list(all_sequences(CopyOrMark(source), []))
    assert len(seqs) == 8
    assert max(seqs, key=logprob) == best.tokens
    one = beam_decode(HashStepper(), CopyOrMark(source), [11], 20, beam_size=1)
    assert [t for t in one.tokens if t not in (0, 1)] == source


def test_crop_cache_on_legacy_tuples():
    import torch

    layer = (torch.zeros(1, 2, 5, 3), torch.zeros(1, 2, 5, 3), torch.ones(1, 2, 7, 3), torch.ones(1, 2, 7, 3))
    cropped = crop_cache((layer, layer), 3)
    assert cropped[0][0].shape[2] == 3 and cropped[1][1].shape[2] == 3
    assert cropped[0][2].shape[2] == 7  # cross-attention keys stay


def test_logits_processor_with_generate(tmp_path):
    """The HF adapter constrains model.generate to the grammar (greedy and beams)."""
    import torch
    from transformers import EncoderDecoderModel

    from tests.models.tiny_seq2seq import build_tiny_seq2seq

    torch.manual_seed(0)
    path = build_tiny_seq2seq(tmp_path / "tiny", hidden=16, layers=1)
    model = EncoderDecoderModel.from_pretrained(str(path))
    target = [1996, 3899, 2001, 2182]
    inputs = torch.tensor([[101, 1996, 3899, 102]])
    for beams in (1, 3):
        proc = ConstrainedLogitsProcessor([SequenceState(target + [102])], num_beams=beams,
                                          prompt_length=1, pad_token_id=0)
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), logits_processor=[proc],
                             num_beams=beams, max_new_tokens=8, do_sample=False)
        assert out[0, 1:6].tolist() == target + [102]


def test_biased_stepper_shifts_choices_and_keeps_speculative_exact():
    source = [2 + (i * 7) % 9 for i in range(30)]
    plain = greedy_decode(HashStepper(), CopyOrMark(source), [11], 200)
    biased = greedy_decode(BiasedStepper(HashStepper(), {0: 3.0}), CopyOrMark(source), [11], 200)
    assert biased.tokens.count(0) > plain.tokens.count(0)
    spec = speculative_decode(BiasedStepper(HashStepper(), {0: 3.0}), CopyOrMark(source), [11], 200,
                              n_propose=5)
    assert spec.tokens == biased.tokens
    cols = [0, 1] + list(range(2, 12))
    restricted = greedy_decode(BiasedStepper(HashStepper(columns=cols), {0: 3.0}), CopyOrMark(source),
                               [11], 200)
    assert restricted.tokens == biased.tokens


@pytest.mark.parametrize("limit", [200, 9])
def test_batched_greedy_equals_greedy_row_by_row(limit):
    """Rows of different lengths finish at different steps and leave the batch
    (reorder); every row's output is greedy decoding of that row alone."""
    sources = [[2 + (i * k) % 9 for i in range(n)] for k, n in ((7, 30), (5, 3), (3, 17), (2, 0))]
    stepper = HashStepper(bias={0: 0.4})
    outs = batched_greedy_decode(stepper, [CopyOrMark(s) for s in sources], [11], limit)
    assert len(outs) == len(sources)
    for source, out in zip(sources, outs):
        alone = greedy_decode(HashStepper(bias={0: 0.4}), CopyOrMark(source), [11], limit)
        assert out.tokens == alone.tokens and out.finished == alone.finished
        assert out.score == pytest.approx(alone.score)
        assert out.n_forward == len(out.tokens)
    # one forward pass per step for the whole batch, not one per row
    assert stepper.n_calls == max(len(o.tokens) for o in outs)
    assert any(o.tokens.count(0) for o in outs)  # markers were chosen, not only copies


@pytest.mark.parametrize("n_propose", [1, 4, 8])
@pytest.mark.parametrize("limit", [200, 9])
def test_batched_speculative_equals_greedy_row_by_row(n_propose, limit):
    """Rows accept different numbers of proposed tokens (ragged lengths) and finish
    at different passes; each row's output is greedy decoding of that row alone."""
    sources = [[2 + (i * k) % 9 for i in range(n)] for k, n in ((7, 30), (5, 3), (3, 17), (2, 0))]
    stepper = HashStepper(bias={0: 0.4})
    outs = batched_greedy_decode(stepper, [CopyOrMark(s) for s in sources], [11], limit,
                                 n_propose=n_propose)
    for source, out in zip(sources, outs):
        alone = greedy_decode(HashStepper(bias={0: 0.4}), CopyOrMark(source), [11], limit)
        assert out.tokens == alone.tokens and out.finished == alone.finished
        assert out.score == pytest.approx(alone.score)
        assert out.n_forward <= len(out.tokens)
    if n_propose > 1 and limit == 200:
        assert sum(o.n_accepted for o in outs) > 0
        assert stepper.n_calls < max(len(o.tokens) for o in outs)
