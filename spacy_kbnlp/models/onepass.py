"""The one-pass reader (``spacy_kbnlp.EntQAOnePassReader.v1``).

It reads a passage once, with every candidate entity of the passage appended as
one *soft token*: the KB's stored entity vector projected into the encoder's
input space (as ETRAG feeds retrieved instances). A per-candidate reader reads
about 64 + 32 word pieces for each (passage, candidate); this one reads the
passage's pieces plus one position per candidate, about 80 + K. Each hinted
mention (its word pieces) is scored against each candidate's output state:

    score(m, e) = scale * <W_m mean(h_m), W_c h_e> + bias

Scores feed the final scorer as features (``reader_score``, ``reader_gap``). The
encoder is saved as its difference from the base it was warm-started from
(``core.delta``), the new heads whole; both with the spec in ``spec.json``.
"""
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.util import registry

from ..errors import Errors

ONEPASS_FORMAT = 1


@dataclass
class OnePassSpec:
    """``name``: the encoder to warm-start from (None: the bundled MiniLM);
    ``entity_dim``: the KB vectors' dimension; ``max_candidates``: soft tokens per
    passage at most."""

    name: Optional[str] = None
    entity_dim: int = 384
    max_candidates: int = 48

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def build(self, device=None) -> "OnePassReader":
        from ..core.torch_io import get_device
        from ..encoders.hf import load_encoder_model, resolve_model_path

        tok, enc = load_encoder_model(resolve_model_path(self.name), self.name)
        return OnePassReader(self, enc, tok).to(get_device(device))


@registry.architectures("spacy_kbnlp.EntQAOnePassReader.v1")
def entqa_onepass_reader(name: Optional[str] = None, entity_dim: int = 384,
                         max_candidates: int = 48) -> OnePassSpec:
    return OnePassSpec(name=name, entity_dim=entity_dim, max_candidates=max_candidates)


class OnePassReader(torch.nn.Module):
    # the new heads learn faster than the pretrained encoder (training.loop.make_optimizer)
    lr_scales = {"entity_proj": 20.0, "mention_proj": 20.0, "cand_proj": 20.0, "out": 20.0}

    def __init__(self, spec: OnePassSpec, encoder, tokenizer):
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.tokenizer = tokenizer
        h = int(encoder.config.hidden_size)
        # the word embeddings stay as pretrained (small delta on disk; soft tokens learn instead)
        encoder.embeddings.word_embeddings.weight.requires_grad_(False)
        self.entity_proj = torch.nn.Linear(spec.entity_dim, h)
        self.mention_proj = torch.nn.Linear(h, h, bias=False)
        self.cand_proj = torch.nn.Linear(h, h, bias=False)
        self.out = torch.nn.Linear(1, 1)
        with torch.no_grad():  # deterministic start: identities, a cosine-like score
            for lin in (self.mention_proj, self.cand_proj):
                lin.weight.copy_(torch.eye(h))
            self.entity_proj.weight.zero_()
            self.entity_proj.weight[: min(h, spec.entity_dim), : min(h, spec.entity_dim)] = \
                torch.eye(min(h, spec.entity_dim))
            self.entity_proj.bias.zero_()
            self.out.weight.fill_(5.0)
            self.out.bias.zero_()

    @property
    def device(self):
        return next(self.parameters()).device

    def forward(self, windows: Sequence[Dict[str, Any]], entity_vectors: numpy.ndarray
                ) -> List[List[torch.Tensor]]:
        """``windows``: per passage ``{"ids": piece ids with [CLS]/[SEP], "rows": KB
        rows of its soft tokens, "mentions": [[lo, hi, [soft token index, ...]], ...]}``
        (``lo``/``hi``: the mention's first/last piece in ``ids``). Returns per window
        per mention the scores of its candidates."""
        dev = self.device
        n_text = max(len(w["ids"]) for w in windows)
        n_soft = max(1, max(len(w["rows"]) for w in windows))
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(windows), n_text), pad, dtype=torch.long)
        mask = torch.zeros((len(windows), n_text + n_soft), dtype=torch.long)
        vecs = torch.zeros((len(windows), n_soft, self.spec.entity_dim))
        for i, w in enumerate(windows):
            ids[i, : len(w["ids"])] = torch.tensor(w["ids"])
            mask[i, : len(w["ids"])] = 1
            if w["rows"]:
                vecs[i, : len(w["rows"])] = torch.from_numpy(
                    numpy.asarray(entity_vectors[w["rows"]], dtype="float32"))
                mask[i, n_text: n_text + len(w["rows"])] = 1
        ids, mask, vecs = ids.to(dev), mask.to(dev), vecs.to(dev)
        words = self.encoder.embeddings.word_embeddings(ids)
        soft = self.entity_proj(vecs)
        embeds = torch.cat([words, soft], dim=1)
        types = torch.cat([torch.zeros_like(ids), torch.ones(len(windows), n_soft, dtype=torch.long,
                                                               device=dev)], dim=1)
        # the passage keeps its positions; every candidate sits at the position after it
        pos = torch.cat([torch.arange(n_text, device=dev).expand(len(windows), n_text),
                         torch.full((len(windows), n_soft), min(n_text, 511), device=dev)], dim=1)
        kwargs = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": pos}
        if int(getattr(self.encoder.config, "type_vocab_size", 0) or 0) > 1:
            kwargs["token_type_ids"] = types
        hidden = self.encoder(**kwargs).last_hidden_state
        cand = self.cand_proj(hidden[:, n_text:])
        out: List[List[torch.Tensor]] = []
        for i, w in enumerate(windows):
            per = []
            for lo, hi, cidx, *_ in w["mentions"]:
                m = self.mention_proj(hidden[i, lo: hi + 1].mean(0))
                c = cand[i, list(cidx)]
                cos = torch.nn.functional.cosine_similarity(c, m.unsqueeze(0), dim=-1)
                per.append(self.out(cos.unsqueeze(-1))[:, 0])
            out.append(per)
        return out


