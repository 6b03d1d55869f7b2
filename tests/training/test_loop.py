"""The torch training loop: schedule, accumulation, evaluation/exports, and exact resumption."""
import json

import pytest

from spacy_kbnlp.training.loop import (TrainingConfig, epoch_order, make_optimizer,
                                       make_scheduler, total_steps, train_loop)


def _setup(seed=0):
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.ReLU(),
                                 torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(23, 4, generator=gen)
    items = [{"x": xs[i].tolist(), "y": float(xs[i].sum())} for i in range(23)]

    def loss_fn(batch):
        x = torch.tensor([b["x"] for b in batch])
        y = torch.tensor([b["y"] for b in batch])
        return torch.nn.functional.mse_loss(module(x).squeeze(-1), y)

    return module, items, loss_fn


CFG = dict(learning_rate=0.05, batch_size=3, accumulate=2, max_epochs=3, eval_every=2,
           warmup_ratio=0.25, log_every=1, seed=5)


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_schedule_warmup_then_linear_decay():
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, 10, 0.2)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])


def test_no_weight_decay_on_biases_and_norms():
    module, _, _ = _setup()
    opt = make_optimizer(module, TrainingConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])


def test_lr_scales_give_children_their_own_rate_under_the_schedule():
    module, _, _ = _setup()
    module.lr_scales = {"4": 10.0}  # the last Linear: a fresh head
    opt = make_optimizer(module, TrainingConfig(learning_rate=0.01, weight_decay=0.1))
    got = {(g["lr"], g["weight_decay"]): {id(p) for p in g["params"]} for g in opt.param_groups}
    head = module[4]
    assert got[(0.1, 0.1)] == {id(head.weight)} and got[(0.1, 0.0)] == {id(head.bias)}
    assert got[(0.01, 0.1)] == {id(module[0].weight)}
    assert got[(0.01, 0.0)] == {id(module[0].bias), id(module[3].weight), id(module[3].bias)}
    sched = make_scheduler(opt, 4, 0.5)
    assert [g["lr"] for g in opt.param_groups][:2] == pytest.approx([0.005, 0.005])
    assert sorted(g["lr"] for g in opt.param_groups)[-1] == pytest.approx(0.05)
    sched.step()
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.01, 0.01, 0.1, 0.1])


def test_steps_and_order():
    cfg = TrainingConfig(batch_size=3, accumulate=2, max_epochs=3)
    assert total_steps(23, cfg) == 12          # ceil(ceil(23/3)/2) = 4 per epoch
    assert epoch_order(23, 5, 0) == epoch_order(23, 5, 0) != epoch_order(23, 5, 1)
    assert sorted(epoch_order(23, 5, 2)) == list(range(23))


def test_config_validation():
    with pytest.raises(ValueError, match="KBE259"):
        TrainingConfig.from_dict({"learning_rte": 0.1})
    with pytest.raises(ValueError, match="KBE259"):
        TrainingConfig.from_dict({"batch_size": 0})


def test_train_evaluates_exports_and_learns(tmp_path):
    module, items, loss_fn = _setup()
    with_torch_loss = float(loss_fn(items).detach())
    exported = []
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.6, 0.1])

    def evaluate():
        return {"score": next(scores), "other": 1.0}

    res = train_loop(module, items, loss_fn, CFG, tmp_path, evaluate=evaluate,
                     export=lambda p: exported.append(p.name), show_progress=False)
    assert res.steps == 12 and res.stopped == "done" and res.epochs_done == 3
    assert [h["step"] for h in res.history] == [2, 4, 6, 8, 10, 12]
    assert res.best_score == 0.6 and res.best_step == 10
    assert exported.count("model-best") == 3 and exported.count("model-last") == 6
    module.eval()
    assert float(loss_fn(items).detach()) < with_torch_loss
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert {r["step"] for r in log if "loss" in r} == set(range(1, 13))
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer.json"):
        assert (tmp_path / "checkpoint" / name).exists()


def test_resume_is_exact(tmp_path):
    full_module, items, loss_fn = _setup()
    train_loop(full_module, items, loss_fn, CFG, tmp_path / "full",
               evaluate=lambda: {"s": 0.0}, show_progress=False)
    expected = _weights(full_module)

    part_module, items2, loss_fn2 = _setup()
    res = train_loop(part_module, items2, loss_fn2, CFG, tmp_path / "part",
                     evaluate=lambda: {"s": 0.0}, on_step=lambda step, info: step == 5,
                     show_progress=False)
    assert res.stopped == "callback" and res.steps == 5
    # a fresh process: new module object, different initial weights and RNG state
    new_module, items3, loss_fn3 = _setup(seed=99)
    res = train_loop(new_module, items3, loss_fn3, CFG, tmp_path / "part",
                     evaluate=lambda: {"s": 0.0}, resume=True, show_progress=False)
    assert res.steps == 12 and res.stopped == "done"
    got = _weights(new_module)
    for key, value in expected.items():
        assert (got[key] == value).all(), key


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    module, items, loss_fn = _setup()
    with pytest.raises(ValueError, match="KBE257"):
        train_loop(module, items, loss_fn, CFG, tmp_path, resume=True, show_progress=False)
    with pytest.raises(ValueError, match="KBE256"):
        train_loop(module, [], loss_fn, CFG, tmp_path, show_progress=False)


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    module, items, loss_fn = _setup()
    res = train_loop(module, items, loss_fn, dict(CFG, max_minutes=1e-9), tmp_path,
                     show_progress=False)
    assert res.stopped == "time" and res.steps == 1
    assert (tmp_path / "checkpoint" / "trainer.json").exists()


def test_update_once_reuses_its_optimizer():
    import torch

    from spacy_kbnlp.training.loop import update_once

    module, items, loss_fn = _setup()
    before = _weights(module)
    opt = update_once(module, loss_fn(items), None, learning_rate=0.01)
    assert opt.param_groups[0]["lr"] == 0.01
    assert all(p.grad is None for p in module.parameters())
    again = update_once(module, loss_fn(items), opt)
    assert again is opt and int(opt.state[next(iter(opt.state))]["step"]) == 2
    assert any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_failing_evaluation_does_not_stop_training(tmp_path):
    module, items, loss_fn = _setup()
    calls = []

    def evaluate():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("decoder exploded")
        return {"score": float(len(calls))}

    with pytest.warns(UserWarning, match="KBW254"):
        res = train_loop(module, items, loss_fn, CFG, tmp_path, evaluate=evaluate,
                         show_progress=False)
    assert res.steps == 12 and res.stopped == "done" and len(calls) == 6
    assert [h["step"] for h in res.history] == [2, 6, 8, 10, 12]
    log = (tmp_path / "train_log.jsonl").read_text()
    assert "decoder exploded" in log
