"""A mention-pair linker on top of the generated mentions (``seq2seq_coref``'s ``relink``).

The decoder writes mentions and cluster numbers one segment at a time; the segments
are then merged (``agreement``) and clusters sharing a name joined. On OntoGUM dev
more than half of the clusters the decoder writes within one segment mix entities
(``benchmarks/README_coref.md``). The linker keeps the generated *mentions* and
re-decides the *links*: every mention picks its most probable antecedent among the
mentions before it (best-first clustering; none above ``threshold``: it starts an
entity; a link that would put pronouns of different classes, or different names,
in one entity goes to the next antecedent), from a small network (one layer of ReLU
units; or logistic) over features of the pair:

- what the decoder said: in how many of the segments that saw both mentions it put
  them in one cluster, and whether the merged clusters hold them together;
- the strings: the same text, the same last word, shared content words, a shared name;
- agreement: the pronoun classes of :data:`~.coref_grammar.PRONOUN_CLASSES` (same, in
  conflict, pronoun after a name or noun phrase), the kind of each mention (one-hot
  pronoun class / demonstrative / name / other noun phrase);
- distance: tokens and sentence ends between them, mention lengths.

Candidates are the mentions at most ``max_distance`` tokens before, plus, farther
back, up to ``max_far`` of those the merged clusters or a shared name connect (so a
long document costs a number of pairs linear in its mentions).

The weights are fitted (:func:`fit_pair_linker`) on the predictions of a model on
documents it was not trained on, with gold clusters (the bundled linker: the bundled
model on OntoGUM dev); they are stored as safetensors with their sha256.
"""
import json
import math
from bisect import bisect_left
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy

from ..core.integrity import read_checked, sha256_bytes
from ..errors import Errors
from .coref_grammar import NAME_STOPWORDS, PRONOUN_CLASSES

LINKER_FORMAT = "spacy_kbnlp.coref_pair_linker.v2"
LINKER_FORMATS = ("spacy_kbnlp.coref_pair_linker.v1", LINKER_FORMAT)  # v1: logistic only
WEIGHTS_FILE = "linker.safetensors"
SPEC_FILE = "linker.json"

Span = Tuple[int, int]
PRONOUNS: Dict[str, str] = {w: cls for cls, words in PRONOUN_CLASSES.items() for w in words.split()}
DEMONSTRATIVES = frozenset("this that these those".split())
KINDS = tuple(PRONOUN_CLASSES) + ("dem", "name", "np")
FEATURES = (
    ("bias", "co_cluster_rate", "seen_together", "co_clustered", "log_co_clustered", "merged_together",
     "same_text", "same_last_word", "shared_content_word", "shared_name_word", "log_distance",
     "log_sentence_ends", "same_sentence", "same_pronoun_class", "pronoun_class_conflict",
     "pronoun_after_noun", "noun_after_pronoun", "name_and_name", "np_and_np", "log_len_antecedent",
     "log_len_mention")
    + tuple(f"mention_{k}" for k in KINDS) + tuple(f"antecedent_{k}" for k in KINDS))


def mention_kind(words: Sequence[str]) -> str:
    """A pronoun class of :data:`PRONOUN_CLASSES`, ``dem`` (a one-word demonstrative),
    ``name`` (a capitalized word that is not a pronoun or determiner) or ``np``."""
    if len(words) == 1:
        low = words[0].lower()
        if low in PRONOUNS:
            return PRONOUNS[low]
        if low in DEMONSTRATIVES:
            return "dem"
    if any(w[:1].isupper() and w.lower() not in NAME_STOPWORDS for w in words):
        return "name"
    return "np"


def _describe(words: Sequence[str]) -> Tuple[str, str, str, frozenset, frozenset]:
    low = [w.lower() for w in words]
    content = frozenset(w for w in low if w[:1].isalpha() and w not in NAME_STOPWORDS and len(w) > 2)
    names = frozenset(w.lower() for w in words if w[:1].isupper() and w.lower() not in NAME_STOPWORDS)
    return " ".join(low), low[-1] if low else "", mention_kind(words), content, names


