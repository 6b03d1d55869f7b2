"""INSGENEL markup, grammar, names, decision spans and the model wrapper: every
constrained output parses and names only KB entities, from fake scorers and from
untrained tiny seq2seq / causal models."""
import hashlib
import random
from types import SimpleNamespace

import numpy
import pytest
import spacy

from spacy_kbnlp.core.decoding import CompactPrefixTrie, greedy_decode, speculative_decode
from spacy_kbnlp.kb.records import EntityRecord
from spacy_kbnlp.models.insgenel import (MARKUP, ELSettings, InsGenELModel, MarkupGrammar,
                                        MarkupIds, NameTable, canonical_names,
                                        decision_candidates, decision_spans, linearize,
                                        link_score, render_markup, segments, word_bounds)
from spacy_kbnlp.models.seq2seq import source_units

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IDS = MarkupIds(m_open=1, m_close=2, e_close=3, sep=4)
VOCAB = 60


class RandomStepper:
    """Logits that depend only on the prefix (hash-seeded), with a bias per token."""

    def __init__(self, vocab=VOCAB, bias=None):
        self.vocab = vocab
        self.col_of = None
        self.bias = bias or {}
        self.fed = []
        self.n_calls = 0

    def reset(self):
        self.fed = []

    def _row(self, prefix):
        seed = int.from_bytes(hashlib.sha256(repr(prefix).encode()).digest()[:4], "little")
        row = numpy.random.RandomState(seed).randn(self.vocab).astype("float32")
        for tok, add in self.bias.items():
            row[tok] += add
        return row

    def step_numpy(self, ids):
        self.n_calls += 1
        rows = []
        for tok in ids:
            self.fed.append(tok)
            rows.append(self._row(tuple(self.fed)))
        return numpy.array(rows)

    def crop(self, length):
        self.fed = self.fed[:length]


def random_case(rng):
    n = rng.randint(1, 30)
    units = [rng.randint(10, VOCAB - 1) for _ in range(n)]
    words = []
    w = 0
    for k in range(n):
        if k and rng.random() < 0.6:
            w += 1
        words.append(w)
    units_obj = SimpleNamespace(word=words)
    starts, ends = word_bounds(units_obj, 0, n)
    names = [tuple(rng.randint(10, VOCAB - 1) for _ in range(rng.randint(1, 4)))
             for _ in range(rng.randint(1, 8))]
    rows = [rng.randint(0, 4) for _ in names]
    return units, starts, ends, names, rows


def strip_markup(tokens, links):
    """The copied source: tokens minus markup and names."""
    out, skip_until = [], -1
    name_spans = [(l[3], l[4]) for l in links]
    inside_name = set()
    for a, b in name_spans:
        k = a
        while tokens[k] != IDS.m_close:
            k += 1
        inside_name.update(range(k, b + 1))
    for i, t in enumerate(tokens):
        if t in (IDS.m_open,) or i in inside_name:
            continue
        out.append(t)
    return out


def check_output(tokens, grammar, units, starts, ends, names, rows):
    links = grammar.parse(tokens)  # strict: raises on any disallowed token
    state = grammar.initial()
    for tok in tokens:  # the array view of the choices equals the dict view
        toks, cols = state.allowed_arrays()
        assert dict(zip(toks.tolist(), cols.tolist())) == state.allowed()
        state = state.advance(tok)
    assert strip_markup(tokens, links) == units
    prev_end = 0
    for s, e, values, a, b in links:
        assert starts[s] and ends[e - 1] and s >= prev_end and e > s
        prev_end = e
        written = tuple(tokens[a + 2 + e - s: b])
        assert tokens[a] == IDS.m_open and tokens[b] == IDS.e_close
        assert written in names  # only KB names
        assert set(values) == {r for n, r in zip(names, rows) if n == written}
    return links


@pytest.mark.parametrize("bias", [0.0, 1.5, 4.0])
def test_random_decoding_always_parses_and_names_only_kb_entities(bias):
    rng = random.Random(int(bias * 10))
    n_links = 0
    for _ in range(60):
        units, starts, ends, names, rows = random_case(rng)
        trie = CompactPrefixTrie.build(names, rows)
        copy = rng.random() < 0.5
        ids = MarkupIds(1, 2, 3, 4, copy=5) if copy else IDS
        g = MarkupGrammar(units, starts, ends, ids, trie, max_mention=4, copy=copy)
        stepper = RandomStepper(bias={IDS.m_open: bias, IDS.m_close: bias, IDS.e_close: bias})
        out = greedy_decode(stepper, g.initial(), [0], 400)
        assert out.finished
        n_links += len(check_output(out.tokens, g, units, starts, ends, names, rows))
        spec = speculative_decode(RandomStepper(bias={IDS.m_open: bias, IDS.m_close: bias,
                                                      IDS.e_close: bias}),
                                  g.initial(), [0], 400, n_propose=4)
        assert spec.tokens == out.tokens
    if bias >= 1.5:
        assert n_links > 30


