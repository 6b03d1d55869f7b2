"""EntQA bi-encoder retriever: registered architectures, the four score functions
of Chapter 3 (dual, poly-encoder, multi-vector, sum-of-max) and the multi-label
NCE loss of Chapter 6 (eq. 6.1).

All four score functions are instances of the general form (3.10)
``s(x, y) = 1^T Q^T K Attn(K^T Q)``; each keeps a few vectors per entity
(``entity_reps``, computed once per KB and cached) and a few per passage
(``passage_reps``), and scores every passage against every entity with
``score``. With ``normalize`` the vectors are L2-normalized and scores are
multiplied by ``scale`` (a fixed inverse temperature), so that the bundled
sentence encoder retrieves well before any training.

The architectures return light *specs*; weights are loaded by ``spec.build()``
(from a local model path, or from a saved component directory), never at
config resolution.
"""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.util import registry

from ..encoders.hf import load_encoder_model, save_hf_dir
from ..errors import Errors

SCORE_KINDS = ("dual", "poly", "multi", "som")
POOLINGS = ("mean", "cls")
RETRIEVER_FORMAT = 1


# ---------------------------------------------------------------- losses

def multilabel_nce_loss(logits, gold, valid=None, reduction: str = "mean"):
    """Multi-label NCE (EntQA eq. 6.1): for every gold column ``g`` of a row,
    ``-log exp(s_g) / (exp(s_g) + sum_{n in negatives} exp(s_n))`` where the
    negatives are the valid, non-gold columns of that row. Other golds never
    appear in a gold's normalizer.

    ``logits``: (..., C); ``gold``, ``valid``: bool (..., C). Rows without a gold
    contribute nothing. ``reduction``: "mean" over golds, or "sum".
    """
    gold = gold.bool()
    valid = torch.ones_like(gold) if valid is None else valid.bool()
    gold = gold & valid
    neg = valid & ~gold
    neg_logits = logits.masked_fill(~neg, float("-inf"))
    neg_lse = torch.logsumexp(neg_logits, dim=-1, keepdim=True)  # (..., 1), -inf if no negative
    norm = torch.logaddexp(logits, neg_lse.expand_as(logits))
    per = (norm - logits).masked_fill(~gold, 0.0)
    total = per.sum()
    if reduction == "sum":
        return total
    return total / gold.sum().clamp(min=1)


def multilabel_softmax_loss(logits, gold, valid=None, reduction: str = "mean"):
    """Log-likelihood of every gold column under one softmax over the valid columns
    of its row (EntQA reader objective, eq. 6.2): ``-sum_g log softmax(s)_g``. Unlike
    :func:`multilabel_nce_loss` the golds of a row share one normalizer, so the model
    learns the distribution it is decoded with (several golds split the mass).

    ``logits``: (..., C); ``gold``, ``valid``: bool (..., C). Rows without a gold
    contribute nothing. ``reduction``: "mean" over golds, or "sum".
    """
    gold = gold.bool()
    valid = torch.ones_like(gold) if valid is None else valid.bool()
    gold = gold & valid
    logp = torch.log_softmax(logits.masked_fill(~valid, float("-inf")), dim=-1)
    total = -logp.masked_fill(~gold, 0.0).sum()
    if reduction == "sum":
        return total
    return total / gold.sum().clamp(min=1)


# ---------------------------------------------------------------- score functions

@dataclass
class ScoreSpec:
    """Registered description of a score function (built into a torch module)."""

    kind: str = "dual"
    n_codes: int = 16        # poly: m' code vectors
    n_vectors: int = 8       # multi: m entity vectors
    proj_dim: Optional[int] = None   # multi/som: project token vectors to this size

    def __post_init__(self):
        if self.kind not in SCORE_KINDS:
            raise ValueError(Errors.KBE203.format(kind=self.kind, options=", ".join(SCORE_KINDS)))

    def build(self, dim: int, normalize: bool, scale: float) -> "ScoreFunction":
        return ScoreFunction(self, dim, normalize, scale)


@registry.misc("spacy_kbnlp.DualScore.v1")
def dual_score() -> ScoreSpec:
    """Dual encoder: ``E_1(x)^T F_1(y)`` (one vector per passage and per entity)."""
    return ScoreSpec("dual")