def window_loss(model: OnePassReader, items: Sequence[Dict[str, Any]],
                entity_vectors: numpy.ndarray) -> torch.Tensor:
    """Cross-entropy of each mention's softmax over its candidates and NIL (logit
    0) against its gold candidate (``mentions[j][3]``; -1 = NIL)."""
    scores = model(items, entity_vectors)
    losses = []
    zero = torch.zeros(1, device=model.device)
    for w, per in zip(items, scores):
        for (lo, hi, cidx, gold), s in zip(w["mentions"], per):
            logits = torch.cat([s, zero])
            target = gold if gold >= 0 else len(cidx)
            losses.append(torch.nn.functional.cross_entropy(logits.unsqueeze(0),
                                                            torch.tensor([target], device=model.device)))
    return torch.stack(losses).mean() if losses else zero.sum()


# ---------------------------------------------------------------- save / load
def save_onepass(model: OnePassReader, path: Union[str, Path]) -> None:
    """``spec.json`` + ``delta.safetensors``: the encoder as its int8 difference from
    the base the spec names, the heads whole (their init is fixed, not a base). A
    model loaded with :func:`load_onepass` and not trained since is written as the
    files it was loaded from (no second quantization)."""
    from ..core.delta import base_reference, delta_from_base, write_delta, write_source

    path = Path(path)
    if write_source(model, path):
        return
    path.mkdir(parents=True, exist_ok=True)
    base = model.spec.build(device="cpu").state_dict()
    tensors, check = delta_from_base(model.state_dict(), base,
                                     has_base=lambda n: n.startswith("encoder."), int8=True)
    meta = {"format": ONEPASS_FORMAT, "spec": model.spec.to_dict(), "base_check": check,
            "base": base_reference(model.spec.name), "delta_sha256": write_delta(tensors, path)}
    (path / "spec.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_onepass(path: Union[str, Path], device=None) -> OnePassReader:
    from ..core.delta import DELTA_FILE, load_saved_delta, remember_source
    from ..core.torch_io import get_device

    path = Path(path)
    if not (path / "spec.json").exists():
        raise ValueError(Errors.KBE207.format(kind="one-pass reader", path=path))
    meta = json.loads((path / "spec.json").read_text(encoding="utf-8"))
    model = OnePassSpec(**meta["spec"]).build(device="cpu")
    state = model.state_dict()
    load_saved_delta(state, path, meta, lambda bad: Errors.KBE213.format(
        path=path, name=model.spec.name or "bundled MiniLM", tensors=", ".join(bad[:3])))
    model.load_state_dict(state)
    remember_source(model, path, ["spec.json", DELTA_FILE])
    return model.to(get_device(device)).eval()


def window_items(mentions: Sequence[Any], max_candidates: int,
                 gold: Optional[Sequence[int]] = None
                 ) -> Tuple[List[Dict[str, Any]], List[Tuple[int, int, List[int]]]]:
    """Group hinted mentions (``MentionCandidates`` with ``window``/``pieces``) by
    their window: the window's soft tokens are its mentions' candidates (in their
    order, shared, at most ``max_candidates``). Returns the items and, per
    mention, (item, mention position, the candidate indices that got a soft token)."""
    by_window: Dict[int, List[int]] = {}
    for j, m in enumerate(mentions):
        if m.window is not None:
            by_window.setdefault(id(m.window), []).append(j)
    items: List[Dict[str, Any]] = []
    where: List[Tuple[int, int, List[int]]] = [(-1, -1, []) for _ in mentions]
    for js in by_window.values():
        win = mentions[js[0]].window
        rows: List[int] = []
        slot: Dict[int, int] = {}
        depth = 0
        # round-robin over the mentions' ranked candidates, so every mention gets its best ones
        while len(rows) < max_candidates and any(depth < len(mentions[j].rows) for j in js):
            for j in js:
                if depth < len(mentions[j].rows) and len(rows) < max_candidates:
                    r = mentions[j].rows[depth]
                    if r not in slot:
                        slot[r] = len(rows)
                        rows.append(r)
            depth += 1
        item = {"ids": win.ids, "rows": rows, "mentions": []}
        for j in js:
            m = mentions[j]
            kept = [c for c, r in enumerate(m.rows) if r in slot]
            entry = [m.pieces[0], m.pieces[1], [slot[m.rows[c]] for c in kept]]
            if gold is not None:
                g = gold[j]
                entry.append(kept.index(g) if g in kept else -1)
            where[j] = (len(items), len(item["mentions"]), kept)
            item["mentions"].append(entry)
        items.append(item)
    return items, where