def pair_blocks(segments: Sequence[Sequence[Sequence[Span]]], clusters: Sequence[Sequence[Span]],
                words: Sequence[str], *, max_distance: int = 400, max_far: int = 50
                ) -> Tuple[List[Span], Iterator[Tuple[int, List[int], numpy.ndarray]]]:
    """``(mentions in document order, blocks)`` for one document: ``segments`` are
    the decoder's clusters per segment, ``clusters`` the merged ones, all in the
    document's token coordinates; ``words`` the document's token texts. Each block
    is ``(mention index j, its candidate antecedents' indices, their features
    (candidates, len(FEATURES)))``, one mention at a time, so that a long document
    never holds every pair's features at once."""
    seen: Counter = Counter()
    together: Counter = Counter()
    mentions_set = set()
    for seg in segments:
        cid = {tuple(m): k for k, cl in enumerate(seg) for m in cl}
        ms = sorted(cid)
        mentions_set.update(ms)
        for a in range(len(ms)):
            for b in range(a + 1, len(ms)):
                seen[(ms[a], ms[b])] += 1
                if cid[ms[a]] == cid[ms[b]]:
                    together[(ms[a], ms[b])] += 1
    merged = {tuple(m): k for k, cl in enumerate(clusters) for m in cl}
    mentions_set.update(merged)
    mentions = sorted(mentions_set)
    info = [_describe(words[s:e]) for s, e in mentions]
    ends = numpy.cumsum([1 if w in (".", "!", "?") else 0 for w in words] + [0])

    starts = [m[0] for m in mentions]
    # far candidates come only through the merged clusters or a shared name word
    by_key: Dict[Tuple[str, object], List[int]] = defaultdict(list)
    for k, m in enumerate(mentions):
        if m in merged:
            by_key[("cluster", merged[m])].append(k)
        for w in info[k][4]:
            by_key[("name", w)].append(k)

    def far_candidates(j: int, before: int) -> List[int]:
        """The ``max_far`` nearest mentions before index ``before`` that share the
        merged cluster or a name word with mention ``j``."""
        keys = ([("cluster", merged[mentions[j]])] if mentions[j] in merged else []) + [
            ("name", w) for w in info[j][4]]
        found = set()
        for key in keys:
            rows = by_key[key]
            found.update(rows[max(0, bisect_left(rows, before) - max_far):bisect_left(rows, before)])
        return sorted(found, reverse=True)

    def blocks() -> Iterator[Tuple[int, List[int], numpy.ndarray]]:
        for j, mj in enumerate(mentions):
            tj, hj, kj, cj, nj = info[j]
            near_from = bisect_left(starts, mj[0] - max_distance)  # first mention within reach
            far = far_candidates(j, near_from) if max_far > 0 else []
            antecedents: List[int] = []
            rows: List[List[float]] = []
            n_far = 0
            for i in list(range(j - 1, near_from - 1, -1)) + far:
                mi = mentions[i]
                if mi[1] > mj[0]:  # nested or overlapping: never one entity
                    continue
                if i < near_from:
                    if n_far >= max_far:
                        break
                    n_far += 1
                ti, hi, ki, ci, ni = info[i]
                dist = mj[0] - mi[0]
                n_seen, n_tog = seen.get((mi, mj), 0), together.get((mi, mj), 0)
                sents = int(ends[mj[0]] - ends[mi[1]])
                pi, pj = ki in PRONOUN_CLASSES, kj in PRONOUN_CLASSES
                row = [1.0, n_tog / n_seen if n_seen else 0.0, float(n_seen > 0), float(n_tog > 0),
                       math.log1p(n_tog), float(merged.get(mi, -1) == merged.get(mj, -2)),
                       float(ti == tj), float(hi == hj), float(bool(ci & cj)), float(bool(ni & nj)),
                       math.log1p(dist), math.log1p(sents), float(sents == 0),
                       float(pi and pj and ki == kj), float(pi and pj and ki != kj),
                       float(pj and ki in ("name", "np")), float(pi and kj in ("name", "np")),
                       float(ki == kj == "name"), float(ki == kj == "np"),
                       math.log1p(mi[1] - mi[0]), math.log1p(mj[1] - mj[0])]
                row += [float(kj == k) for k in KINDS] + [float(ki == k) for k in KINDS]
                antecedents.append(i)
                rows.append(row)
            if rows:
                yield j, antecedents, numpy.asarray(rows, dtype=numpy.float32)

    return mentions, blocks()


