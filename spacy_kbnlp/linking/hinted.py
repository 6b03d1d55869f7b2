"""Linking of hinted mentions: the default mode of ``entqa_linker`` when the
pipeline already marks mentions (an upstream ``ner``, or a ``doc.spans`` key).

For every hinted mention:

1. **context**: the document is read once, in windows of ``context_length``
   tokens, by the linker's retriever encoder; the window's pooled vector and the
   mean of the mention's own word-piece states are compared with the KB's entity
   vectors (the retriever's dual-score space), and the document's mean vector too;
2. **hybrid candidates**: entities with prior mass for the surface form
   (:class:`~spacy_kbnlp.linking.priors.PriorTable`), BM25 hits of the mention
   over entity names and aliases, dense hits of the mention vector and of the
   window vector;
3. **final scorer**: a small network scores every (mention, candidate) from the
   features below; a softmax over the candidates and NIL (logit 0) gives the
   link probability, and a mention is linked when it exceeds ``hint_threshold``.

Everything here is computed by :func:`mention_features`, which training
(``entqa fit-scorer``) and inference share.
"""
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Span
from spacy.util import filter_spans

from ..core.integrity import read_checked, sha256_bytes
from ..errors import Errors
from .priors import PriorTable, normalize_surface

NUMERIC_LABELS = frozenset({"DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL"})
LABEL_GROUPS = (("PERSON",), ("ORG",), ("GPE", "LOC", "FAC"), ("NORP",),
                ("EVENT", "WORK_OF_ART", "PRODUCT", "LAW", "LANGUAGE"))
FEATURES = (
    "prior", "log_surface_mass", "has_prior", "prior_top", "name_exact", "alias_exact",
    "token_jaccard", "mention_cos", "mention_cos_gap", "mention_cos_top", "context_cos",
    "context_cos_gap", "doc_cos", "bm25", "in_bm25", "log_entity_links", "log_popularity",
    "log_candidates", "log_mention_tokens", "all_caps", "from_hint", "lower_case",
    "label_person", "label_org", "label_place", "label_norp", "label_misc", "label_other",
    "doc_support", "doc_longer_form",
)
# features of the one-pass reader (models/onepass.py), when the linker has one
READER_FEATURES = ("reader_score", "reader_gap", "reader_has")
SCORER_FILE = "scorer.safetensors"
SCORER_META = "scorer.json"
PRIORS_FILE = "priors.json.gz"


# ---------------------------------------------------------------- mention hints
def hint_source_ready(doc, source: Optional[str]) -> bool:
    """Whether ``doc`` carries hints from ``source``: ``"ents"`` needs an NER
    annotation (``doc.has_annotation("ENT_IOB")``, true even when it found
    nothing), another string a ``doc.spans`` key."""
    if not source:
        return False
    if source == "ents":
        return doc.has_annotation("ENT_IOB")
    return source in doc.spans


def hint_spans(doc, source: Optional[str]) -> List[Any]:
    """The hinted mentions of ``doc``, numeric NER labels dropped, sorted, without
    overlaps (the longest wins); a leading "the" and a trailing "'s" are cut off
    (KB names rarely include them)."""
    if not hint_source_ready(doc, source):
        return []
    spans = doc.ents if source == "ents" else doc.spans[source]
    seen = set()
    out = []
    for span in spans:
        if span.label_ in NUMERIC_LABELS or not span.text.strip():
            continue
        if len(span) > 1 and span[0].lower_ == "the":
            span = Span(doc, span.start + 1, span.end, label=span.label)
        if len(span) > 1 and span[-1].lower_ in ("'s", "’s", "'"):
            span = Span(doc, span.start, span.end - 1, label=span.label)
        key = (span.start, span.end)
        if key in seen:
            continue
        seen.add(key)
        out.append(span)
    return sorted(filter_spans(out), key=lambda s: (s.start, s.end))


def merge_hints(doc, spans: Sequence[Any], priors: PriorTable) -> List[Any]:
    """Join hints written "Denver, Colorado" (two hints around a comma) into one
    mention when the joined surface is a KB name or alias or a training link."""
    out: List[Any] = []
    for span in spans:
        prev = out[-1] if out else None
        if (prev is not None and span.start == prev.end + 1 and doc[prev.end].text == ","
                and priors.surface_mass(doc[prev.start: span.end].text) > 0):
            out[-1] = Span(doc, prev.start, span.end, label=prev.label)
        else:
            out.append(span)
    return out


