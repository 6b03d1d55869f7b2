"""The compact form of a seq2seq coreference model: every weight as its low-rank int8
difference from the seeded warm start it was trained from (``core.delta``), a few
MB instead of the full model (``compact.json`` + ``delta.safetensors``; written by
``python -m spacy_kbnlp coref export-compact``, and what ships in
``spacy_kbnlp/assets/seq2seq_coref``). A model loaded from it and not trained since
is saved as the same two files again (``Seq2SeqCorefModel.save``)."""
import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..errors import Errors

COMPACT_SPEC = "compact.json"
COMPACT_FORMAT = "spacy_kbnlp.seq2seq_delta.v1"


def seeded_warm_start(cls: Any, settings: Any, *, seed: int, warm_start: Optional[str] = None,
                      decoder_layers: Optional[int] = None) -> Any:
    """The warm-started encoder-decoder (a ``cls``, i.e. ``Seq2SeqCorefModel``)
    exactly as training built it after fixing the random seed (``init_nlp`` does):
    the new cross-attention and LM-head weights are drawn again, identically. The
    caller's random state is left as it was."""
    import random

    import numpy
    import torch

    from ..core.torch_io import set_seed

    py_state, np_state = random.getstate(), numpy.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            set_seed(seed)
            return cls.load(None, settings, warm_start=warm_start, device="cpu",
                            decoder_layers=decoder_layers)
    finally:
        random.setstate(py_state)
        numpy.random.set_state(np_state)


def save_compact(model: Any, path: Union[str, Path], *, seed: int,
                 warm_start: Optional[str] = None, decoder_layers: Optional[int] = None,
                 rank: int = 16) -> Dict[str, Any]:
    """Write ``delta.safetensors`` and ``compact.json`` for ``model`` (a
    ``Seq2SeqCorefModel``): every weight as its rank-``rank`` int8 difference from
    :func:`seeded_warm_start`. ``seed``, ``warm_start``, ``decoder_layers``: those
    the model was trained with. Returns the spec written."""
    from ..core.delta import base_checks, base_reference, delta_from_base, write_delta
    from ..core.torch_io import dedupe_tied

    base = seeded_warm_start(type(model), model.settings, seed=seed, warm_start=warm_start,
                             decoder_layers=decoder_layers)
    ref = dedupe_tied(base.model.state_dict())
    state = dedupe_tied(model.model.state_dict())
    if set(ref) != set(state) or any(ref[n].shape != state[n].shape for n in ref):
        raise ValueError(Errors.KBE261.format(path=path, name=warm_start or "bundled MiniLM",
                                              tensors="(other layers or vocabulary)"))
    drawn_all = [n for n in ref if "crossattention" in n and n.endswith("weight") and ref[n].ndim == 2]
    for name in drawn_all:  # fine-tuning moved them 7-22 % (2-8 epochs); another draw, 141 %
        rel = float((state[name].float() - ref[name].float()).norm() / ref[name].float().norm())
        if rel > 0.7:
            raise ValueError(Errors.KBE264.format(tensor=name, seed=seed, rel=rel))
    tensors, _ = delta_from_base(state, ref, half=True, int8=True, rank=rank)
    # checksums of drawn and pretrained weights: a warm start drawn differently fails clearly
    drawn = drawn_all[:1]
    kept = [n for n in ref if n.startswith("encoder.") and n.endswith("weight") and ref[n].ndim == 2][:1]
    spec = {"format": COMPACT_FORMAT, "seed": seed, "warm_start": warm_start,
            "decoder_layers": decoder_layers, "rank": rank,
            "settings": dataclasses.asdict(model.settings),
            "base": base_reference(warm_start),
            "base_check": base_checks(ref, drawn + kept)}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    spec["delta_sha256"] = write_delta(tensors, path)
    (path / COMPACT_SPEC).write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return spec


def load_compact(cls: Any, path: Union[str, Path], settings: Any, device: Any = None) -> Any:
    """Rebuild a model written by :func:`save_compact` (a ``cls``), checking the base
    (KBE172, KBE261) and the delta's sha256 (KBE159)."""
    from ..core.delta import DELTA_FILE, load_saved_delta, remember_source
    from ..core.torch_io import get_device

    path = Path(path)
    spec = json.loads((path / COMPACT_SPEC).read_text(encoding="utf-8"))
    stored = spec["settings"]
    for key in ("representation", "max_clusters"):
        if stored[key] != getattr(settings, key):
            raise ValueError(Errors.KBE262.format(path=path, key=key, stored=stored[key],
                                                  value=getattr(settings, key)))
    model = seeded_warm_start(cls, settings, seed=spec["seed"], warm_start=spec["warm_start"],
                              decoder_layers=spec["decoder_layers"])
    load_saved_delta(model.model.state_dict(), path, spec, lambda bad: Errors.KBE261.format(
        path=path, name=spec["warm_start"] or "bundled MiniLM", tensors=", ".join(bad[:3])))
    model.warm_only = False
    remember_source(model.model, path, [COMPACT_SPEC, DELTA_FILE])
    return model.to(get_device(device))
