"""The speed switches (train.fused_optimizer, train.compile): off by default, outside the run
id, and a few epochs with one on give the default path's numbers within float32 rounding."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny_config

from bnbench.config.identity import DEFAULTS, run_id, run_id_of, settings
from bnbench.train.data import load_splits
from bnbench.train.loop import train_epoch
from bnbench.train.runner import setup_training

SWITCHES = ("fused_optimizer", "compile")


def switched(tmp_path, **switches):
    cfg = tiny_config(tmp_path)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **switches))


def trained(cfg, epochs: int = 2):
    """Every logged loss, each epoch's means and the final parameters and BN statistics."""
    run = setup_training(cfg, load_splits(cfg.dataset), torch.device("cpu"))
    order, first, losses, stats = torch.Generator().manual_seed(0), None, [], []
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(run.splits.train_y), generator=order)
        result = train_epoch(run, epoch, perm, first)
        first = result.first_loss
        losses += [row["train_loss"] for row in result.step_rows]
        stats.append([result.stats[k] for k in ("train_loss", "train_acc", "grad_norm")])
    return run, torch.tensor(losses), torch.tensor(stats), run.model.state_dict()


def assert_same_training(a, b, rtol: float, atol: float) -> None:
    _, losses_a, stats_a, state_a = a
    _, losses_b, stats_b, state_b = b
    torch.testing.assert_close(losses_b, losses_a, rtol=rtol, atol=atol)
    torch.testing.assert_close(stats_b, stats_a, rtol=rtol, atol=atol)
    assert state_a.keys() == state_b.keys()  # checkpoints keep their keys
    for key in state_a:
        torch.testing.assert_close(state_b[key], state_a[key], rtol=rtol, atol=atol, msg=key)


def test_the_switches_are_off_by_default_and_outside_the_run_id(tmp_path):
    default = tiny_config(tmp_path)
    assert not any(getattr(default.train, name) for name in SWITCHES)
    both_on = switched(tmp_path, fused_optimizer=True, compile=True)
    assert run_id(both_on) == run_id(default)
    # a config.yaml written before the switches existed has the same id
    old = {k: v for k, v in settings(default).items() if k.split(".")[-1] not in SWITCHES}
    assert run_id_of(old) == run_id(default)
    assert all(DEFAULTS[f"train.{name}"] is False for name in SWITCHES)


def test_the_fused_optimizer_trains_as_the_foreach_one(tmp_path):
    default = trained(tiny_config(tmp_path))
    fused = trained(switched(tmp_path, fused_optimizer=True))
    assert fused[0].optimizer.defaults["fused"] and not default[0].optimizer.defaults["fused"]
    assert_same_training(default, fused, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # Inductor compiles C++ kernels: about 30 CPU-seconds
def test_the_compiled_model_trains_as_the_eager_one(tmp_path):
    pytest.importorskip("torch._inductor")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    default = trained(tiny_config(tmp_path))
    compiled = trained(switched(tmp_path, compile=True))
    assert default[0].step_model is None and compiled[0].step_model is not None
    assert torch._dynamo.utils.counters["frames"]["ok"] > 0  # the steps ran compiled
    # Inductor fuses and reorders float32 sums: equal within rounding, not bit for bit.
    assert_same_training(default, compiled, rtol=1e-4, atol=1e-5)