def alias_spans(doc, priors: PriorTable, taken: Sequence[Any], max_words: int = 4,
                min_link_mass: Optional[float] = None) -> List[Any]:
    """Mentions the hints missed: the longest token n-grams (at most ``max_words``)
    whose surface has prior mass (a KB name or alias, or a training link), with a
    capitalized word (or, with ``min_link_mass``, in lower case and linked at least
    that often in training: common nouns, where a corpus links them), outside the
    hinted spans; greedy from left to right. Their label is
    empty (the final scorer sees "no NER label")."""
    blocked = numpy.zeros(len(doc) + 1, dtype=bool)
    for span in taken:
        blocked[span.start: span.end] = True
    out = []
    i = 0
    n = len(doc)
    while i < n:
        found = None
        if not blocked[i] and not (doc[i].is_punct or doc[i].is_space or doc[i].lower_ == "the"):
            for j in range(min(n, i + max_words), i, -1):
                if blocked[i:j].any():
                    continue
                words = doc[i:j]
                if all(t.is_stop or t.is_punct for t in words):
                    continue
                if not any(t.text[:1].isupper() for t in words) and (
                        min_link_mass is None or priors.link_mass(words.text) < min_link_mass):
                    continue
                if words[-1].is_punct or words[0].is_punct:
                    continue
                if priors.surface_mass(words.text) > 0:
                    found = j
                    break
        if found is not None:
            out.append(Span(doc, i, found, label=""))
            i = found
        else:
            i += 1
    return out


def label_features(label: str) -> List[float]:
    out = [float(label in group) for group in LABEL_GROUPS]
    out.append(float(bool(label) and not any(out)))
    return out


