"""Coreference metrics: validated against the independent ``scorch`` package on
real GUM / OntoGUM gold files with systematically perturbed predictions, LEA on
the worked example of Moosavi & Strube (2016) and a brute-force link count."""
import itertools
import random
import warnings

import pytest
import spacy
from scorch import scores as scorch
from spacy.training import Example

from spacy_kbnlp.extensions import get_coref_clusters, set_coref_clusters
from spacy_kbnlp.readers import read_conll2012
from spacy_kbnlp.scorers.coref import (b_cubed, ceafe, lea, muc, normalize_clusters,
                                       score_coref_clusters)

# documents of several genres: GUM keeps singletons, OntoGUM has (almost) none
GUM_FILES = [
    ("gum", "GUM_academic_art"), ("gum", "GUM_fiction_beast"), ("gum", "GUM_interview_cyclone"),
    ("gum", "GUM_news_iodine"), ("ontogum", "GUM_academic_art"), ("ontogum", "GUM_news_iodine"),
    ("ontogum", "GUM_voyage_athens"), ("ontogum", "GUM_whow_joke"),
    ("ontogum", "GUM_bio_galois"),   # has a mention in two clusters
]


EQ4 = 5e-5   # "equal to 4 decimals" (round() would split ties such as 0.78125)


def _clusters(doc):
    """Gold clusters, made disjoint as our scorer does (7 OntoGUM mentions sit in two
    clusters; scorch assumes disjoint clusters and then gives B3 > 1)."""
    return normalize_clusters([[(s.start, s.end) for s in c] for c in get_coref_clusters(doc)])[0]


@pytest.fixture(scope="module")
def gum_docs(shared_data):
    nlp = spacy.blank("en")
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KBW052: empty OntoGUM tokens
        for corpus, name in GUM_FILES:
            path = shared_data / "coref" / "gum" / corpus / "conll" / f"{name}.conll"
            if not path.exists():
                pytest.skip(f"{path} missing")
            doc = next(read_conll2012(path, nlp))
            out.append((f"{corpus}/{name}", len(doc), _clusters(doc)))
    return out


# ---------------------------------------------------------------- perturbations

def drop_mentions(key, n_tokens, rng):
    return [[m for m in c if rng.random() > 0.25] for c in key]


def merge_clusters(key, n_tokens, rng):
    out, i = [], 0
    while i < len(key):
        if i + 1 < len(key) and rng.random() < 0.3:
            out.append(key[i] + key[i + 1])
            i += 2
        else:
            out.append(list(key[i]))
            i += 1
    return out


def split_clusters(key, n_tokens, rng):
    out = []
    for c in key:
        if len(c) >= 2 and rng.random() < 0.5:
            cut = rng.randint(1, len(c) - 1)
            out.extend([c[:cut], c[cut:]])
        else:
            out.append(list(c))
    return out


def spurious(key, n_tokens, rng):
    used = {m for c in key for m in c}
    free = [(t, t + 1) for t in range(n_tokens) if (t, t + 1) not in used]
    rng.shuffle(free)
    extra = free[:40]
    out = [list(c) for c in key]
    for m in extra[:10]:                       # into existing clusters
        out[rng.randrange(len(out))].append(m)
    out.extend([m] for m in extra[10:20])      # spurious singletons
    out.extend([list(p) for p in zip(extra[20:40:2], extra[21:40:2])])  # spurious pairs
    return out


def everything(key, n_tokens, rng):
    for f in (drop_mentions, merge_clusters, split_clusters, spurious):
        key = [c for c in f(key, n_tokens, rng) if c]
    return key


PERTURBATIONS = {"identity": lambda k, n, r: [list(c) for c in k], "drop": drop_mentions,
                 "merge": merge_clusters, "split": split_clusters, "spurious": spurious,
                 "all": everything}


def _sets(clusters):
    return [set(c) for c in clusters if c]


def _rpf(counts):
    rn, rd, pn, pd = counts
    r = rn / rd if rd else 0.0
    p = pn / pd if pd else 0.0
    return r, p, (2 * p * r / (p + r) if p + r else 0.0)


