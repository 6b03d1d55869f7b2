"""RUIE (Liao et al., 2024) retriever training: preference scoring of BM25 candidates,
a keyword-enhanced cross-encoder reward model, and the bi-encoder trained with a
contrastive loss plus KL distillation from the reward model.

1. **Candidates**: for each training query, the ``n_candidates`` BM25 neighbours in
   the demonstration store (never the query's own document).
2. **Preference** ``s(d, x)`` of demonstration ``d`` for query ``x``:
   * ``"llm"`` (RUIE exactly): the average token log-likelihood of the gold output
     ``y_x`` given the prompt made of ``d`` (its input and target) and ``x``'s input,
     under any local Hugging Face causal LM or seq2seq model
     (``LLMPreference`` over ``llm.backends.HFLocalBackend.score``);
   * ``"etrag"``: the same quantity under our trainable relation model: a trained
     ``etrag_relation_extractor`` whose soft prompts are forced to come from the
     instances of ``d`` (``RelationModelPreference``): the average token
     log-likelihood of each gold (directed) label of ``x``'s entity pairs given
     ``d`` and ``x``, averaged over the pairs. Used where no LLM weights exist.
   * ``"label"``: the task signal itself, from the gold labels of the training
     queries (``LabelPreference``): 1 when ``d`` carries one of ``x``'s directed
     labels, 0.5 when only the relation type agrees (other direction), 0 otherwise.
     Needs no model; the queries must be training docs (never test docs).
   * ``"mixed"``: the label preference plus ``weight`` x the model preference
     standardised over each query's candidates (``MixedPreference``), so the model
     orders the demonstrations within a label tier.
   Each run records which signal it used (``ruie_meta.json``).
3. **Reward model**: a cross-encoder (encoder + linear head on the first token) over
   ``(x's marked input, keyword_text(d))``: the annotated spans *and labels* of ``d``
   are marked keywords. Trained with InfoNCE: the most preferred candidate against
   the ``n_negatives`` least preferred ones (among equally preferred candidates, the
   higher BM25 ones: the harder negatives). Queries whose candidates are all equally
   preferred teach nothing and are left out (``informative_queries`` in the meta).
   ``reward_steps = 0``: no reward model, and the bi-encoder learns from the
   preference's positive and negatives alone (no KL term).
4. **Bi-encoder** (warm start: the bundled MiniLM): ``q = enc(x input)``,
   ``k = enc(d input)``, similarity / ``temperature``; loss = InfoNCE(most preferred
   vs. least preferred candidates + in-batch negatives) + ``kl_weight`` *
   KL(reward-model distribution || bi-encoder distribution) over each query's
   candidate list. Saved as a Hugging Face directory (safetensors) for
   ``HFEncoder(path)``, e.g. ``demo_retriever`` with ``retriever = "dense"``.

Both models train with the project's loop (``training.loop.train_loop``; checkpoints in
``output/reward_model`` and ``output/bi_encoder``).
"""
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.tokens import Doc

from ..core.torch_io import get_device, set_seed
from ..errors import Errors
from .render import (NONE_TARGET, doc_key, doc_labels, keyword_text, pair_instances, render_input,
                     render_target, undirected)
from .store import DemoStore

PREFERENCES = ("llm", "etrag", "label", "mixed")


def mine_candidates(store: DemoStore, docs: Sequence[Doc], n_candidates: int) -> List[List[int]]:
    """BM25 candidate rows per query doc, leaving out the doc itself."""
    hits = store.search([render_input(d, store.input_format) for d in docs], n_candidates,
                        retriever="bm25", exclude_keys=[doc_key(d) for d in docs])
    return [[r for r, _ in h] for h in hits]


class LLMPreference:
    """RUIE's signal: ``mean_t log p_LLM(y_t | demonstration, x, y_<t)``."""

    name = "llm"

    def __init__(self, backend, labels: Sequence[str] = ()):
        self.backend = backend
        self.labels = list(labels)

    def __call__(self, query: Doc, demos: Sequence[Dict[str, Any]]) -> List[float]:
        from ..llm.prompts import build_prompt

        prompts = [build_prompt(query, self.labels, demonstrations=[d]) for d in demos]
        target = render_target(query)
        return list(self.backend.score(prompts, [target] * len(prompts)))


