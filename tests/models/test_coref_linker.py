"""The mention-pair linker of seq2seq_coref's ``relink`` (models.coref_linker)."""
import json
import math
from collections import Counter
from pathlib import Path

import numpy
import pytest
from spacy.lang.en import English

from spacy_kbnlp.core.bundled import bundled_ref, resolve_bundled
from spacy_kbnlp.models.coref_linker import (FEATURES, SPEC_FILE, WEIGHTS_FILE, PairLinker,
                                             best_first, fit_pair_linker, mention_kind,
                                             pair_features, pair_labels)

WORDS = "Mary met John . She smiled at him and he left the house . Mary waved .".split()
MARY, JOHN, SHE, HIM, HE, HOUSE, MARY2 = (0, 1), (2, 3), (4, 5), (7, 8), (9, 10), (11, 13), (14, 15)


def col(name):
    return FEATURES.index(name)


def test_mention_kind():
    assert [mention_kind(w.split()) for w in ("he", "It", "This", "Mary Shelley", "the house",
                                               "The house")] == ["3m", "3n", "dem", "name", "np", "np"]


def test_pair_features_exact():
    # one segment: the decoder put Mary+She and John+him+he together; the house alone
    segments = [[[MARY, SHE], [JOHN, HIM, HE], [HOUSE]]]
    merged = [[MARY, SHE, MARY2], [JOHN, HIM, HE], [HOUSE]]
    mentions, pairs, X = pair_features(segments, merged, WORDS, max_distance=400)
    assert mentions == [MARY, JOHN, SHE, HIM, HE, HOUSE, MARY2]
    assert X.shape == (len(pairs), len(FEATURES)) and len(pairs) == 21  # every earlier mention
    row = X[pairs.index((0, 2))]  # Mary <- She
    assert row[col("co_cluster_rate")] == 1.0 and row[col("seen_together")] == 1.0
    assert row[col("merged_together")] == 1.0 and row[col("same_text")] == 0.0
    assert row[col("pronoun_after_noun")] == 1.0 and row[col("mention_3f")] == 1.0
    assert row[col("antecedent_name")] == 1.0
    assert math.isclose(row[col("log_distance")], math.log1p(4), rel_tol=1e-6)
    assert math.isclose(row[col("log_sentence_ends")], math.log1p(1), rel_tol=1e-6)
    row = X[pairs.index((3, 4))]  # him <- he: same segment cluster, same pronoun class
    assert row[col("same_pronoun_class")] == 1.0 and row[col("same_sentence")] == 1.0
    row = X[pairs.index((2, 4))]  # She <- he: seen together, never clustered, classes conflict
    assert row[col("co_cluster_rate")] == 0.0 and row[col("seen_together")] == 1.0
    assert row[col("pronoun_class_conflict")] == 1.0
    row = X[pairs.index((0, 6))]  # Mary <- Mary (2nd): only the merge (a name match) joined them
    assert row[col("seen_together")] == 0.0 and row[col("merged_together")] == 1.0
    assert row[col("same_text")] == 1.0 and row[col("shared_name_word")] == 1.0
    assert pair_labels(mentions, [(0, 2), (0, 1), (1, 3)], [[MARY, SHE], [JOHN, HIM]]).tolist() == [1, 0, 1]


def test_candidates_far_back_only_through_the_merge_or_a_name():
    words = ["Ann", "met", "Bob"] + ["x"] * 50 + ["Ann", "and", "it"]
    ann, bob, ann2, it = (0, 1), (2, 3), (53, 54), (55, 56)
    mentions, pairs, _ = pair_features([[[ann], [bob]], [[ann2], [it]]], [[ann], [bob], [ann2], [it]],
                                       words, max_distance=10)
    # Bob is too far from the second Ann and from "it"; the first Ann shares a name with the second
    assert sorted(pairs) == [(0, 1), (0, 2), (2, 3)]
    assert mentions == [ann, bob, ann2, it]
    mentions, pairs, _ = pair_features([[[ann], [bob]], [[ann2], [it]]], [[ann, ann2], [bob, it]],
                                       words, max_distance=10, max_far=0)
    assert sorted(pairs) == [(0, 1), (2, 3)]


def test_best_first_clusters():
    mentions = [(0, 1), (2, 3), (4, 5), (6, 7)]
    pairs = [(0, 1), (0, 2), (1, 2), (0, 3), (2, 3)]
    probs = [0.2, 0.7, 0.6, 0.3, 0.3]
    # 2 -> 0 (0.7 beats 0.6); 3: 0.3 is not over the threshold 0.3; 1 alone
    assert best_first(mentions, pairs, probs, 0.3) == [[(0, 1), (4, 5)], [(2, 3)], [(6, 7)]]
    assert best_first(mentions, pairs, probs, 0.25) == [[(0, 1), (4, 5), (6, 7)], [(2, 3)]]
    assert best_first(mentions, [], [], 0.5) == [[m] for m in mentions]