@pytest.mark.parametrize("perturbation", list(PERTURBATIONS))
def test_metrics_match_scorch_on_gum(gum_docs, perturbation):
    """Per document and micro-averaged over the documents, MUC, B³ and CEAFe
    equal scorch's values to 4 decimals (scorch computes them from its own
    set-based formulas; its corpus average weights per-document scores by mention
    counts, so the micro sums are rebuilt from its per-document R and P)."""
    rng = random.Random(13)
    ours = {"muc": muc, "b3": b_cubed, "ceafe": ceafe}
    theirs = {"muc": scorch.muc, "b3": scorch.b_cubed, "ceafe": scorch.ceaf_e}
    # denominators of the micro average: MUC Σ(|c|-1), B³ Σ|c|, CEAFe #clusters
    dens = {"muc": lambda cs: sum(len(c) - 1 for c in cs), "b3": lambda cs: sum(len(c) for c in cs),
            "ceafe": len}
    micro = {m: [0.0, 0.0, 0.0, 0.0] for m in ours}
    documents = []
    for name, n_tokens, key in gum_docs:
        response = normalize_clusters(PERTURBATIONS[perturbation](key, n_tokens, rng))[0]
        documents.append((key, response))
        k_sets, r_sets = _sets(key), _sets(response)
        for metric in ours:
            R, P, F = theirs[metric](k_sets, r_sets)
            r, p, f = _rpf(ours[metric](key, response))
            assert (r, p, f) == pytest.approx((R, P, F), abs=EQ4), (name, metric)
            kd, rd = dens[metric](k_sets), dens[metric](r_sets)
            micro[metric][0] += R * kd
            micro[metric][1] += kd
            micro[metric][2] += P * rd
            micro[metric][3] += rd
    result = score_coref_clusters(documents)
    conll = 0.0
    for metric in ours:
        r, p, f = _rpf(micro[metric])
        conll += f / 3
        assert result[f"coref_{metric}_r"] == pytest.approx(r, abs=EQ4), metric
        assert result[f"coref_{metric}_p"] == pytest.approx(p, abs=EQ4), metric
        assert result[f"coref_{metric}_f"] == pytest.approx(f, abs=EQ4), metric
    assert result["coref_conll_f"] == pytest.approx(conll, abs=EQ4)
    # B³'s micro average is exactly scorch's mention-weighted corpus average
    import numpy as np
    b3 = [scorch.b_cubed(_sets(k), _sets(r)) for k, r in documents]
    gold_sizes = [sum(map(len, k)) for k, _ in documents]
    sys_sizes = [sum(map(len, r)) for _, r in documents]
    assert result["coref_b3_r"] == pytest.approx(
        float(np.average([x[0] for x in b3], weights=gold_sizes)), abs=EQ4)
    assert result["coref_b3_p"] == pytest.approx(
        float(np.average([x[1] for x in b3], weights=sys_sizes)), abs=EQ4)
    if perturbation == "identity":
        assert all(result[f"coref_{m}_f"] == 1.0 for m in ("muc", "b3", "ceafe", "lea", "conll"))
    else:
        assert result["coref_conll_f"] < 1.0


# ---------------------------------------------------------------- LEA

def lea_bruteforce(key, response):
    """LEA by enumerating every mention pair (independent of the Counter-based code)."""
    def side(clusters, other):
        where = {m: i for i, c in enumerate(other) for m in c}
        num = den = 0.0
        for c in clusters:
            if len(c) == 1:
                m = c[0]
                res = 1.0 if m in where and len(other[where[m]]) == 1 else 0.0
            else:
                pairs = list(itertools.combinations(c, 2))
                res = sum(1 for a, b in pairs if a in where and b in where
                          and where[a] == where[b]) / len(pairs)
            num += len(c) * res
            den += len(c)
        return num / den if den else 0.0
    return side(key, response), side(response, key)


def test_lea_paper_example():
    """Moosavi & Strube (2016), section 4: K = {a,b,c}, {d,e,f,g};
    R = {a,b}, {c,d}, {f,g,h,i}.
    recall = (3·1/3 + 4·1/6) / 7, precision = (2·1 + 2·0 + 4·1/6) / 8."""
    key = [["a", "b", "c"], ["d", "e", "f", "g"]]
    response = [["a", "b"], ["c", "d"], ["f", "g", "h", "i"]]
    r, p, f = _rpf(lea(key, response))
    assert r == pytest.approx((3 * 1 / 3 + 4 * 1 / 6) / 7)   # 0.2381
    assert p == pytest.approx((2 * 1 + 2 * 0 + 4 * 1 / 6) / 8)  # 0.3333
    assert round(r, 4) == 0.2381 and round(p, 4) == 0.3333 and round(f, 4) == 0.2778
    assert (r, p) == pytest.approx(lea_bruteforce(key, response))


def test_lea_singletons_self_links():
    # a gold singleton is resolved only when it is a singleton in the response too
    key = [["a"], ["b", "c"]]
    assert _rpf(lea(key, [["a"], ["b", "c"]]))[:2] == (1.0, 1.0)
    r, p, _ = _rpf(lea(key, [["a", "b", "c"]]))
    # recall: a unresolved (1·0), {b,c} resolved (2·1) -> 2/3; precision: {a,b,c}
    # has 1 of 3 links -> 3·(1/3)/3
    assert (r, p) == pytest.approx((2 / 3, 1 / 3))
    assert (r, p) == pytest.approx(lea_bruteforce(key, [["a", "b", "c"]]))