def test_length_budget_is_respected():
    rng = random.Random(5)
    for _ in range(40):
        units, starts, ends, names, rows = random_case(rng)
        trie = CompactPrefixTrie.build(names, rows)
        limit = len(units) + rng.randint(0, 12)
        g = MarkupGrammar(units, starts, ends, IDS, trie, max_length=limit)
        out = greedy_decode(RandomStepper(bias={1: 6.0, 2: 6.0, 3: 6.0}), g.initial(), [0], limit)
        assert out.finished and len(out.tokens) <= limit
        check_output(out.tokens, g, units, starts, ends, names, rows)


def test_linearize_parse_round_trip():
    units = [20, 21, 22, 23, 24, 25]
    starts = [True, True, False, True, True, True]
    ends = [True, False, True, True, True, True]
    names = [(40, 41), (40,), (42,)]
    trie = CompactPrefixTrie.build(names, [7, 8, 9])
    g = MarkupGrammar(units, starts, ends, IDS, trie)
    mentions = [(1, 3, (40, 41)), (3, 4, (40,)), (5, 6, (42,))]
    tokens, labels = linearize(units, mentions, IDS)
    assert tokens == [20, 1, 21, 22, 2, 40, 41, 3, 1, 23, 2, 40, 3, 24, 1, 25, 2, 42, 3]
    assert labels == tokens
    ids = MarkupIds(1, 2, 3, 4, copy=5)
    copied, labels = linearize(units, mentions, ids, copy=True)
    assert copied == tokens
    assert labels == [5, 1, 5, 5, 2, 40, 41, 3, 1, 5, 2, 40, 3, 5, 1, 5, 2, 42, 3]
    # under copy action the grammar scores copied tokens by the copy symbol
    gc = MarkupGrammar(units, starts, ends, ids, trie, copy=True)
    assert gc.initial().allowed() == {20: 5, 1: 1}
    assert [l[:3] for l in gc.parse(tokens)] == [l[:3] for l in g.parse(tokens)]
    links = g.parse(tokens)
    assert [(s, e, v) for s, e, v, _, _ in links] == [(1, 3, (7,)), (3, 4, (8,)), (5, 6, (9,))]
    # a mention may not end inside a word, nor name something outside the trie
    with pytest.raises(ValueError, match="KBE357"):
        g.parse([20, 1, 21, 2])
    with pytest.raises(ValueError, match="KBE357"):
        g.parse([20, 1, 21, 22, 2, 41])
    assert g.parse([20, 1, 21, 22, 2, 41], strict=False) == []


def test_decision_candidates_and_grammar_restricted_to_them():
    units = [20, 21, 22, 23, 24, 21, 22]
    starts = [True] * 7
    ends = [True] * 7
    surface = CompactPrefixTrie.build([(21, 22), (21,), (24,)], [5, 6, 7])
    cands = decision_candidates(units, starts, ends, surface)
    assert cands == {(1, 3): (5,), (1, 2): (6,), (4, 5): (7,), (5, 7): (5,), (5, 6): (6,)}
    assert decision_spans(cands) == [(1, 3), (4, 5), (5, 7)]
    names = {5: (50,), 6: (51, 52), 7: (53,)}
    by_start = {}
    for (s, e), rows in cands.items():
        by_start.setdefault(s, {})[e] = CompactPrefixTrie.build([names[r] for r in rows], rows)
    g = MarkupGrammar(units, starts, ends, IDS, candidates=by_start)
    # outside decision spans only copying is allowed
    state = g.initial()
    assert state.allowed() == {20: 20}
    state = state.advance(20)
    assert set(state.allowed()) == {21, IDS.m_open}
    state = state.advance(IDS.m_open).advance(21)
    assert set(state.allowed()) == {22, IDS.m_close}  # ends 2 and 3 are both candidates
    state = state.advance(IDS.m_close)
    assert set(state.allowed()) == {51}  # only the names of that span's entities
    rng = random.Random(0)
    full_calls = skip_calls = 0
    for trial in range(20):
        bias = {1: rng.uniform(-2, 4), 2: rng.uniform(-2, 4), 3: 2.0}
        full = greedy_decode(RandomStepper(bias=bias), g.initial(), [0], 100)
        skip = greedy_decode(RandomStepper(bias=bias), g.initial(), [0], 100, skip_forced=True)
        assert skip.tokens == full.tokens
        full_calls += full.n_forward
        skip_calls += skip.n_forward
        for s, e, values, a, b in g.parse(skip.tokens):
            assert (s, e) in cands and set(values) <= set(cands[(s, e)])
    assert skip_calls < full_calls