class RelationModelPreference:
    """The same log-likelihood under a trained ETRAG component whose soft prompts are
    forced to the demonstration's instances (see module doc)."""

    name = "etrag"

    def __init__(self, etrag_pipe):
        self.pipe = etrag_pipe
        self.module = etrag_pipe.module
        if self.module is None or self.module.n_neighbors == 0 or not len(self.module.bank_instance_keys):
            raise ValueError(Errors.KBE315.format(value="etrag (needs a trained ETRAG component "
                                                        "with n_neighbors > 0)", options=", ".join(PREFERENCES)))

    def _rows(self, demo_key: str) -> Optional[List[int]]:
        rows = self.module._rows_by_key.get(demo_key)
        if not rows:
            return None
        k = self.module.n_neighbors
        return [rows[i % len(rows)] for i in range(k)]

    def __call__(self, query: Doc, demos: Sequence[Dict[str, Any]]) -> List[float]:
        import torch

        insts = pair_instances(query, with_labels=True)
        labels = {l: i for i, l in enumerate(self.pipe.labels)}
        if not insts:
            return [0.0] * len(demos)
        gold = [labels.get(i["label"], labels["no_relation"]) for i in insts]
        texts = [i["text"] for i in insts]
        rows = [self._rows(d["key"]) for d in demos]
        usable = [i for i, r in enumerate(rows) if r is not None]
        out = [float("-inf")] * len(demos)
        if not usable:
            return out
        n = len(insts)
        self.module.eval()
        with torch.no_grad():  # one batch: every (demonstration, query pair) combination
            ll = self.module.gold_loglik(texts * len(usable), gold * len(usable), [None] * (n * len(usable)),
                                         forced=[rows[i] for i in usable for _ in range(n)])
        for j, i in enumerate(usable):
            out[i] = float(ll[j * n:(j + 1) * n].mean())
        return out


class LabelPreference:
    """The task signal from the gold labels of a training query (see module doc):
    1.0 for a demonstration that carries one of the query's directed labels, 0.5 for
    one whose relation type agrees in the other direction only, 0.0 otherwise. A
    query without relations agrees with a demonstration without relations."""

    name = "label"

    def __init__(self, task: str = "re"):
        self.task = task
        self.in_batch = self  # cheap and exact: train_ruie masks in-batch false negatives

    @staticmethod
    def _types(labels) -> set:
        return {undirected(label)[0] for label in labels}

    def __call__(self, query: Doc, demos: Sequence[Dict[str, Any]]) -> List[float]:
        want = set(doc_labels(query, self.task)) or {NONE_TARGET}
        want_types = self._types(want)
        out = []
        for demo in demos:
            have = set(demo.get("labels") or ()) or {NONE_TARGET}
            out.append(1.0 if want & have else 0.5 if want_types & self._types(have) else 0.0)
        return out


class MixedPreference:
    """``label + weight x z(model)``: the label preference plus the model preference
    (e.g. ``RelationModelPreference``) standardised over the query's candidates
    (mean 0, standard deviation 1 over the finite values; a demonstration the model
    cannot score gets the lowest standardised value)."""

    name = "mixed"

    def __init__(self, model: Callable, weight: float = 0.1, label: Optional[Callable] = None):
        if not weight >= 0:
            raise ValueError(Errors.KBE312.format(value=weight, setting="weight", why="must be >= 0"))
        self.model = model
        self.label = label or LabelPreference()
        self.in_batch = self.label
        self.weight = float(weight)

    def __call__(self, query: Doc, demos: Sequence[Dict[str, Any]]) -> List[float]:
        base = self.label(query, demos)
        raw = numpy.asarray(self.model(query, demos), dtype="float64")
        finite = numpy.isfinite(raw)
        z = numpy.zeros(len(raw))
        if finite.any():
            vals = raw[finite]
            z[finite] = (vals - vals.mean()) / (vals.std() or 1.0)
            z[~finite] = z[finite].min() - 1.0
        return [float(b + self.weight * v) for b, v in zip(base, z)]