def test_best_first_keeps_entities_consistent():
    mentions = [MARY, JOHN, SHE, HIM, HE, MARY2]
    pairs = [(0, 2), (1, 2), (2, 3), (1, 3), (3, 4), (2, 4), (0, 5), (1, 5)]
    probs = [0.6, 0.4, 0.3, 0.2, 0.9, 0.95, 0.5, 0.7]
    # without words: him -> She (0.3) chains Mary, She, him, he; Mary (2nd) -> John (0.7)
    assert best_first(mentions, pairs, probs, 0.1) == [[MARY, SHE, HIM, HE], [JOHN, MARY2]]
    # with words: him may not join {Mary, She} (her class is not his): it takes John;
    # he may not join She's cluster: him's; the second Mary may not join John's: Mary's
    assert best_first(mentions, pairs, probs, 0.1, WORDS) == [[MARY, SHE, MARY2], [JOHN, HIM, HE]]


def _doc(decoder_right: bool):
    """A doc whose decoder clusters are right (or swap he/she), with its gold."""
    gold = [[MARY, SHE, MARY2], [JOHN, HIM, HE]]
    seg = [[MARY, SHE], [JOHN, HIM, HE]] if decoder_right else [[MARY, HE], [JOHN, HIM, SHE]]
    merged = [[MARY, SHE, MARY2], [JOHN, HIM, HE]] if decoder_right else [[MARY, HE, MARY2], [JOHN, HIM, SHE]]
    return [seg], merged, WORDS, gold