def test_scores_reveal_a_name_the_model_did_not_want():
    """A model that wants to write a name missing from the KB is forced onto a KB name,
    but the link's probability under the model shows it; a wanted name scores high."""
    units = [20, 21, 22]
    starts = ends = [True, True, True]
    trie = CompactPrefixTrie.build([(40, 41), (42,)], [0, 1])
    g = MarkupGrammar(units, starts, ends, IDS, trie)

    class Scripted(RandomStepper):
        """Puts almost all probability on the next token of ``wanted``."""

        def __init__(self, wanted):
            super().__init__()
            self.wanted = wanted

        def _row(self, prefix):
            row = numpy.zeros(self.vocab, dtype="float32")
            k = len(prefix) - 1
            if tuple(prefix[1:]) == tuple(self.wanted[:k]) and k < len(self.wanted):
                row[self.wanted[k]] = 12.0
            return row

    from spacy_kbnlp.core.decoding import LogProbStepper

    known = [20, 1, 21, 2, 42, 3, 22]
    out = greedy_decode(LogProbStepper(Scripted(known)), g.initial(), [0], 50)
    assert out.tokens == known
    (link,) = g.parse(out.tokens)
    assert link_score(link, out.token_scores, out.allowed_mass) > 0.99
    unknown = [20, 1, 21, 2, 40, 44, 3, 22]  # wants (40, 44): not a KB name
    out = greedy_decode(LogProbStepper(Scripted(unknown)), g.initial(), [0], 50)
    (link,) = g.parse(out.tokens)
    assert out.tokens[:6] == [20, 1, 21, 2, 40, 41]  # forced onto the KB name ...
    assert link_score(link, out.token_scores, out.allowed_mass) < 1e-3  # ... tiny probability


def test_canonical_names_are_unique():
    recs = [EntityRecord("Q1", "Paris", "capital of France"),
            EntityRecord("Q2", "Paris", "city in Texas"),
            EntityRecord("Q3", "paris", "capital of France"),
            EntityRecord("Q4", "Berlin", None),
            EntityRecord("Q5", "", None)]
    names = canonical_names(recs)
    assert names == ["Paris (Q1)", "Paris (city in Texas)", "paris (Q3)", "Berlin", "Q5"]
    assert len({n.lower() for n in names}) == len(names)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from spacy_kbnlp.encoders.hf import resolve_model_path
    from spacy_kbnlp.models.insgenel import add_markup_tokens

    tok = AutoTokenizer.from_pretrained(resolve_model_path(None), local_files_only=True)
    add_markup_tokens(tok)
    return tok


def test_name_table_with_odd_unicode(tokenizer):
    recs = [EntityRecord("Q1", "Zürich", "city", ["Zurich", "Zürich", "  "]),
            EntityRecord("Q2", "東京", "capital of Japan", ["Tōkyō"]),
            EntityRecord("Q3", "🙂", "emoji"),
            EntityRecord("Q4", "\u200b\u200b", "zero width only", ["ZW entity"]),
            EntityRecord("Q5", "A <]> B [SEP] <{>", "markup inside"),
            EntityRecord("Q6", "e\u0301te\u0301 ﬁ", "combining marks and ligature")]
    table = NameTable.from_records(recs).build(tokenizer, spacy.blank("en").tokenizer)
    markup = {tokenizer.convert_tokens_to_ids(s) for s in MARKUP}
    markup.update(tokenizer.all_special_ids)
    markup.discard(tokenizer.unk_token_id)
    assert all(not (set(q) & markup) for q in table.seqs)
    assert "\u200b\u200b" in table.skipped  # no token: cannot be generated
    trie = table.trie()
    assert trie.lookup(table.canonical[0]) == (0,)
    zw = table.canonical[3]
    assert zw and trie.lookup(zw) == (3,)  # reachable through its alias
    assert table.resolve(trie.lookup(table.canonical[1]), table.canonical[1]) == [1]
    assert len(trie) == len(table.seqs)