@registry.misc("spacy_kbnlp.PolyScore.v1")
def poly_score(n_codes: int = 16) -> ScoreSpec:
    """Poly-encoder: ``F_1(y)^T C_m(x, y)`` with ``n_codes`` learned code vectors."""
    return ScoreSpec("poly", n_codes=n_codes)


@registry.misc("spacy_kbnlp.MultiVectorScore.v1")
def multi_vector_score(n_vectors: int = 8, proj_dim: Optional[int] = None) -> ScoreSpec:
    """Multi-vector: ``max_t E_1(x)^T F_t(y)`` over the first ``n_vectors`` entity vectors."""
    return ScoreSpec("multi", n_vectors=n_vectors, proj_dim=proj_dim)


@registry.misc("spacy_kbnlp.SumOfMaxScore.v1")
def sum_of_max_score(proj_dim: Optional[int] = None) -> ScoreSpec:
    """Sum-of-max (ColBERT): ``sum_t max_t' E_t(x)^T F_t'(y)``, averaged over the
    passage tokens so that the scale does not grow with the passage length."""
    return ScoreSpec("som", proj_dim=proj_dim)


class ScoreFunction(torch.nn.Module):
    """One of the four score functions; holds the poly codes or the optional
    token projection (trained with the encoders)."""

    def __init__(self, spec: ScoreSpec, dim: int, normalize: bool, scale: float):
        super().__init__()
        self.spec = spec
        self.kind = spec.kind
        self.normalize = normalize
        self.scale = float(scale) if normalize else 1.0
        self.proj = None
        if spec.kind in ("multi", "som") and spec.proj_dim:
            self.proj = torch.nn.Linear(dim, spec.proj_dim)
        if spec.kind == "poly":
            self.codes = torch.nn.Parameter(torch.randn(spec.n_codes, dim) * 0.02)

    # --- helpers
    def _norm(self, x):
        if self.normalize:
            return torch.nn.functional.normalize(x, p=2, dim=-1)
        return x

    def _tokens(self, hidden):
        return self.proj(hidden) if self.proj is not None else hidden

    # --- reps: (n, m, d) vectors + (n, m) bool mask
    def passage_reps(self, hidden, mask, pooled):
        ones = torch.ones(hidden.shape[0], 1, dtype=torch.bool, device=hidden.device)
        if self.kind in ("dual", "multi"):
            return self._norm(pooled).unsqueeze(1), ones
        if self.kind == "poly":
            att = torch.einsum("btd,md->bmt", hidden, self.codes)
            att = att.masked_fill(~mask.bool().unsqueeze(1), float("-inf")).softmax(-1)
            codes = torch.einsum("bmt,btd->bmd", att, hidden)
            full = torch.ones(codes.shape[:2], dtype=torch.bool, device=hidden.device)
            return self._norm(codes), full
        # som: every token but the padding
        return self._norm(self._tokens(hidden)), mask.bool()

    def entity_reps(self, hidden, mask, pooled):
        ones = torch.ones(hidden.shape[0], 1, dtype=torch.bool, device=hidden.device)
        if self.kind in ("dual", "poly"):
            return self._norm(pooled).unsqueeze(1), ones
        if self.kind == "multi":
            m = self.spec.n_vectors
            first = self._tokens(pooled.unsqueeze(1))
            rest = self._tokens(hidden[:, 1:m])
            vecs = torch.cat([first, rest], dim=1)
            vmask = torch.cat([ones, mask[:, 1:m].bool()], dim=1)
            return self._norm(vecs), vmask
        return self._norm(self._tokens(hidden)), mask.bool()

    # --- scores of every passage against every entity: (B, N)
    def score(self, p, pm, e, em):
        e = e.to(p.dtype)
        if self.kind == "dual":
            return self.scale * (p[:, 0] @ e[:, 0].T)
        if self.kind == "poly":
            a = torch.einsum("bmd,nd->bnm", p, e[:, 0])
            w = a.softmax(-1)
            return self.scale * (w * a).sum(-1)
        if self.kind == "multi":
            s = torch.einsum("bd,nmd->bnm", p[:, 0], e)
            s = s.masked_fill(~em.bool().unsqueeze(0), float("-inf"))
            return self.scale * s.max(-1).values
        # som, chunked over entities to bound memory
        out = []
        pmf = pm.to(p.dtype)
        n_tok = pmf.sum(-1).clamp(min=1)
        for i in range(0, e.shape[0], 256):
            ec, emc = e[i: i + 256], em[i: i + 256].bool()
            s = torch.einsum("btd,nmd->bntm", p, ec)
            s = s.masked_fill(~emc[None, :, None, :], float("-inf")).max(-1).values
            s = (s * pmf[:, None, :]).sum(-1) / n_tok[:, None]
            out.append(s)
        return self.scale * torch.cat(out, dim=1)


