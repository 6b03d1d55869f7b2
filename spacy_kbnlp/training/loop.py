"""The one torch training loop of spacy_kbnlp.

Generic over the model: give it a ``torch.nn.Module``, a list of training items
(anything JSON-like, e.g. token id lists) and ``loss_fn(batch_of_items) -> scalar``.
It does AdamW with linear warmup and linear decay, gradient accumulation and
clipping, periodic evaluation through a callback, best/last exports, progress with
tqdm and a JSON-lines log, seeds, and a device from ``core.torch_io.get_device``.

Checkpoints are exact: ``OUTPUT/checkpoint/`` holds the weights
(``model.safetensors``), the optimizer tensors (``optimizer.safetensors``), the
torch RNG state (``rng.safetensors``) and everything else as JSON
(``trainer.json``: step, epoch, position in the epoch, optimizer hyperparameters,
scheduler state, Python/numpy RNG states, best score, history). No pickle. Data
order is a seeded shuffle per epoch, so ``resume=True`` continues the interrupted
run step for step (same batches, same dropout masks, same weights).
"""
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from ..errors import Errors, Warnings

CHECKPOINT = "checkpoint"
STATE_FILE = "trainer.json"


@dataclass
class TrainingConfig:
    """Settings of :func:`train_loop` (the ``[torch_training]`` config block)."""
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1        # share of the optimizer steps with a rising rate
    batch_size: int = 1              # items per forward pass
    accumulate: int = 1              # forward passes per optimizer step
    max_grad_norm: float = 1.0       # 0 = no clipping
    max_steps: int = 0               # optimizer steps; 0 = max_epochs full epochs
    max_epochs: int = 1
    eval_every: int = 0              # optimizer steps between evaluations; 0 = at the end
    max_minutes: float = 0.0         # stop cleanly (checkpoint + export) after this; 0 = none
    patience: int = 0                # stop after this many evaluations without a new best
    seed: int = 0
    threads: int = 0                 # torch.set_num_threads for the run; 0 = torch's default
    device: Optional[str] = None     # None: thinc's device (spaCy's require_gpu / --gpu-id)
    log_every: int = 10

    @classmethod
    def from_dict(cls, cfg: Optional[Dict[str, Any]]) -> "TrainingConfig":
        cfg = dict(cfg or {})
        names = {f.name for f in fields(cls)}
        for key in cfg:
            if key not in names:
                raise ValueError(Errors.KBE259.format(
                    name=key, value=cfg[key], why=f"unknown setting; known: {', '.join(sorted(names))}"))
        out = cls(**cfg)
        checks = (("learning_rate", out.learning_rate > 0), ("batch_size", out.batch_size >= 1),
                  ("accumulate", out.accumulate >= 1), ("max_steps", out.max_steps >= 0),
                  ("max_epochs", out.max_epochs >= 1 or out.max_steps > 0),
                  ("warmup_ratio", 0 <= out.warmup_ratio < 1), ("eval_every", out.eval_every >= 0))
        for name, ok in checks:
            if not ok:
                raise ValueError(Errors.KBE259.format(name=name, value=getattr(out, name),
                                                      why="out of range"))
        return out


@dataclass
class TrainResult:
    steps: int
    epochs_done: float
    best_score: Optional[float]
    best_step: Optional[int]
    seconds: float
    stopped: str                     # "done", "time", "patience", "callback"
    history: List[Dict[str, Any]] = field(default_factory=list)


def steps_per_epoch(n_items: int, config: TrainingConfig) -> int:
    return max(1, math.ceil(math.ceil(n_items / config.batch_size) / config.accumulate))


def total_steps(n_items: int, config: TrainingConfig) -> int:
    return config.max_steps or steps_per_epoch(n_items, config) * config.max_epochs