def test_segments_cut_between_tokens(tokenizer):
    words = ["Antidisestablishmentarianism", "is", "a", "word", ".", "Zürich", "sits",
             "on", "a", "lake"] * 3
    units = source_units(words, tokenizer)
    for length in (3, 5, 8, 64):
        segs = segments(units, length)
        assert segs[0][0] == 0 and segs[-1][1] == len(units.ids)
        assert all(b - a <= length and a < b for a, b in segs)
        assert all(x[1] == y[0] for x, y in zip(segs, segs[1:]))
        for a, b in segs:
            if b < len(units.ids) and units.word[b] == units.word[b - 1]:
                # only a token longer than the window is cut
                w = units.word[b]
                assert units.last[w] - units.first[w] + 1 > length and units.word[a] == w
        if length == 5:
            assert any(units.word[b] == units.word[b - 1] for _, b in segs[:-1])


KB = [EntityRecord("Q90", "Paris", "capital of France", ["City of Light"]),
      EntityRecord("Q830149", "Paris", "city in Texas", ["Paris, Texas"]),
      EntityRecord("Q64", "Berlin", "capital of Germany"),
      EntityRecord("Q142", "France", "country in Europe"),
      EntityRecord("Q567", "Angela Merkel", "German politician", ["Merkel"])]
TEXT = ("Angela Merkel flew from Berlin to Paris , the capital of France , on Monday . "
        "In Paris , Texas , nobody noticed .")


def _biased(model, add=3.0):
    """Make an untrained model write markup often (so that names get generated)."""
    import torch

    lin = model.model.get_output_embeddings()
    if lin.bias is None:
        lin.bias = torch.nn.Parameter(torch.zeros(lin.weight.shape[0]))
    with torch.no_grad():
        for t in (model.ids.m_open, model.ids.m_close, model.ids.e_close):
            lin.bias[t] += add
    return model


def _build_causal(path, tokenizer):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32,
                                       n_layer=2, n_head=2))
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_untrained_tiny_model_output_parses(kind, tmp_path, tokenizer):
    from tests.models.tiny_seq2seq import build_tiny_seq2seq

    if kind == "seq2seq":
        path = build_tiny_seq2seq(tmp_path / "m")
    else:
        path = _build_causal(tmp_path / "m", tokenizer)
    model = _biased(InsGenELModel.load(str(path), ELSettings(segment_length=24)))
    assert model.causal == (kind == "causal")
    nlp = spacy.blank("en")
    table = NameTable.from_records(KB).build(model.tokenizer, nlp.tokenizer)
    doc = nlp(TEXT)
    units = model.doc_units(doc)
    n_links = 0
    for a, b in segments(units, 24):
        starts, ends = word_bounds(units, a, b)
        g = model.grammar(units.ids[a:b], starts, ends, table.trie())
        links, out = model.decode(g, n_propose=4)
        assert out.finished and len(out.token_scores) == len(out.tokens)
        for s, e, values, x, y in g.parse(out.tokens):
            written = tuple(out.tokens[x + 2 + e - s: y])
            assert written in table.seqs and values
            assert 0.0 < link_score((s, e, values, x, y), out.token_scores,
                                    out.allowed_mass) <= 1.0
            n_links += 1
        copied = [t for t in out.tokens if t not in (model.ids.m_open,)]
        assert len(copied) >= b - a
        text = render_markup(out.tokens, model.tokenizer, model.ids)
        assert text.count("{") == text.count("}[") == len(links)
    assert n_links > 0


def test_training_item_loss_decreases(tmp_path):
    import torch

    from tests.models.tiny_seq2seq import build_tiny_seq2seq

    model = InsGenELModel.load(str(build_tiny_seq2seq(tmp_path / "m", hidden=32)),
                               ELSettings(segment_length=32))
    nlp = spacy.blank("en")
    table = NameTable.from_records(KB).build(model.tokenizer, nlp.tokenizer)
    doc = nlp("Angela Merkel visited Paris .")
    units = model.doc_units(doc)
    item = model.training_item(units.ids, [(0, 4, table.canonical[4]), (5, 6, table.canonical[0])])
    ids = model.ids
    assert item["target"][:1] == [ids.m_open] and item["target"].count(ids.e_close) == 2
    # copy action (default): copied tokens are labelled with the copy symbol
    assert [l for t, l in zip(item["target"], item["labels"]) if t != l] == \
        [ids.copy] * (len(units.ids))
    opt = torch.optim.AdamW(model.model.parameters(), lr=1e-2)
    model.model.train()
    losses = []
    for _ in range(30):
        loss = model.loss([item])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