# ---------------------------------------------------------------- lexical index
class LexicalIndex:
    """Names and aliases of a KB: exact forms (normalized) and BM25 over
    ``name ; aliases`` per entity (the ``bm25s`` index of
    :class:`~spacy_kbnlp.retrieval.bm25.BM25Index`)."""

    def __init__(self, kb):
        from ..retrieval.bm25 import BM25Index

        self.names: List[str] = []
        self.forms: List[set] = []
        texts = []
        for rec in kb.records:
            forms = [f for f in [rec.name, *rec.aliases] if f]
            self.names.append(normalize_surface(rec.name))
            self.forms.append({normalize_surface(f) for f in forms})
            texts.append(" ; ".join(forms))
        self.bm25 = BM25Index(texts)

    def search(self, texts: Sequence[str], k: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
        return self.bm25.search(texts, k)


def _tokens(text: str) -> set:
    return {t for t in normalize_surface(text).replace("-", " ").split() if t}


def token_jaccard(mention: str, forms: Sequence[str]) -> float:
    m = _tokens(mention)
    best = 0.0
    for f in forms:
        o = _tokens(f)
        if m and o:
            best = max(best, len(m & o) / len(m | o))
    return best


# ---------------------------------------------------------------- the final scorer
class FinalScorer:
    """Features -> standardized -> ``Linear(F, hidden) -> tanh -> Linear(hidden, 1)``.
    Weights are numpy arrays, saved as safetensors with their sha256 in
    ``scorer.json``."""

    def __init__(self, weights: Dict[str, numpy.ndarray], features: Sequence[str] = FEATURES,
                 meta: Optional[Dict[str, Any]] = None):
        self.weights = {k: numpy.asarray(v, dtype="float32") for k, v in weights.items()}
        self.features = tuple(features)
        self.meta = dict(meta or {})

    @property
    def uses_reader(self) -> bool:
        return tuple(self.features) == FEATURES + READER_FEATURES

    def check(self, has_reader: Optional[bool] = None) -> None:
        """Refuse weights fitted on other features than this version computes (or on
        the one-pass reader's features when the linker has no such reader)."""
        if tuple(self.features) not in (FEATURES, FEATURES + READER_FEATURES):
            raise ValueError(Errors.KBE214.format(
                what=f"it was fitted on features {list(self.features)}, this version computes "
                     f"{list(FEATURES)} (+ {list(READER_FEATURES)} with a one-pass reader)"))
        if has_reader is False and self.uses_reader:
            raise ValueError(Errors.KBE214.format(
                what="it was fitted with the one-pass reader's scores, but the linker has no "
                     "one-pass reader"))

    @classmethod
    def init(cls, hidden: int = 16, seed: int = 0, features: Sequence[str] = FEATURES
             ) -> "FinalScorer":
        rng = numpy.random.default_rng(seed)
        f = len(features)
        return cls({"mean": numpy.zeros(f), "std": numpy.ones(f),
                    "w1": rng.normal(0, 1 / math.sqrt(f), (f, hidden)), "b1": numpy.zeros(hidden),
                    "w2": rng.normal(0, 1 / math.sqrt(hidden), (hidden, 1)), "b2": numpy.zeros(1)},
                   features)

    def logits(self, x: numpy.ndarray) -> numpy.ndarray:
        w = self.weights
        z = (x - w["mean"]) / w["std"]
        return (numpy.tanh(z @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"])[:, 0]

    def link_probs(self, x: numpy.ndarray) -> numpy.ndarray:
        """Softmax over the candidates of one mention and NIL (logit 0)."""
        self.check()
        if len(x) == 0:
            return numpy.zeros((0,), dtype="float32")
        if x.shape[1] < len(self.features):
            self.check(has_reader=False)
        x = x[:, : len(self.features)]  # reader columns are ignored by a scorer fitted without
        s = self.logits(x)
        m = max(0.0, float(s.max()))
        e = numpy.exp(s - m)
        return (e / (e.sum() + math.exp(-m))).astype("float32")

    # ---- serialization
    def to_bytes_dict(self) -> Tuple[bytes, Dict[str, Any]]:
        from safetensors.numpy import save

        data = save({k: numpy.ascontiguousarray(v) for k, v in sorted(self.weights.items())})
        meta = dict(self.meta, features=list(self.features), sha256=sha256_bytes(data))
        return data, meta

    def to_disk(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        data, meta = self.to_bytes_dict()
        (path / SCORER_FILE).write_bytes(data)
        (path / SCORER_META).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf8")

    @classmethod
    def from_disk(cls, path) -> "FinalScorer":
        from safetensors.numpy import load

        path = Path(path)
        if not (path / SCORER_FILE).exists() or not (path / SCORER_META).exists():
            raise FileNotFoundError(Errors.KBE215.format(path=path))
        meta = json.loads((path / SCORER_META).read_text(encoding="utf8"))
        # a scorer.json without sha256 is a damaged one (every writer records it)
        data = read_checked(path / SCORER_FILE, meta.get("sha256", "missing"))
        features = meta.pop("features", FEATURES)
        meta.pop("sha256", None)
        return cls(load(data), features, meta)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FinalScorer) and self.features == other.features and
                self.weights.keys() == other.weights.keys() and
                all(numpy.array_equal(v, other.weights[k]) for k, v in self.weights.items()))


def fit_final_scorer(groups: Sequence[Tuple[numpy.ndarray, int]], *, hidden: int = 16,
                     epochs: int = 300, lr: float = 0.01, l2: float = 1e-4, seed: int = 0,
                     meta: Optional[Dict[str, Any]] = None) -> FinalScorer:
    """Fit on ``groups``: per mention the features of its candidates ``(n, F)`` and
    the gold candidate's index (-1: NIL, i.e. the gold entity is not among them
    or the mention is not an InKB gold mention). Loss: cross-entropy of the
    softmax over candidates + NIL, full batch, Adam (torch), fixed seed."""
    import torch

    if not groups:
        raise ValueError(Errors.KBE217.format(what="no hinted mentions to fit the final scorer on"))
    torch.manual_seed(seed)
    width = max(g[0].shape[1] for g in groups)
    features = FEATURES + READER_FEATURES if width == len(FEATURES) + len(READER_FEATURES) else FEATURES
    xs = numpy.concatenate([g[0] for g in groups if len(g[0])] or [numpy.zeros((0, width))])
    mean = xs.mean(0) if len(xs) else numpy.zeros(width)
    std = xs.std(0) + 1e-6 if len(xs) else numpy.ones(width)
    init = FinalScorer.init(hidden, seed, features)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init.weights.items()
              if k not in ("mean", "std")}
    x = torch.tensor((xs - mean) / std, dtype=torch.float32)
    seg = torch.tensor(numpy.concatenate([numpy.full(len(g[0]), i) for i, g in enumerate(groups)])
                       if len(xs) else numpy.zeros(0), dtype=torch.long)
    n = len(groups)
    gold = torch.tensor([g[1] if g[1] >= 0 else -1 for g in groups])
    offsets = numpy.cumsum([0] + [len(g[0]) for g in groups])
    gold_flat = torch.tensor([offsets[i] + g[1] if g[1] >= 0 else -1 for i, g in enumerate(groups)])
    opt = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        s = (torch.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"])[:, 0]
        # log-sum-exp per mention over its candidates and NIL (0)
        with warnings.catch_warnings():  # index_reduce_ is marked beta
            warnings.simplefilter("ignore", UserWarning)
            mx = torch.zeros(n).index_reduce_(0, seg, s.detach(), "amax", include_self=True)
        ex = torch.zeros(n).index_add_(0, seg, torch.exp(s - mx[seg]))
        lse = mx + torch.log(ex + torch.exp(-mx))
        gold_s = torch.where(gold >= 0, s[gold_flat.clamp(min=0)] if len(s) else torch.zeros(n),
                             torch.zeros(n))
        loss = (lse - gold_s).mean() + l2 * sum((p ** 2).sum() for k, p in params.items() if k[0] == "w")
        loss.backward()
        opt.step()
    weights = {k: v.detach().numpy() for k, v in params.items()}
    weights.update(mean=mean, std=std)
    meta = dict(meta or {}, hidden=hidden, epochs=epochs, lr=lr, l2=l2, seed=seed,
                mentions=n, linked=int((gold >= 0).sum()), final_loss=float(loss.detach()))
    return FinalScorer(weights, features, meta)


# ---------------------------------------------------------------- features
@dataclass
class MentionCandidates:
    """One hinted mention: its span, its candidates (KB rows) and their features."""

    doc_index: int
    start: int
    end: int
    start_char: int
    end_char: int
    text: str
    label: str
    rows: List[int] = field(default_factory=list)
    prior_probs: List[float] = field(default_factory=list)
    window: Optional["Window"] = None         # the window the mention was read in
    pieces: Tuple[int, int] = (0, 0)           # its first/last piece in ``window.ids``
    features: numpy.ndarray = field(default_factory=lambda: numpy.zeros((0, len(FEATURES)), "float32"))


@dataclass(eq=False)
class Window:
    """One window of a doc as read: token range and piece ids with [CLS]/[SEP]."""

    doc_index: int
    start: int
    end: int
    ids: List[int]


def encode_windows(retriever, docs: Sequence[Any], spans: Sequence[Sequence[Any]], *,
                   context_length: int, max_pieces: int, batch_size: int, device):
    """Read every doc once in windows of ``context_length`` tokens with the
    retriever's passage encoder. Returns per doc: the window vectors ``(W, d)``,
    per span its window index with (the :class:`Window`, its first and last piece in
    the window's ids) and the span vectors ``(S, d)`` (mean of the span's
    word-piece states, L2-normalized; the window vector where the span has no
    pieces)."""
    import torch

    from ..models.passages import (Batch, doc_pieces, make_passages, passage_body,
                                   special_ids)
    from ..models.retriever import pool, run_encoder

    tok = retriever.tokenizer
    cls, sep, pad = special_ids(tok)
    items = []  # (doc, passage, body offsets)
    for i, doc in enumerate(docs):
        if not spans[i]:
            continue
        dp = doc_pieces(tok, doc, "none")
        for p in make_passages(i, doc, dp, context_length, context_length):
            body, first, last = passage_body(p, max_pieces - 2)
            items.append((i, p, Window(i, p.start, p.end, [cls] + body + [sep]), first, last))
    out_w: Dict[int, List[numpy.ndarray]] = {}
    out_span: Dict[int, Dict[Tuple[int, int], numpy.ndarray]] = {}
    out_win: Dict[int, Dict[Tuple[int, int], int]] = {}
    by_doc_spans = {i: sorted(s, key=lambda x: x.start) for i, s in enumerate(spans)}
    model = retriever.passage_model
    for b in range(0, len(items), batch_size):
        chunk = items[b: b + batch_size]
        batch = Batch.pad([c[2].ids for c in chunk], [[0] * len(c[2].ids) for c in chunk],
                          pad).to_torch(device)
        with torch.inference_mode():
            hidden = run_encoder(model, batch)
            pooled = torch.nn.functional.normalize(
                pool(hidden, batch["attention_mask"], retriever.spec.pooling), dim=-1)
        hidden = hidden.float().cpu().numpy()
        pooled = pooled.float().cpu().numpy()
        for j, (i, p, window, first, last) in enumerate(chunk):
            wins = out_w.setdefault(i, [])
            w_index = len(wins)
            wins.append(pooled[j])
            for span in by_doc_spans[i]:
                if not (p.start <= span.start < p.end):
                    continue
                lo = [first[t - p.start] for t in range(span.start, min(span.end, p.end))
                      if first[t - p.start] >= 0]
                hi = [last[t - p.start] for t in range(span.start, min(span.end, p.end))
                      if last[t - p.start] >= 0]
                if lo:
                    v = hidden[j, 1 + min(lo): 2 + max(hi)].mean(0)
                    v = v / (numpy.linalg.norm(v) + 1e-9)
                    where = (window, 1 + min(lo), 1 + max(hi))
                else:
                    v = pooled[j]
                    where = (window, 0, 0)
                out_span.setdefault(i, {})[(span.start, span.end)] = v
                out_win.setdefault(i, {})[(span.start, span.end)] = (w_index, where)
    return out_w, out_span, out_win


def mention_features(kb, priors: PriorTable, lexical: LexicalIndex, retriever, docs, spans, *,
                     context_length: int = 64, max_pieces: int = 128, batch_size: int = 32,
                     n_prior: int = 8, n_lexical: int = 8, n_dense: int = 8, n_context: int = 4,
                     device=None) -> List[MentionCandidates]:
    """Candidates and features of every hinted span of every doc (see the module doc)."""
    out: List[MentionCandidates] = []
    if not any(spans):
        return out
    windows, span_vecs, span_win = encode_windows(
        retriever, docs, spans, context_length=context_length, max_pieces=max_pieces,
        batch_size=batch_size, device=device)
    vectors = kb.vectors
    ids = kb.ids
    row_of = {eid: r for r, eid in enumerate(ids)}
    mentions: List[MentionCandidates] = []
    mvecs, cvecs, dvecs = [], [], []
    doc_vec = {}
    for i, wins in windows.items():
        d = numpy.mean(wins, 0)
        doc_vec[i] = d / (numpy.linalg.norm(d) + 1e-9)
    for i, doc_spans in enumerate(spans):
        for span in doc_spans:
            key = (span.start, span.end)
            if key not in span_vecs.get(i, {}):
                continue
            w_index, (window, lo, hi) = span_win[i][key]
            mentions.append(MentionCandidates(i, span.start, span.end, span.start_char,
                                              span.end_char, span.text, span.label_,
                                              window=window, pieces=(lo, hi)))
            mvecs.append(span_vecs[i][key])
            cvecs.append(windows[i][w_index])
            dvecs.append(doc_vec[i])
    if not mentions:
        return out
    mvecs_a, cvecs_a, dvecs_a = (numpy.asarray(v, dtype="float32") for v in (mvecs, cvecs, dvecs))
    k = min(len(kb), max(n_dense, n_context, 1))
    _, dense_rows = kb.search_rows(mvecs_a, min(k, n_dense)) if n_dense else (None, None)
    _, ctx_rows = kb.search_rows(cvecs_a, min(k, n_context)) if n_context else (None, None)
    bm_scores, bm_rows = lexical.search([m.text for m in mentions], n_lexical)
    for j, m in enumerate(mentions):
        prior_c = priors.candidates(m.text, n_prior)
        rows: List[int] = []
        for eid, _ in prior_c:
            r = row_of.get(eid)
            if r is not None and r not in rows:
                rows.append(r)
        bm = {}
        for s, r in zip(bm_scores[j], bm_rows[j]):
            if r >= 0:
                bm[int(r)] = float(s)
                if int(r) not in rows:
                    rows.append(int(r))
        for src in (dense_rows, ctx_rows):
            if src is None:
                continue
            for r in src[j]:
                if r >= 0 and int(r) not in rows:
                    rows.append(int(r))
        if not rows:
            continue
        ev = vectors[rows].astype("float32")
        mc, cc, dc = ev @ mvecs_a[j], ev @ cvecs_a[j], ev @ dvecs_a[j]
        key = normalize_surface(m.text)
        mass = priors.surface_mass(m.text)
        probs = [priors.prob(m.text, ids[r]) for r in rows]
        top_p = max(probs) if probs else 0.0
        bm_max = max(bm.values()) if bm else 0.0
        n_tok = m.end - m.start
        caps = float(m.text.isupper() and len(m.text) > 1)
        lab = label_features(m.label)
        feats = []
        for c, r in enumerate(rows):
            eid = ids[r]
            forms = lexical.forms[r]
            rec = kb.record_at(r)
            feats.append([
                probs[c], math.log1p(mass), float(probs[c] > 0), float(probs[c] > 0 and probs[c] == top_p),
                float(key == lexical.names[r]), float(key in forms),
                token_jaccard(m.text, [rec.name, *rec.aliases]),
                float(mc[c]), float(mc[c] - mc.max()), float(mc[c] == mc.max()),
                float(cc[c]), float(cc[c] - cc.max()), float(dc[c]),
                bm.get(r, 0.0) / bm_max if bm_max > 0 else 0.0, float(r in bm),
                priors.log_entity_count(eid), priors.log_popularity(eid),
                math.log(len(rows)), math.log(n_tok), caps, float(bool(m.label)),
                float(m.text[:1].islower()), *lab, 0.0, 0.0,
            ])
        m.rows = rows
        m.prior_probs = probs
        m.features = numpy.asarray(feats, dtype="float32")
        out.append(m)
    add_document_features(out)
    return out


def add_document_features(mentions: Sequence[MentionCandidates], min_prior: float = 0.3,
                          max_support: int = 128) -> None:
    """Coherence within a document, written into the last two feature columns:
    ``doc_support``, log(1 + the number of other mentions that have the candidate
    with prior >= ``min_prior``, counted up to ``max_support``: a long document does not
    push it beyond what training docs show), and ``doc_longer_form``, 1 when another mention
    whose words include all of this mention's words (and more: "Merkel" after
    "Angela Merkel") has the candidate as its most probable entity by prior."""
    by_doc: Dict[int, List[MentionCandidates]] = {}
    for m in mentions:
        by_doc.setdefault(m.doc_index, []).append(m)
    i_sup, i_long = FEATURES.index("doc_support"), FEATURES.index("doc_longer_form")
    for group in by_doc.values():
        # linear in the mentions (a 100k-token doc has tens of thousands): counts for the
        # support, distinct word sets and a word index for the longer forms
        strong: List[set] = []
        counts: Dict[int, int] = {}
        tops_by_words: Dict[frozenset, set] = {}
        words = [frozenset(_tokens(m.text)) for m in group]
        for m, ws in zip(group, words):
            sm = {r for r, p in zip(m.rows, m.prior_probs) if p >= min_prior}
            strong.append(sm)
            for r in sm:
                counts[r] = counts.get(r, 0) + 1
            best = max(range(len(m.rows)), key=lambda c: m.prior_probs[c]) if m.rows else None
            top = tops_by_words.setdefault(ws, set())
            if best is not None and m.prior_probs[best] > 0:
                top.add(m.rows[best])
        index: Dict[str, List[frozenset]] = {}
        for ws in tops_by_words:
            for w in ws:
                index.setdefault(w, []).append(ws)
        longer_of: Dict[frozenset, set] = {}
        for ws in tops_by_words:
            if not ws:
                longer_of[ws] = set()
                continue
            rarest = min(ws, key=lambda w: len(index[w]))
            longer_of[ws] = {r for other in index[rarest] if ws < other
                             for r in tops_by_words[other]}
        for m, sm, ws in zip(group, strong, words):
            longer = longer_of[ws]
            for c, r in enumerate(m.rows):
                support = counts.get(r, 0) - (1 if r in sm else 0)
                m.features[c, i_sup] = math.log1p(min(support, max_support))
                m.features[c, i_long] = float(r in longer)


def add_reader_features(reader, mentions: Sequence[MentionCandidates], entity_vectors,
                        batch_size: int = 16) -> None:
    """Append the one-pass reader's columns (:data:`READER_FEATURES`) to every
    mention's features: its score of each candidate that got a soft token in the
    mention's window, the gap to the mention's best, and whether it was scored."""
    import torch

    from ..models.onepass import window_items

    items, where = window_items(mentions, reader.spec.max_candidates)
    scores: List[List[Any]] = []
    was = reader.training
    reader.eval()
    with torch.inference_mode():
        for b in range(0, len(items), batch_size):
            scores.extend([[x.float().cpu().numpy() for x in per]
                           for per in reader(items[b: b + batch_size], entity_vectors)])
    reader.train(was)
    for j, m in enumerate(mentions):
        cols = numpy.zeros((len(m.rows), len(READER_FEATURES)), dtype="float32")
        item, pos, kept = where[j]
        if item >= 0 and kept:
            got = scores[item][pos]
            low = float(got.min()) - 1.0
            cols[:, 0] = low
            cols[kept, 0] = got
            cols[kept, 2] = 1.0
            cols[:, 1] = cols[:, 0] - float(got.max())
        m.features = numpy.hstack([m.features[:, : len(FEATURES)], cols])