# ---------------------------------------------------------------- bi-encoder

def pool(hidden, mask, pooling: str):
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _uses_token_types(model) -> bool:
    return int(getattr(model.config, "type_vocab_size", 0) or 0) > 1


def run_encoder(model, batch: Dict[str, Any]):
    """Last hidden states of an HF encoder on a padded batch (token types only
    where the model has them)."""
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if _uses_token_types(model) and "token_type_ids" in batch:
        kwargs["token_type_ids"] = batch["token_type_ids"]
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
    return model(**kwargs).last_hidden_state


class BiEncoder(torch.nn.Module):
    """Passage encoder + entity encoder (the same module when ``shared_encoder``)
    + score function."""

    def __init__(self, spec: "RetrieverSpec", passage_model, entity_model, tokenizer):
        super().__init__()
        self.spec = spec
        self.passage_model = passage_model
        # shared weights: the same module object (saved once)
        self.entity_model = entity_model if entity_model is not None else passage_model
        self.tokenizer = tokenizer
        dim = int(passage_model.config.hidden_size)
        self.score_fn = spec.score.build(dim, spec.normalize, spec.scale)

    @property
    def shared(self) -> bool:
        return self.entity_model is self.passage_model

    def encode_passages(self, batch):
        hidden = run_encoder(self.passage_model, batch)
        mask = batch["attention_mask"]
        return self.score_fn.passage_reps(hidden, mask, pool(hidden, mask, self.spec.pooling))

    def encode_entities(self, batch):
        hidden = run_encoder(self.entity_model, batch)
        mask = batch["attention_mask"]
        return self.score_fn.entity_reps(hidden, mask, pool(hidden, mask, self.spec.pooling))

    def score(self, p, pm, e, em):
        return self.score_fn.score(p, pm, e, em)

    def forward(self, passages, entities, cand_index):
        """Scores (B, C) of each passage against its candidates; ``cand_index``
        (B, C) indexes the rows of the entity batch, -1 = padding (score -inf)."""
        p, pm = self.encode_passages(passages)
        e, em = self.encode_entities(entities)
        all_scores = self.score(p, pm, e, em)  # (B, N)
        idx = cand_index.clamp(min=0)
        out = all_scores.gather(1, idx)
        return out.masked_fill(cand_index < 0, float("-inf"))


# ---------------------------------------------------------------- spec + (de)serialization

@dataclass
class RetrieverSpec:
    """A registered retriever architecture: what to build, not the weights."""

    name: Optional[str] = None
    score: ScoreSpec = field(default_factory=ScoreSpec)
    shared_encoder: bool = True
    pooling: str = "mean"
    normalize: bool = True
    scale: float = 20.0
    max_passage_pieces: int = 64
    max_entity_pieces: int = 32

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(Errors.KBE152.format(pooling=self.pooling, name=self.name,
                                                  options=", ".join(POOLINGS)))

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["score"] = asdict(self.score)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RetrieverSpec":
        d = dict(d)
        d["score"] = ScoreSpec(**d.get("score", {}))
        return cls(**d)

    def build(self, path: Optional[Union[str, Path]] = None, device=None):
        """The bi-encoder: pretrained from ``self.name`` (local path or the bundled
        MiniLM), or the weights saved by ``save_retriever`` under ``path``."""
        if path is not None:
            return load_retriever(path, device=device)
        from ..core.torch_io import get_device
        from ..encoders.hf import resolve_model_path

        src = resolve_model_path(self.name)
        tok, pm = load_encoder_model(src, self.name)
        em = None if self.shared_encoder else load_encoder_model(src, self.name, tokenizer=False)[1]
        return BiEncoder(self, pm, em, tok).to(get_device(device)).eval()