@pytest.mark.parametrize("perturbation", ["drop", "merge", "split", "spurious", "all"])
def test_lea_matches_bruteforce_on_gum(gum_docs, perturbation):
    rng = random.Random(7)
    for name, n_tokens, key in gum_docs:
        response = [c for c in PERTURBATIONS[perturbation](key, n_tokens, rng) if c]
        r, p, _ = _rpf(lea(key, response))
        assert (r, p) == pytest.approx(lea_bruteforce(key, response), abs=1e-12), name


# ---------------------------------------------------------------- hand-checked values

def test_hand_computed_small_case():
    """K = {1,2,3}, {4,5}; R = {1,2}, {3,4,5,6}.
    MUC R = ((3-2)+(2-1))/(2+1) = 2/3, P = ((2-1)+(4-3))/(1+3) = 1/2.
    B³ R = (4/3 + 1/3 + 4/2)/5 = 11/15, P = (4/2 + (1+4)/4 + 0)/6... with 6 twinless:
    P = (4/2 + (1+4)/4)/6 = 3.25/6.
    CEAFe: φ4({1,2,3},{1,2}) = 4/5, φ4({4,5},{3,4,5,6}) = 4/6 -> 22/15; R = 11/15, P = 11/15.
    LEA R = (3·1/3 + 2·1)/5 = 3/5, P = (2·1 + 4·1/6)/6 = 4/9."""
    key = [[1, 2, 3], [4, 5]]
    response = [[1, 2], [3, 4, 5, 6]]
    assert _rpf(muc(key, response))[:2] == pytest.approx((2 / 3, 1 / 2))
    assert _rpf(b_cubed(key, response))[:2] == pytest.approx((11 / 15, 3.25 / 6))
    assert _rpf(ceafe(key, response))[:2] == pytest.approx((11 / 15, 11 / 15))
    assert _rpf(lea(key, response))[:2] == pytest.approx((3 / 5, 4 / 9))


def test_micro_average_sums_counts():
    # doc 1 perfect (MUC 2/2), doc 2 nothing right (MUC 0/1 recall, no response links)
    docs = [([[1, 2, 3]], [[1, 2, 3]]), ([[7, 8]], [[7], [8]])]
    out = score_coref_clusters(docs)
    assert out["coref_muc_r"] == pytest.approx(2 / 3)   # (2 + 0) / (2 + 1)
    assert out["coref_muc_p"] == pytest.approx(1.0)     # 2 / 2
    assert out["coref_docs"] == 2
    assert out["coref_mention_f"] == 1.0


def test_empty_and_singletons_options():
    assert score_coref_clusters([([], [])])["coref_conll_f"] == 0.0
    key = [[1], [2, 3]]
    out = score_coref_clusters([(key, [[2, 3]])], drop_singletons=True)
    assert out["coref_conll_f"] == 1.0
    assert score_coref_clusters([(key, [[2, 3]])])["coref_b3_r"] == pytest.approx(2 / 3)


def test_repeated_mentions_are_kept_once_and_warned():
    clusters, repeated = normalize_clusters([[1, 2], [2, 3], [3, 3]])
    assert clusters == [[1, 2], [3]] and repeated == [2, 3]
    with pytest.warns(UserWarning, match="KBW101"):
        score_coref_clusters([([[1, 2]], [[1, 2], [2, 5]])])


def test_registered_scorer_with_examples(nlp):
    gold = nlp.make_doc("Anna said she would come and she did .")
    set_coref_clusters(gold, [[(0, 1), (2, 3), (6, 7)]])
    pred = nlp.make_doc(gold.text)
    set_coref_clusters(pred, [[(0, 1), (2, 3)], [(6, 7), (4, 5)]])
    scorer = spacy.registry.scorers.get("spacy_kbnlp.coref_scorer.v1")()
    out = scorer([Example(pred, gold)], labels=["x"], some_cfg=1)   # cfg keys are ignored
    assert out["coref_muc_r"] == pytest.approx(1 / 2)    # (3 - 2) / 2
    assert out["coref_muc_p"] == pytest.approx(1 / 2)    # (1 + 0) / 2
    assert set(out) >= {f"coref_{m}_{x}" for m in ("muc", "b3", "ceafe", "lea")
                        for x in "prf"} | {"coref_conll_f"}
    # another prefix at call time (as a component's cfg would pass it)
    out = scorer([Example(pred, gold)], span_cluster_prefix="other")
    assert out["coref_docs"] == 1 and out["coref_muc_f"] == 0.0