def pair_features(segments: Sequence[Sequence[Sequence[Span]]], clusters: Sequence[Sequence[Span]],
                  words: Sequence[str], *, max_distance: int = 400, max_far: int = 50
                  ) -> Tuple[List[Span], List[Tuple[int, int]], numpy.ndarray]:
    """``(mentions, candidate pairs (antecedent index, mention index), features
    (pairs, len(FEATURES)))``: :func:`pair_blocks` all at once (for fitting)."""
    mentions, blocks = pair_blocks(segments, clusters, words, max_distance=max_distance,
                                   max_far=max_far)
    pairs: List[Tuple[int, int]] = []
    parts: List[numpy.ndarray] = []
    for j, antecedents, X in blocks:
        pairs.extend((i, j) for i in antecedents)
        parts.append(X)
    X = numpy.concatenate(parts) if parts else numpy.zeros((0, len(FEATURES)), dtype=numpy.float32)
    return mentions, pairs, X


def pair_labels(mentions: Sequence[Span], pairs: Sequence[Tuple[int, int]],
                gold: Iterable[Iterable[Span]]) -> numpy.ndarray:
    """1 where both mentions of a pair are gold mentions of one entity."""
    entity = {tuple(m): k for k, cl in enumerate(gold) for m in cl}
    return numpy.asarray([1.0 if (tuple(mentions[i]) in entity and
                                  entity.get(tuple(mentions[i])) == entity.get(tuple(mentions[j])))
                          else 0.0 for i, j in pairs], dtype=numpy.float32)


def best_first(mentions: Sequence[Span], pairs: Sequence[Tuple[int, int]],
               probs: Sequence[float], threshold: float,
               words: Optional[Sequence[str]] = None) -> List[List[Span]]:
    """Each mention (in document order) links to its most probable antecedent if that
    probability is over ``threshold``; the links' connected components (singletons
    included), sorted. With ``words`` (the document's tokens) the clusters must
    agree as entities: a link that would join two clusters that both hold pronouns
    of :data:`PRONOUN_CLASSES` but not the same classes, or both hold names without
    a name word in common (Mary / John), goes to the next most probable antecedent."""
    cands: Dict[int, List[Tuple[float, int]]] = defaultdict(list)
    for (i, j), p in zip(pairs, probs):
        if p > threshold:
            cands[j].append((float(p), i))
    parent = list(range(len(mentions)))
    pronouns: List[frozenset] = [frozenset()] * len(mentions)
    names: List[List[frozenset]] = [[] for _ in mentions]
    if words is not None:
        for k, (s, e) in enumerate(mentions):
            _, _, kind, _, name = _describe(words[s:e])
            if kind in PRONOUN_CLASSES:
                pronouns[k] = frozenset([kind])
            elif kind == "name" and name:
                names[k] = [name]

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def agree(a: int, b: int) -> bool:
        if pronouns[a] and pronouns[b] and pronouns[a] != pronouns[b]:
            return False
        return not (names[a] and names[b] and not any(x & y for x in names[a] for y in names[b]))

    for j in range(len(mentions)):
        for _, i in sorted(cands.get(j, ()), key=lambda c: (-c[0], c[1])):
            ri, rj = find(i), find(j)
            if ri == rj:
                break
            if words is not None and not agree(ri, rj):
                continue
            parent[rj] = ri
            pronouns[ri] = pronouns[ri] | pronouns[rj]
            names[ri] = names[ri] + names[rj]
            break
    groups: Dict[int, List[Span]] = defaultdict(list)
    for k, m in enumerate(mentions):
        groups[find(k)].append(tuple(m))
    return sorted(sorted(g) for g in groups.values())