def save_heads(module, path: Path, exclude: Sequence[str]) -> None:
    """The parameters outside the HF encoders (score heads) as safetensors."""
    from ..core.torch_io import save_state

    heads = torch.nn.Module()
    for name, child in module.named_children():
        if name not in exclude:
            heads.add_module(name, child)
    path.write_bytes(save_state(heads))


def load_heads(module, path: Path, exclude: Sequence[str], device=None) -> None:
    from ..core.torch_io import load_state

    heads = torch.nn.Module()
    for name, child in module.named_children():
        if name not in exclude:
            heads.add_module(name, child)
    if path.exists():
        load_state(heads, path.read_bytes(), device)


ENCODERS = ("passage_model", "entity_model", "tokenizer")


def save_retriever(model, path: Union[str, Path]) -> None:
    """Write ``spec.json`` and the weights, each with its sha256 in the spec. A
    retriever whose base ships in a package (the bundled MiniLM) is written as its
    exact difference from that base (``delta.safetensors``: the changed tensors and
    the heads; nothing for the zero-shot retriever); any other as ``passage/`` (+
    ``entity/`` unless shared) and ``heads.safetensors``."""
    from ..core.delta import base_reference, delta_from_base, write_delta
    from ..core.integrity import weights_files

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    spec = model.spec.to_dict()
    spec["shared_encoder"] = model.shared
    meta: Dict[str, Any] = {"format": RETRIEVER_FORMAT, "spec": spec}
    base = base_reference(model.spec.name)
    if "package" in base:
        # a shared encoder is one set of tensors under two names: keep the passage
        # names only (safetensors refuses shared tensors, and the delta must be added once)
        skip = "entity_model." if model.shared else None

        def own(state: Dict[str, Any]) -> Dict[str, Any]:
            return {k: v for k, v in state.items() if skip is None or not k.startswith(skip)}

        fresh = own(model.spec.build(device="cpu").state_dict())
        tensors, meta["base_check"] = delta_from_base(
            own(model.state_dict()), fresh, has_base=lambda n: n.startswith(ENCODERS[:2]))
        meta.update(delta=True, base=base, delta_sha256=write_delta(tensors, path))
    else:
        save_hf_dir(model.passage_model, model.tokenizer, path / "passage")
        if not model.shared:
            save_hf_dir(model.entity_model, None, path / "entity")
        save_heads(model, path / "heads.safetensors", ENCODERS)
        meta["sha256"] = weights_files(path)
    (path / "spec.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def read_spec(path: Path, kind: str) -> Dict[str, Any]:
    file = path / "spec.json"
    if not file.exists():
        raise ValueError(Errors.KBE207.format(kind=kind, path=path))
    return json.loads(file.read_text(encoding="utf-8"))


def load_retriever(path: Union[str, Path], device=None):
    """Rebuild a bi-encoder saved by ``save_retriever`` (offline, local files only),
    after checking its weights against the sha256 in its spec."""
    from ..core.delta import load_saved_delta
    from ..core.integrity import check_files
    from ..core.torch_io import get_device

    path = Path(path)
    meta = read_spec(path, "retriever")
    spec = RetrieverSpec.from_dict(meta["spec"])
    if meta.get("delta"):
        model = spec.build(device="cpu")
        state = model.state_dict()
        load_saved_delta(state, path, meta, lambda bad: Errors.KBE213.format(
            path=path, name=spec.name or "bundled MiniLM", tensors=", ".join(bad[:3])))
        return model.to(get_device(device)).eval()
    check_files(path, meta.get("sha256"))
    tok, pm = load_encoder_model(str(path / "passage"), str(path))
    em = None if spec.shared_encoder else load_encoder_model(str(path / "entity"), str(path),
                                                   tokenizer=False)[1]
    model = BiEncoder(spec, pm, em, tok)
    load_heads(model, path / "heads.safetensors", ENCODERS, device)
    return model.to(get_device(device)).eval()


@registry.architectures("spacy_kbnlp.EntQARetriever.v1")
def entqa_retriever(
    name: Optional[str] = None,
    score: Optional[ScoreSpec] = None,
    shared_encoder: bool = True,
    pooling: str = "mean",
    normalize: bool = True,
    scale: float = 20.0,
    max_passage_pieces: int = 64,
    max_entity_pieces: int = 32,
) -> RetrieverSpec:
    """EntQA bi-encoder over passages and entity texts, warm-started from ``name``
    (a local Hugging Face encoder; None = the bundled all-MiniLM-L6-v2).
    ``score`` is one of the registered score functions (default dual)."""
    return RetrieverSpec(name=name, score=score or ScoreSpec("dual"), shared_encoder=shared_encoder,
                         pooling=pooling, normalize=normalize, scale=scale,
                         max_passage_pieces=max_passage_pieces,
                         max_entity_pieces=max_entity_pieces)


# ---------------------------------------------------------------- batched helpers

def encode_entity_texts(model, pieces: List[List[int]], *, batch_size: int = 64,
                        device=None, show_progress: bool = False) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Entity reps (N, m, d) float32 and mask (N, m) for entity piece lists, in
    batches sorted by length (the output keeps the input order)."""
    from .passages import Batch, entity_input, special_ids

    cls, sep, pad = special_ids(model.tokenizer)
    device = device or next(model.parameters()).device
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]), reverse=True)
    reps: List[Optional[numpy.ndarray]] = [None] * len(pieces)
    masks: List[Optional[numpy.ndarray]] = [None] * len(pieces)
    batches = range(0, len(order), batch_size)
    if show_progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="Encoding entities", unit="batch")
    with torch.inference_mode():
        for b in batches:
            idx = order[b: b + batch_size]
            seqs = [entity_input(pieces[i], cls, sep) for i in idx]
            batch = Batch.pad(seqs, [[0] * len(s) for s in seqs], pad).to_torch(device)
            e, em = model.encode_entities(batch)
            e, em = e.float().cpu().numpy(), em.cpu().numpy()
            for j, i in enumerate(idx):
                reps[i], masks[i] = e[j], em[j]
    if not pieces:
        return numpy.zeros((0, 1, 1), dtype="float32"), numpy.zeros((0, 1), dtype=bool)
    m = max(r.shape[0] for r in reps)
    d = reps[0].shape[-1]
    out = numpy.zeros((len(pieces), m, d), dtype="float32")
    out_mask = numpy.zeros((len(pieces), m), dtype=bool)
    for i, (r, k) in enumerate(zip(reps, masks)):
        out[i, : r.shape[0]] = r
        out_mask[i, : k.shape[0]] = k
    return out, out_mask


def topk_exhaustive(model, p, pm, entity_reps: numpy.ndarray, entity_mask: numpy.ndarray,
                    k: int, chunk: int = 4096, exclude: Optional[List[set]] = None):
    """Top-``k`` (scores, rows) of every passage over all cached entity reps,
    scored exactly with the model's score function in entity chunks.
    ``exclude[i]`` = rows never returned for passage ``i``."""
    n = entity_reps.shape[0]
    k = min(k, n)
    best_s = None
    best_i = None
    with torch.inference_mode():
        for i in range(0, n, chunk):
            e = torch.from_numpy(entity_reps[i: i + chunk]).to(p.device)
            em = torch.from_numpy(entity_mask[i: i + chunk]).to(p.device)
            s = model.score(p, pm, e, em).float()
            if exclude:
                for b, rows in enumerate(exclude):
                    for r in rows:
                        if i <= r < i + chunk:
                            s[b, r - i] = float("-inf")
            ids = torch.arange(i, i + s.shape[1], device=s.device).expand_as(s)
            if best_s is not None:
                s = torch.cat([best_s, s], 1)
                ids = torch.cat([best_i, ids], 1)
            top = s.topk(min(k, s.shape[1]), dim=1)
            best_s, best_i = top.values, ids.gather(1, top.indices)
    return best_s.cpu().numpy(), best_i.cpu().numpy()