def epoch_order(n_items: int, seed: int, epoch: int) -> List[int]:
    order = list(range(n_items))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def make_optimizer(module: Any, config: TrainingConfig) -> Any:
    """AdamW; no weight decay on biases and normalisation weights (1-d tensors).

    A module may set ``lr_scales`` = {child module name: multiplier}: those
    children (e.g. freshly initialized heads on a pretrained encoder) train at
    ``learning_rate * multiplier``; the scheduler scales every group alike."""
    import torch

    scales = dict(getattr(module, "lr_scales", None) or {})
    by_key: Dict[Tuple[float, bool], List[Any]] = {(1.0, False): [], (1.0, True): []}
    for name, param in module.named_parameters():
        if param.requires_grad:
            scale = float(scales.get(name.split(".", 1)[0], 1.0))
            by_key.setdefault((scale, param.ndim < 2), []).append(param)
    # the unscaled groups first, in the order of older checkpoints
    groups = [{"params": params, "weight_decay": 0.0 if no_decay else config.weight_decay,
               "lr": config.learning_rate * scale}
              for (scale, no_decay), params in by_key.items()
              if params or scale == 1.0]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def make_scheduler(optimizer: Any, n_steps: int, warmup_ratio: float) -> Any:
    """Linear warmup over ``warmup_ratio * n_steps`` steps, then linear decay to 0."""
    import torch

    warmup = int(round(warmup_ratio * n_steps))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (n_steps - step) / max(1, n_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def update_once(module: Any, loss: Any, optimizer: Optional[Any] = None, *,
                learning_rate: float = 1e-4, max_grad_norm: float = 1.0) -> Any:
    """One AdamW step on ``loss`` for a component's ``update()`` (spaCy passes no torch
    optimizer): backward, clip, step, zero the gradients. Returns the optimizer, to be
    passed back on the next call (created on the first)."""
    import torch

    if optimizer is None:
        optimizer = make_optimizer(module, TrainingConfig(learning_rate=learning_rate))
    loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return optimizer


def component_update(component: Any, examples: Sequence[Any],
                     losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """``update()`` of a component that offers ``training_items(examples)``,
    ``training_loss(items)`` and ``torch_module`` (what ``python -m spacy_kbnlp train``
    uses): one :func:`update_once` step on all items of ``examples``; the optimizer is
    kept on ``component._optimizer``. Returns ``losses`` with the component's loss added."""
    losses = {} if losses is None else losses
    losses.setdefault(component.name, 0.0)
    items = component.training_items(list(examples))
    if not items:
        return losses
    module = component.torch_module
    module.train()
    loss = component.training_loss(items)
    component._optimizer = update_once(module, loss, getattr(component, "_optimizer", None))
    module.eval()
    losses[component.name] += float(loss.detach())
    return losses


# --------------------------------------------------------------------------- checkpoint I/O
def _optimizer_to_files(optimizer: Any) -> Dict[str, Any]:
    state = optimizer.state_dict()
    tensors, meta = {}, {}
    for idx, pstate in state["state"].items():
        meta[str(idx)] = {}
        for key, value in pstate.items():
            if hasattr(value, "shape"):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                meta[str(idx)][key] = value
    return {"tensors": tensors, "param_groups": state["param_groups"], "scalars": meta}


def _optimizer_from_files(optimizer: Any, tensors: Dict[str, Any], param_groups: List[Dict],
                          scalars: Dict[str, Dict]) -> None:
    state: Dict[int, Dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, extra in scalars.items():
        state.setdefault(int(idx), {}).update(extra)
    for group in param_groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def _rng_state() -> Dict[str, Any]:
    py = random.getstate()
    np_state = numpy.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                      float(np_state[4])]}


def _set_rng_state(state: Dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    numpy.random.set_state((n[0], numpy.array(n[1], dtype=numpy.uint32), n[2], n[3], n[4]))


def save_checkpoint(path: Path, module: Any, optimizer: Any, scheduler: Any,
                    state: Dict[str, Any]) -> None:
    """Write a complete checkpoint atomically (a temporary folder renamed over ``path``)."""
    import safetensors.torch
    import torch

    from ..core.integrity import write_manifest
    from ..core.torch_io import save_state

    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "model.safetensors").write_bytes(save_state(module))
    opt = _optimizer_to_files(optimizer)
    safetensors.torch.save_file(opt["tensors"], str(tmp / "optimizer.safetensors"))
    safetensors.torch.save_file({"cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    full = dict(state, optimizer={"param_groups": opt["param_groups"], "scalars": opt["scalars"]},
                scheduler=scheduler.state_dict(), rng=_rng_state())
    (tmp / STATE_FILE).write_text(json.dumps(full, indent=1, default=_jsonable), encoding="utf-8")
    write_manifest(tmp)
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def load_checkpoint(path: Path, module: Any, optimizer: Any, scheduler: Any, device: Any
                    ) -> Dict[str, Any]:
    import safetensors.torch
    import torch

    from ..core.integrity import check_manifest
    from ..core.torch_io import load_state

    needed = ["model.safetensors", "optimizer.safetensors", "rng.safetensors", STATE_FILE]
    missing = [n for n in needed if not (path / n).exists()]
    if missing:
        raise ValueError(Errors.KBE257.format(path=path, why=f"missing {', '.join(missing)}"))
    check_manifest(path)
    load_state(module, (path / "model.safetensors").read_bytes(), device)
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    tensors = safetensors.torch.load_file(str(path / "optimizer.safetensors"), device=str(device))
    _optimizer_from_files(optimizer, tensors, state["optimizer"]["param_groups"],
                          state["optimizer"]["scalars"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(safetensors.torch.load_file(str(path / "rng.safetensors"))["cpu"])
    _set_rng_state(state["rng"])
    return state


# --------------------------------------------------------------------------- the loop
def train_loop(
    module: Any,
    items: Sequence[Any],
    loss_fn: Callable[[List[Any]], Any],
    config: Union[TrainingConfig, Dict[str, Any]],
    output_dir: Union[str, Path],
    *,
    evaluate: Optional[Callable[[], Dict[str, float]]] = None,
    score_key: Optional[str] = None,
    export: Optional[Callable[[Path], None]] = None,
    resume: bool = False,
    on_step: Optional[Callable[[int, Dict[str, Any]], bool]] = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``module`` on ``items`` with ``loss_fn``.

    evaluate: returns scores (the module is in eval mode meanwhile); ``score_key`` is
        maximised (default: the first key). export(dir): writes a usable artefact of the
        current weights (e.g. ``nlp.to_disk``) to ``OUTPUT/model-last`` at every
        checkpoint and to ``OUTPUT/model-best`` on a new best score.
    resume: continue from ``OUTPUT/checkpoint`` (KBE257 if there is none).
    on_step(step, info) -> True stops the run after checkpointing (used by tests and
        for external stop conditions)."""
    import torch

    from ..core.torch_io import get_device, set_seed

    config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    n_items = len(items)
    if n_items == 0:
        raise ValueError(Errors.KBE256.format(name="train_loop", why="no training items"))
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = get_device(config.device)
    module.to(device)
    n_steps = total_steps(n_items, config)
    per_epoch_batches = math.ceil(n_items / config.batch_size)
    set_seed(config.seed)
    optimizer = make_optimizer(module, config)
    scheduler = make_scheduler(optimizer, n_steps, config.warmup_ratio)
    state: Dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best_score": None,
                             "best_step": None, "evals_since_best": 0, "history": [],
                             "seconds": 0.0, "n_items": n_items, "config": asdict(config)}
    ckpt = output_dir / CHECKPOINT
    if resume:
        if not (ckpt / STATE_FILE).exists():
            raise ValueError(Errors.KBE257.format(path=ckpt, why="no checkpoint there"))
        saved = load_checkpoint(ckpt, module, optimizer, scheduler, device)
        _warn_differences(ckpt, saved, n_items, config)
        for key in state:
            if key in saved and key != "config":
                state[key] = saved[key]
    log_path = output_dir / "train_log.jsonl"
    start = time.perf_counter() - state["seconds"]
    stopped = "done"
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=n_steps, initial=state["step"], desc="train", unit="step",
                        dynamic_ncols=True)

    def run_eval() -> Optional[float]:
        if evaluate is None:
            return None
        module.eval()
        try:
            with torch.no_grad():
                scores = evaluate()
        except Exception as err:  # a failing evaluation must not lose hours of training
            import warnings

            warnings.warn(Warnings.KBW254.format(step=state["step"], err=f"{type(err).__name__}: {err}"))
            _log(log_path, {"step": state["step"], "eval": False, "error": repr(err)})
            return None
        finally:
            module.train()
        key = score_key or next(iter(scores))
        score = float(scores[key])
        record = {"step": state["step"], "eval": True, "score": score,
                  "scores": {k: v for k, v in scores.items() if isinstance(v, (int, float))},
                  "elapsed": time.perf_counter() - start}
        state["history"].append(record)
        _log(log_path, record)
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"], state["best_step"] = score, state["step"]
            state["evals_since_best"] = 0
            if export is not None:
                export(output_dir / "model-best")
        else:
            state["evals_since_best"] += 1
        return score

    def checkpoint() -> None:
        state["seconds"] = time.perf_counter() - start
        save_checkpoint(ckpt, module, optimizer, scheduler, state)
        if export is not None:
            export(output_dir / "model-last")

    module.train()
    running, running_n = 0.0, 0
    try:
        while state["step"] < n_steps:
            order = epoch_order(n_items, config.seed, state["epoch"])
            micro = 0
            while state["step"] < n_steps and state["batch"] < per_epoch_batches:
                b = state["batch"]
                batch = [items[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]]
                loss = loss_fn(batch)
                (loss / config.accumulate).backward()
                running += float(loss.detach())
                running_n += 1
                state["batch"] += 1
                micro += 1
                last_in_epoch = state["batch"] >= per_epoch_batches
                if micro < config.accumulate and not last_in_epoch:
                    continue
                micro = 0
                if config.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                step = state["step"]
                info = {"step": step, "loss": running / max(1, running_n),
                        "lr": scheduler.get_last_lr()[0], "epoch": state["epoch"],
                        "elapsed": time.perf_counter() - start}
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}",
                                         best=state["best_score"])
                if step % config.log_every == 0 or step == n_steps:
                    _log(log_path, info)
                    running, running_n = 0.0, 0
                evaluated = False
                if config.eval_every and step % config.eval_every == 0 and step < n_steps:
                    run_eval()
                    evaluated = True
                stop = None
                if on_step is not None and on_step(step, info):
                    stop = "callback"
                elif config.max_minutes and time.perf_counter() - start > config.max_minutes * 60:
                    stop = "time"
                elif config.patience and state["evals_since_best"] >= config.patience:
                    stop = "patience"
                if evaluated or stop:
                    checkpoint()
                if stop:
                    stopped = stop
                    break
            if stopped != "done":
                break
            if state["batch"] >= per_epoch_batches:
                state["epoch"] += 1
                state["batch"] = 0
        if stopped == "done":
            run_eval()
            checkpoint()
    finally:
        if progress is not None:
            progress.close()
        module.eval()
        if config.threads:
            torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - start
    return TrainResult(state["step"], state["epoch"] + state["batch"] / per_epoch_batches,
                       state["best_score"], state["best_step"], seconds, stopped,
                       list(state["history"]))


def _log(path: Path, record: Dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=_jsonable) + "\n")


def _warn_differences(path: Path, saved: Dict[str, Any], n_items: int, config: TrainingConfig
                      ) -> None:
    import warnings

    if saved.get("n_items") != n_items:
        warnings.warn(Warnings.KBW253.format(path=path, what="the number of training items",
                                             saved=saved.get("n_items"), now=n_items))
    now = asdict(config)
    for key in ("learning_rate", "batch_size", "accumulate", "max_steps", "max_epochs", "seed",
                "warmup_ratio", "weight_decay"):
        if saved.get("config", {}).get(key) != now[key]:
            warnings.warn(Warnings.KBW253.format(path=path, what=key,
                                                 saved=saved.get("config", {}).get(key),
                                                 now=now[key]))
