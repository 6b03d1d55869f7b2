"""Torch helpers shared by every component: device choice, seeds, safetensors I/O."""
import random
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy

from ..errors import Errors


def get_device(device: Optional[Union[str, "torch.device"]] = None) -> "torch.device":
    """The torch device to use.

    ``device`` overrides; otherwise follow thinc's default device, so that
    ``spacy.require_gpu()`` and ``--gpu-id`` put our models on the GPU.
    """
    import torch

    if device is not None and device != "":
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(Errors.KBE155.format(device=device)) from err
    try:
        from thinc.api import get_torch_default_device

        return get_torch_default_device()
    except Exception:  # thinc without torch support: CPU
        return torch.device("cpu")


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def dedupe_tied(state: Dict[str, "torch.Tensor"]) -> Dict[str, "torch.Tensor"]:
    """Drop tensors that share storage with an earlier one (tied weights), which
    ``safetensors.torch.save`` refuses, and make the rest contiguous."""
    seen = set()
    out = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape)) if tensor.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[name] = tensor.detach().contiguous()
    return out


def save_state(module: "torch.nn.Module") -> bytes:
    import safetensors.torch

    return safetensors.torch.save(dedupe_tied(module.state_dict()))


def load_state(module: "torch.nn.Module", data: bytes, device=None) -> "torch.nn.Module":
    import safetensors.torch

    state = safetensors.torch.load(data)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"Unexpected weights in saved state: {sorted(unexpected)[:5]}")
    # missing keys are allowed only for tied weights that dedupe_tied removed
    return module.to(get_device(device))


def folder_to_bytes(write: Callable[[Path], None]) -> bytes:
    """``to_bytes`` for a component that serializes to a folder: ``write(tmp_dir)``,
    then every file under it, msgpack'ed as ``{relative path: bytes}`` (no pickle)."""
    import srsly
    from spacy.util import make_tempdir

    with make_tempdir() as tmp:
        write(tmp)
        files = {str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*") if p.is_file()}
    return srsly.msgpack_dumps(files)


def folder_from_bytes(data: bytes, read: Callable[[Path], Any]) -> Any:
    """The inverse of :func:`folder_to_bytes`: unpack the files into a temporary
    folder and return ``read(folder)`` (which must not keep memory maps into it)."""
    import srsly
    from spacy.util import make_tempdir

    files = srsly.msgpack_loads(data)
    with make_tempdir() as tmp:
        for rel, content in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return read(tmp)
