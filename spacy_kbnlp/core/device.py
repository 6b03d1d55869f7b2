"""Device placement of a component's torch weights: one place for every component.

The device is looked up at each call (:func:`current_device`): the component's
``device`` setting when given, else thinc's current ops (``spacy.require_gpu()``,
``spacy.require_cpu()``, ``--gpu-id``). :func:`place` moves the modules there
lazily, before a component predicts, so weights and inputs always meet on the same
device, whether ``require_gpu`` was called before or after ``spacy.load``.
"""
from typing import Iterable, Optional, Union

from .torch_io import get_device


def current_device(override: Optional[Union[str, "torch.device"]] = None) -> "torch.device":
    """The device a component runs on now (see the module doc)."""
    return get_device(override)


def module_device(module: "torch.nn.Module") -> Optional["torch.device"]:
    """The device of ``module``'s first parameter or buffer (None: it has neither)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


def same_device(a: "torch.device", b: "torch.device") -> bool:
    """``cuda`` and ``cuda:<current>`` are the same device."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        if a.type != "cuda":
            return True
        import torch

        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (
            b.index if b.index is not None else current)
    return a.index == b.index


def place(modules: Iterable[Optional["torch.nn.Module"]], device: "torch.device") -> bool:
    """Move every module that is not on ``device`` there; True when one moved."""
    moved = False
    for module in modules:
        if module is None:
            continue
        where = module_device(module)
        if where is not None and not same_device(where, device):
            module.to(device)
            moved = True
    return moved


def place_thinc(model: "thinc.api.Model", module: "torch.nn.Module",
                device: "torch.device") -> bool:
    """:func:`place` for a torch ``module`` inside a thinc ``model``
    (``PyTorchWrapper``): thinc's own ``to_gpu``/``to_cpu`` when thinc's ops are
    on that device (so the model's ops and shims follow), else the module alone (a
    ``device`` override on a torch-only install). True when it moved."""
    from thinc.api import CupyOps, NumpyOps, get_current_ops

    where = module_device(module)
    if where is None or same_device(where, device):
        return False
    ops = get_current_ops()
    if device.type == "cuda" and isinstance(ops, CupyOps):
        import torch

        model.to_gpu(device.index if device.index is not None else torch.cuda.current_device())
    elif device.type == "cpu" and isinstance(ops, NumpyOps):
        model.to_cpu()
    else:
        module.to(device)
    return True