def score_candidates(preference: Callable, store: DemoStore, docs: Sequence[Doc],
                     candidates: Sequence[Sequence[int]], *, show_progress: bool = False) -> List[List[float]]:
    items = zip(docs, candidates)
    if show_progress:
        from tqdm.auto import tqdm

        items = tqdm(list(items), desc=f"Preference ({preference.name})", unit="query")
    return [preference(doc, [store.records[r] for r in rows]) for doc, rows in items]


# --- models -------------------------------------------------------------------------
def _encoder_and_tokenizer(path: Optional[str]):
    from ..encoders.hf import load_encoder_model, resolve_model_path

    tok, model = load_encoder_model(resolve_model_path(path), path)
    return model, tok


def _mean_pool(hidden, mask):
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


class RewardModel:
    """Keyword-enhanced cross-encoder: ``score(query_text, demo_keyword_text)``."""

    def __init__(self, path: Optional[str] = None, max_length: int = 192, device=None):
        import torch

        self.encoder, self.tokenizer = _encoder_and_tokenizer(path)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        self.max_length = max_length
        self.device = get_device(device)
        self.encoder.to(self.device)
        self.head.to(self.device)

    def parameters(self):
        return list(self.encoder.parameters()) + list(self.head.parameters())

    def train(self, mode: bool = True):
        self.encoder.train(mode)
        self.head.train(mode)

    def scores(self, queries: Sequence[str], demos: Sequence[str]):
        enc = self.tokenizer(list(queries), list(demos), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self.encoder(**enc).last_hidden_state[:, 0]
        return self.head(hidden).squeeze(-1)


class BiEncoder:
    def __init__(self, path: Optional[str] = None, max_length: int = 128, device=None):
        self.encoder, self.tokenizer = _encoder_and_tokenizer(path)
        self.max_length = max_length
        self.device = get_device(device)
        self.encoder.to(self.device)

    def parameters(self):
        return list(self.encoder.parameters())

    def train(self, mode: bool = True):
        self.encoder.train(mode)

    def embed(self, texts: Sequence[str]):
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        return _mean_pool(self.encoder(**enc).last_hidden_state, enc["attention_mask"])

    def save(self, path: Union[str, Path]) -> None:
        from ..encoders.hf import save_hf_dir

        save_hf_dir(self.encoder, self.tokenizer, path)


def _optimise(module, n_items: int, loss_fn: Callable[[List[int]], Any], output: Path, *,
              steps: int, lr: float, warmup: float, batch_size: int, seed: int, device,
              show_progress: bool, log: Callable[[str], None], what: str,
              max_minutes: float = 0.0) -> List[float]:
    """Run the project's training loop (``training.loop.train_loop``: AdamW, linear
    warmup/decay, clipping, safetensors checkpoints) over item indices; ``max_minutes``
    (0 = none) stops it cleanly after that time. Returns the loss of every step run."""
    from ..training.loop import TrainingConfig, train_loop

    losses: List[float] = []

    def on_step(step: int, info: Dict[str, Any]) -> bool:
        losses.append(float(info["loss"]))
        if step % 25 == 0 or step == steps:
            log(f"{what} step {step}/{steps} loss {info['loss']:.4f}")
        return False

    config = TrainingConfig(learning_rate=lr, warmup_ratio=warmup, batch_size=batch_size,
                            max_steps=steps, seed=seed, device=device, log_every=25,
                            max_minutes=max_minutes)
    train_loop(module, list(range(n_items)), loss_fn, config, output, on_step=on_step,
               show_progress=show_progress)
    return losses


def _finite_mean(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if numpy.isfinite(v)]
    return round(float(numpy.mean(vals)), 4) if vals else None


NEGATIVES = ("least", "closest")


def _split(prefs: Sequence[float], n_neg: int, negatives: str = "least") -> Tuple[int, List[int]]:
    """The most preferred candidate and ``n_neg`` negatives: the least preferred
    candidates (``"least"``) or the most preferred ones strictly below the positive
    (``"closest"``: with the label preference, the same relation in the other
    direction first, then the candidates of other labels; the least preferred fill
    up when too few are below the positive). Ties go to the earlier (higher BM25)
    candidate on both sides: the best-ranked positive and the hardest negatives."""
    rows = range(len(prefs))
    pos = max(rows, key=prefs.__getitem__)
    least = sorted(rows, key=prefs.__getitem__)
    if negatives == "least":
        return pos, least[:n_neg]
    below = sorted((r for r in rows if prefs[r] < prefs[pos]), key=lambda r: -prefs[r])[:n_neg]
    return pos, below + [r for r in least if r != pos and r not in below][:n_neg - len(below)]


def train_ruie(
    store: DemoStore,
    docs: Sequence[Doc],
    preference: Callable,
    output: Union[str, Path],
    *,
    n_candidates: int = 16,
    n_negatives: int = 4,
    batch_size: int = 8,
    reward_steps: int = 200,
    bi_steps: int = 200,
    lr: float = 2e-5,
    temperature: float = 0.05,
    kl_weight: float = 1.0,
    warmup: float = 0.1,
    encoder: Optional[str] = None,
    seed: int = 0,
    device: Optional[str] = None,
    show_progress: bool = False,
    log: Callable[[str], None] = print,
    max_minutes: float = 0.0,
    negatives: str = "least",
) -> Dict[str, Any]:
    """Train the reward model and the bi-encoder on ``docs`` (annotated queries, all
    in ``store``); write ``output/encoder`` (the bi-encoder) and
    ``output/ruie_meta.json``. Returns the metadata (preference used, timings).
    ``encoder``: the starting weights of both (default: the bundled MiniLM), e.g. a
    trained ``output/encoder`` to train on; ``max_minutes`` (0 = none): the bi-encoder
    stops after that time (``bi_steps_done`` in the metadata), saved as usual;
    ``negatives``: which candidates are each query's negatives (``_split``: ``"least"``
    preferred, or ``"closest"`` below the positive, e.g. the opposite direction)."""
    import torch

    if negatives not in NEGATIVES:
        raise ValueError(Errors.KBE326.format(value=negatives, options=", ".join(NEGATIVES)))
    if len(docs) < 2 or len(store) < n_negatives + 1:
        raise ValueError(Errors.KBE316.format(need=max(2, n_negatives + 1), what="queries/demonstrations",
                                              n=min(len(docs), len(store))))
    set_seed(seed)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cands = mine_candidates(store, docs, n_candidates)
    keep = [i for i, c in enumerate(cands) if len(c) >= n_negatives + 1]
    docs = [docs[i] for i in keep]
    cands = [cands[i] for i in keep]
    prefs = score_candidates(preference, store, docs, cands, show_progress=show_progress)
    t_pref = time.perf_counter() - t0
    q_texts = [render_input(d, store.input_format) for d in docs]
    groups = []  # (query idx, [positive row] + negative rows, preference of those)
    for i, (rows, pr) in enumerate(zip(cands, prefs)):
        pos, negs = _split(pr, n_negatives, negatives)
        sel = [pos] + negs
        if not pr[pos] > max(pr[j] for j in negs):
            continue  # every candidate equally preferred: no signal
        groups.append((i, [rows[j] for j in sel], [pr[j] for j in sel], rows, pr))
    if not groups:
        raise ValueError(Errors.KBE322.format(n=len(docs), preference=getattr(preference, "name", preference)))
    # a cheap exact signal (the label preference) also spots in-batch false negatives
    in_batch = getattr(preference, "in_batch", None)
    def batch(items: List[int]) -> List[Tuple]:
        return [groups[i] for i in items]

    # reward model: InfoNCE, positive first (reward_steps 0: none, no KL term)
    reward = RewardModel(encoder, device=device) if reward_steps else None

    def reward_loss(items: List[int]):
        b = batch(items)
        qs = [q_texts[g[0]] for g in b for _ in g[1]]
        ds = [keyword_text(store.records[r]["input"], store.records[r]["target"]) for g in b for r in g[1]]
        s = reward.scores(qs, ds).view(len(b), -1)
        return torch.nn.functional.cross_entropy(s, torch.zeros(len(b), dtype=torch.long, device=s.device))

    t1 = time.perf_counter()
    reward_losses: List[Optional[float]] = [None]
    if reward is not None:
        reward_losses = _optimise(torch.nn.ModuleDict({"encoder": reward.encoder, "head": reward.head}),
                                  len(groups), reward_loss, output / "reward_model", steps=reward_steps,
                                  lr=lr, warmup=warmup, batch_size=batch_size, seed=seed, device=device,
                                  show_progress=show_progress, log=log, what="reward")
        reward.train(False)
    t_reward = time.perf_counter() - t1

    # bi-encoder: contrastive (+ in-batch negatives) + KL from the reward model
    bi = BiEncoder(encoder, device=device)

    def bi_loss(items: List[int]):
        b = batch(items)
        n = len(b[0][1])
        q = bi.embed([q_texts[g[0]] for g in b])                              # (B, d)
        d = bi.embed([store.records[r]["input"] for g in b for r in g[1]])   # (B*n, d)
        sims = q @ d.T / temperature                                           # (B, B*n)
        target = torch.arange(len(b), device=sims.device) * n                  # own positive
        if in_batch is not None:  # other queries' demonstrations as good as the own positive
            demos = [store.records[r] for g in b for r in g[1]]
            for i, g in enumerate(b):
                agree = numpy.asarray(in_batch(docs[g[0]], demos)) >= g[2][0]
                agree[i * n:(i + 1) * n] = False
                sims[i, torch.as_tensor(agree, device=sims.device)] = float("-inf")
        own = torch.stack([sims[i, i * n:(i + 1) * n] for i in range(len(b))])  # (B, n)
        if reward is None:
            return torch.nn.functional.cross_entropy(sims, target)
        with torch.no_grad():
            qs = [q_texts[g[0]] for g in b for _ in g[1]]
            ds = [keyword_text(store.records[r]["input"], store.records[r]["target"]) for g in b for r in g[1]]
            teacher = torch.softmax(reward.scores(qs, ds).view(len(b), n), -1)
        kl = torch.nn.functional.kl_div(torch.log_softmax(own, -1), teacher, reduction="batchmean")
        return torch.nn.functional.cross_entropy(sims, target) + kl_weight * kl

    t2 = time.perf_counter()
    bi_losses = _optimise(bi.encoder, len(groups), bi_loss, output / "bi_encoder", steps=bi_steps,
                          lr=lr, warmup=warmup, batch_size=batch_size, seed=seed, device=device,
                          show_progress=show_progress, log=log, what="bi-encoder",
                          max_minutes=max_minutes)
    bi.train(False)
    t_bi = time.perf_counter() - t2
    bi.save(output / "encoder")
    meta = {"preference": getattr(preference, "name", str(preference)), "queries": len(docs),
            "informative_queries": len(groups), "in_batch_masking": in_batch is not None,
            "n_candidates": n_candidates, "n_negatives": n_negatives, "negatives": negatives,
            "batch_size": batch_size,
            "reward_steps": reward_steps, "bi_steps": bi_steps, "lr": lr, "temperature": temperature,
            "kl_weight": kl_weight, "preference_s": round(t_pref, 1), "reward_s": round(t_reward, 1),
            "bi_encoder_s": round(t_bi, 1), "bi_steps_done": len(bi_losses),
            "reward_final_loss": reward_losses[-1],
            "bi_final_loss": bi_losses[-1],
            "positive_pref_mean": _finite_mean([g[2][0] for g in groups]),
            "negative_pref_mean": _finite_mean([v for g in groups for v in g[2][1:]])}
    srsly.write_json(output / "ruie_meta.json", meta)
    return meta