def test_fit_link_and_round_trip(tmp_path):
    docs = [_doc(True)] * 3 + [_doc(False)]
    linker = fit_pair_linker(docs, l2=0.1, trained_on="four toy docs")
    segs, merged, words, gold = _doc(True)
    assert [c for c in linker.link(segs, merged, words, 0.5) if len(c) > 1] == gold
    linker.to_disk(tmp_path / "linker")
    again = PairLinker.from_disk(tmp_path / "linker")
    assert again.trained_on == "four toy docs" and again.max_distance == linker.max_distance
    _, _, X = pair_features(segs, merged, words)
    assert numpy.array_equal(again.probabilities(X), linker.probabilities(X))
    data = bytearray((tmp_path / "linker" / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1
    (tmp_path / "linker" / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="KBE159"):
        PairLinker.from_disk(tmp_path / "linker")


def test_hidden_layer_and_logistic_fits(tmp_path):
    """Both forms learn the toy docs; the hidden layer's probabilities follow its
    weights, survive a round trip, and depend on the seed only; a v1 (logistic)
    linker still loads."""
    import json

    docs = [_doc(True)] * 3 + [_doc(False)]
    segs, merged, words, gold = _doc(True)
    _, _, X = pair_features(segs, merged, words)
    logistic = fit_pair_linker(docs, hidden=0, l2=0.1)
    hidden = fit_pair_linker(docs, hidden=8, epochs=20, seed=3)
    assert logistic.units == 0 and logistic.weights.shape == (len(FEATURES),)
    assert hidden.units == 8 and hidden.weights.shape == (9,)
    for linker in (logistic, hidden):
        assert [c for c in linker.link(segs, merged, words, 0.5) if len(c) > 1] == gold
    h = hidden.hidden
    z = numpy.maximum(((X - h["mean"]) / h["scale"]) @ h["weight"].T + h["bias"], 0)
    expect = 1 / (1 + numpy.exp(-(z @ hidden.weights[1:] + hidden.weights[0])))
    assert numpy.allclose(hidden.probabilities(X), expect, atol=1e-6)
    again = fit_pair_linker(docs, hidden=8, epochs=20, seed=3)
    assert numpy.array_equal(again.probabilities(X), hidden.probabilities(X))
    other = fit_pair_linker(docs, hidden=8, epochs=20, seed=4)
    assert not numpy.array_equal(other.probabilities(X), hidden.probabilities(X))
    hidden.to_disk(tmp_path / "mlp")
    spec = json.loads((tmp_path / "mlp" / SPEC_FILE).read_text())
    assert spec["format"].endswith(".v2") and spec["hidden_units"] == 8
    loaded = PairLinker.from_disk(tmp_path / "mlp")
    assert loaded.units == 8 and numpy.array_equal(loaded.probabilities(X), hidden.probabilities(X))
    # a linker written before the hidden layer existed (format v1, weights only)
    logistic.to_disk(tmp_path / "v1")
    spec = json.loads((tmp_path / "v1" / SPEC_FILE).read_text())
    spec["format"] = "spacy_kbnlp.coref_pair_linker.v1"
    del spec["hidden_units"]
    (tmp_path / "v1" / SPEC_FILE).write_text(json.dumps(spec))
    old = PairLinker.from_disk(tmp_path / "v1")
    assert old.units == 0 and numpy.array_equal(old.probabilities(X), logistic.probabilities(X))


def test_bad_inputs_are_clear_errors(tmp_path):
    segs, merged, words, _ = _doc(True)
    with pytest.raises(ValueError, match="KBE266.*need both"):
        fit_pair_linker([(segs, merged, words, [])])
    with pytest.raises(ValueError, match="KBE266.*weights for"):
        PairLinker([0.0, 1.0])
    with pytest.raises(ValueError, match="KBE266.*no linker.json"):
        PairLinker.from_disk(tmp_path)
    with pytest.raises(ValueError, match="KBE266.*hidden = -1"):
        fit_pair_linker([(segs, merged, words, [])], hidden=-1)
    layer = {"mean": numpy.zeros(len(FEATURES)), "scale": numpy.ones(len(FEATURES)),
             "weight": numpy.zeros((4, len(FEATURES))), "bias": numpy.zeros(4)}
    assert PairLinker(numpy.zeros(5), hidden=layer).units == 4
    with pytest.raises(ValueError, match="KBE266.*hidden layer with 4 units.*got 4 weights"):
        PairLinker(numpy.zeros(4), hidden=layer)
    with pytest.raises(ValueError, match="KBE266.*wrong: scale"):
        PairLinker(numpy.zeros(5), hidden=dict(layer, scale=numpy.ones(3)))


def test_bundled_linker_loads_checked():
    path = resolve_bundled(bundled_ref("seq2seq_coref_linker"))
    assert sorted(p.name for p in Path(path).iterdir() if p.name != "linker_fit.json") == sorted(
        [SPEC_FILE, WEIGHTS_FILE])
    linker = PairLinker.from_disk(path)  # sha256 of the weights checked against linker.json
    assert linker.units == 32 and linker.weights.shape == (33,)
    # what the bundled linker learned, on a toy doc: a pronoun the decoder put with the
    # previous one of its class links; a repeated name links (its best antecedent, over
    # the component's default threshold); a pronoun of another class does not
    threshold = English().add_pipe("seq2seq_coref").cfg["link_threshold"]
    assert threshold == json.loads((Path(path) / "linker_fit.json").read_text())["link_threshold"]
    segments = [[[MARY, SHE], [JOHN, HIM, HE], [HOUSE]]]
    merged = [[MARY, SHE, MARY2], [JOHN, HIM, HE], [HOUSE]]
    mentions, pairs, X = pair_features(segments, merged, WORDS)
    prob = dict(zip([(mentions[i], mentions[j]) for i, j in pairs], linker.probabilities(X)))
    assert prob[(HIM, HE)] > 0.5 and prob[(MARY, MARY2)] > threshold
    assert max(p for (a, b), p in prob.items() if b == MARY2) == prob[(MARY, MARY2)]
    assert prob[(SHE, HE)] < 0.1 and prob[(MARY, JOHN)] < 0.1
    assert linker.link(segments, merged, WORDS, threshold) == [[MARY, SHE, MARY2], [JOHN, HIM, HE], [HOUSE]]


def test_candidates_per_mention_are_bounded_on_a_long_document():
    """The same name every 100 tokens, 500 times (one merged cluster): each mention
    gets its 4 neighbours within max_distance and the 50 nearest farther ones."""
    words = (["Ann"] + ["x"] * 99) * 500
    ments = [(k * 100, k * 100 + 1) for k in range(500)]
    mentions, pairs, X = pair_features([[ments[k:k + 3]] for k in range(0, 500, 3)], [ments], words,
                                       max_distance=400, max_far=50)
    per = Counter(j for _, j in pairs)
    assert mentions == ments and per[499] == 54 and per[10] == 10 and per[54] == 54
    assert len(pairs) == sum(min(j, 54) for j in range(500)) and X.shape == (len(pairs), len(FEATURES))
    assert all(mentions[j][0] - mentions[i][0] <= 400 for i, j in pairs if j - i <= 4)
    assert {j - i for i, j in pairs if j == 499} == set(range(1, 55))  # the nearest 54 of them