class PairLinker:
    """Pair scorer over :data:`FEATURES` and best-first clustering. The score is
    logistic over the features (``weights``: one per feature, the bias first) or, with
    a ``hidden`` layer, over ReLU units of the standardized features: ``hidden`` holds
    ``mean`` and ``scale`` (per feature), ``weight`` (units x features) and ``bias``
    (per unit), and ``weights`` one output weight per unit after the output bias.
    The hidden layer lets the score depend on combinations (a neuter pronoun close
    after a noun phrase the decoder put with it) that one weight per feature cannot."""

    HIDDEN = ("mean", "scale", "weight", "bias")

    def __init__(self, weights: Sequence[float], *, hidden: Optional[Dict[str, numpy.ndarray]] = None,
                 max_distance: int = 400, max_far: int = 50, trained_on: str = ""):
        self.weights = numpy.asarray(weights, dtype=numpy.float32).reshape(-1)
        self.hidden = None if not hidden else {
            k: numpy.asarray(hidden[k], dtype=numpy.float32) if k in hidden else None for k in self.HIDDEN}
        n_in = len(FEATURES)
        if self.hidden is None:
            if self.weights.shape[0] != n_in:
                raise ValueError(Errors.KBE266.format(
                    what=f"{self.weights.shape[0]} weights for {n_in} features"))
        else:
            h = self.hidden
            units = h["weight"].shape[0] if h["weight"] is not None and h["weight"].ndim == 2 else -1
            shapes = {"mean": (n_in,), "scale": (n_in,), "weight": (units, n_in), "bias": (units,)}
            bad = [k for k in self.HIDDEN if h[k] is None or h[k].shape != shapes[k]]
            if units < 1 or bad or self.weights.shape[0] != units + 1:
                raise ValueError(Errors.KBE266.format(
                    what=f"a hidden layer with {units} units for {n_in} features needs "
                         f"{units + 1} output weights and matching {', '.join(self.HIDDEN)} "
                         f"(got {self.weights.shape[0]} weights; wrong: {', '.join(bad) or 'none'})"))
        self.max_distance = int(max_distance)
        self.max_far = int(max_far)
        self.trained_on = trained_on

    @property
    def units(self) -> int:
        """Hidden units (0: logistic over the features)."""
        return 0 if self.hidden is None else int(self.hidden["weight"].shape[0])

    def probabilities(self, X: numpy.ndarray) -> numpy.ndarray:
        if self.hidden is None:
            return 1.0 / (1.0 + numpy.exp(-(X @ self.weights)))
        h = self.hidden
        Z = numpy.maximum(((X - h["mean"]) / h["scale"]) @ h["weight"].T + h["bias"], 0.0)
        return 1.0 / (1.0 + numpy.exp(-(Z @ self.weights[1:] + self.weights[0])))

    def link(self, segments: Sequence[Sequence[Sequence[Span]]], clusters: Sequence[Sequence[Span]],
             words: Sequence[str], threshold: float) -> List[List[Span]]:
        """One document's clusters re-decided from its segments' and merged clusters."""
        mentions, blocks = pair_blocks(segments, clusters, words, max_distance=self.max_distance,
                                       max_far=self.max_far)
        pairs: List[Tuple[int, int]] = []
        probs: List[float] = []
        for j, antecedents, X in blocks:  # keep only the links over the threshold
            for i, p in zip(antecedents, self.probabilities(X)):
                if p > threshold:
                    pairs.append((i, j))
                    probs.append(float(p))
        return best_first(mentions, pairs, probs, threshold, words)

    # --- serialization: safetensors + a JSON spec with its sha256
    def to_disk(self, path: Union[str, Path]) -> None:
        from safetensors.numpy import save

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {"weights": self.weights}
        if self.hidden is not None:
            tensors.update({f"hidden_{k}": numpy.ascontiguousarray(v) for k, v in self.hidden.items()})
        data = save(tensors)
        (path / WEIGHTS_FILE).write_bytes(data)
        spec = {"format": LINKER_FORMAT, "features": list(FEATURES), "hidden_units": self.units,
                "max_distance": self.max_distance,
                "max_far": self.max_far, "trained_on": self.trained_on, "sha256": sha256_bytes(data)}
        (path / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf8")

    @classmethod
    def from_disk(cls, path: Union[str, Path]) -> "PairLinker":
        from safetensors.numpy import load

        path = Path(path)
        if not (path / SPEC_FILE).exists():
            raise ValueError(Errors.KBE266.format(what=f"no {SPEC_FILE} in {path}"))
        spec = json.loads((path / SPEC_FILE).read_text(encoding="utf8"))
        if spec.get("format") not in LINKER_FORMATS or spec.get("features") != list(FEATURES):
            raise ValueError(Errors.KBE266.format(
                what=f"{path} holds format {spec.get('format')!r} with other features than "
                     f"{LINKER_FORMAT} (refit it with fit_pair_linker)"))
        tensors = load(read_checked(path / WEIGHTS_FILE, spec.get("sha256")))
        hidden = {k[len("hidden_"):]: v for k, v in tensors.items() if k.startswith("hidden_")}
        return cls(tensors["weights"], hidden=hidden or None, max_distance=spec["max_distance"],
                   max_far=spec["max_far"], trained_on=spec.get("trained_on", ""))


def fit_pair_linker(docs: Iterable[Tuple[Sequence[Sequence[Sequence[Span]]], Sequence[Sequence[Span]],
                                         Sequence[str], Iterable[Iterable[Span]]]], *,
                    hidden: int = 32, epochs: int = 16, seed: int = 0, l2: float = 1.0,
                    max_distance: int = 400, max_far: int = 50, trained_on: str = "") -> PairLinker:
    """Fit the linker on ``(segments, merged clusters, words, gold clusters)`` per
    document: with ``hidden`` > 0 a layer of that many ReLU units over the standardized
    features, by Adam (learning rate 3e-3, weight decay 1e-4, batches of 1,024 pairs,
    ``epochs`` passes; the initial weights and the batch order come from ``seed``, the
    caller's random state is left as it was); with ``hidden`` = 0 logistic weights
    (L2 ``l2`` on all but the bias; L-BFGS)."""
    import torch

    if hidden < 0 or epochs < 1:
        raise ValueError(Errors.KBE266.format(what=f"hidden = {hidden} (>= 0) and epochs = {epochs} (>= 1)"))
    Xs, ys = [], []
    for segments, clusters, words, gold in docs:
        mentions, pairs, X = pair_features(segments, clusters, words, max_distance=max_distance,
                                           max_far=max_far)
        Xs.append(X)
        ys.append(pair_labels(mentions, pairs, gold))
    X = torch.as_tensor(numpy.concatenate(Xs) if Xs else numpy.zeros((0, len(FEATURES)), numpy.float32),
                        dtype=torch.float64)
    y = torch.as_tensor(numpy.concatenate(ys) if ys else numpy.zeros(0, numpy.float32),
                        dtype=torch.float64)
    if X.shape[0] == 0 or float(y.sum()) == 0 or float(y.sum()) == y.shape[0]:
        raise ValueError(Errors.KBE266.format(
            what=f"{X.shape[0]} candidate pairs with {int(y.sum())} coreferent: need both kinds"))
    keep = dict(max_distance=max_distance, max_far=max_far, trained_on=trained_on)
    if hidden:
        weights, layer = _fit_hidden(X.float(), y.float(), hidden, epochs, seed)
        return PairLinker(weights, hidden=layer, **keep)
    w = torch.zeros(len(FEATURES), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y, reduction="sum")
        loss = loss + 0.5 * l2 * (w[1:] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return PairLinker(w.detach().numpy(), **keep)


def _fit_hidden(X: Any, y: Any, units: int, epochs: int, seed: int
                ) -> Tuple[numpy.ndarray, Dict[str, numpy.ndarray]]:
    """Output weights and hidden layer (:class:`PairLinker`) fitted to pairs ``X``, ``y``."""
    import torch

    mean = X.mean(0)
    scale = X.std(0) + 1e-3  # the bias column (constant 1) becomes 0
    Xn = (X - mean) / scale
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], units), torch.nn.ReLU(),
                                  torch.nn.Linear(units, 1))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(epochs):
            order = torch.randperm(len(y))
            for first in range(0, len(y), 1024):
                batch = order[first:first + 1024]
                opt.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    net(Xn[batch]).squeeze(1), y[batch])
                loss.backward()
                opt.step()
    first, last = net[0], net[2]
    weights = torch.cat([last.bias, last.weight.reshape(-1)]).detach().numpy()
    return weights, {"mean": mean.numpy(), "scale": scale.numpy(),
                     "weight": first.weight.detach().numpy(), "bias": first.bias.detach().numpy()}
