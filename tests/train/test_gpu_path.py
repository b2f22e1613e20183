"""The GPU path's logic, run on the CPU: AMP with probes (CPU autocast), the once-per-epoch
loss read, resuming from a checkpoint read onto the host, and a checkpoint that cannot be
read or written. The same paths on a real GPU are in test_cuda.py."""

from __future__ import annotations

import copy
import dataclasses
import errno
import io
import json
import os

import pandas as pd
import pytest
import torch
from conftest import TINY, bnbench, tiny_config
from torch import nn

from bnbench.config.schema import PROBES, ModelConfig
from bnbench.store.files import run_dir
from bnbench.train import runner, runtime
from bnbench.train.checkpoint import RunRecord, load_checkpoint, save_checkpoint
from bnbench.train.data import load_splits
from bnbench.train.loop import Training, make_optimizer, train_epoch
from bnbench.train.model import build_model, norm_layers
from bnbench.train.probes import final_probes, step_probes
from bnbench.train.runner import execute, memory_format, probe_hook, setup_training
from bnbench.train.runtime import keep_norms_fp32

CPU = torch.device("cpu")
SMALL = ModelConfig(widths=[8, 16])


def tiny_training(cfg) -> Training:
    return setup_training(cfg, load_splits(cfg.dataset), CPU)


def first_epoch(run: Training):
    perm = torch.randperm(len(run.splits.train_y), generator=torch.Generator().manual_seed(0))
    return train_epoch(run, 1, perm, first_loss=None)


def plain_twin(cfg, run: Training) -> nn.Module:
    """The run's model with the same weights and statistics, without the fp32 wrapper."""
    splits = run.splits
    twin = build_model(cfg.model, splits.in_channels, splits.num_classes, cfg.seed)
    twin.load_state_dict(run.model.state_dict())
    return twin.to(memory_format=memory_format(cfg.train))


def state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- 1. AMP and the probes ------------------------------------------------------------------


def test_a_copy_of_an_fp32_norm_layer_runs_the_copy_not_the_original():
    model = build_model(SMALL, 1, 4, seed=0)
    keep_norms_fp32(model)
    original = state(model)
    twin = copy.deepcopy(model).train()
    twin(torch.randn(8, 1, 8, 8))  # train mode: updates the running statistics it runs with
    assert_same_state(state(model), original)  # the original's statistics are untouched
    assert not torch.equal(norm_layers(twin)[0].running_mean, original["0.0.norm.running_mean"])


def test_amp_training_with_every_probe_measures_its_own_model_and_leaves_it_as_found(tmp_path):
    """Under CPU autocast (bf16 convolutions, fp32 norms) with every probe on: the probes run,
    training is exactly what it is without probes, and each probe gives on the wrapped model
    what it gives on the same weights unwrapped."""
    cfg = tiny_config(tmp_path, train__amp=True, model__dropout=0.1, probes__names=list(PROBES))
    probed, plain = tiny_training(cfg), tiny_training(cfg)
    rows: list[dict] = []
    probed.on_step = probe_hook(cfg, probed, rows)
    for run in (probed, plain):
        torch.manual_seed(0)  # the same dropout masks
        assert not first_epoch(run).diverged
    assert {r["probe"] for r in rows} >= {"ics_l2", "act_p50", "grad_norm", "one_step_rel_loss"}
    assert_same_state(state(probed.model), state(plain.model))

    twin, trained = plain_twin(cfg, probed), state(probed.model)
    x, y = probed.splits.train_x[:64], probed.splits.train_y[:64]
    x = x.contiguous(memory_format=memory_format(cfg.train))
    step_rows = step_probes(cfg.probes, probed.model, 0.05, x, y, step=8)
    assert step_rows == step_probes(cfg.probes, twin, 0.05, x, y, step=8)
    final_rows = final_probes(cfg.probes, probed.model, probed.splits, step=8)
    assert {r["probe"] for r in final_rows} >= {"test_time_acc", "var_shift"}
    assert final_rows == final_probes(cfg.probes, twin, probed.splits, step=8)
    assert_same_state(state(probed.model), trained)


# --- 2. Divergence read once per epoch ------------------------------------------------------


class LossSpike(nn.Module):
    """Adds a large margin to a wrong class's logit at one step: the loss jumps far above the
    divergence limit there and comes back the next step (the gradient of cross-entropy in the
    logits is bounded, so training goes on as before): a mid-epoch spike, reproducibly."""

    def __init__(self, at_step: int):
        super().__init__()
        self.at_step, self.on = at_step, False

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.on:
            return logits
        return logits + 1000.0 * (torch.arange(logits.shape[1]) == 0)

    def before_step(self, step: int, lr: float) -> None:
        self.on = step == self.at_step


def spiking_run(tmp_path, at_step: int, each_step: bool) -> Training:
    run = tiny_training(tiny_config(tmp_path, train__log_every=2))
    spike = LossSpike(at_step)
    run = dataclasses.replace(run, model=nn.Sequential(run.model, spike), check_each_step=each_step)
    run.on_step = spike.before_step
    return run


@pytest.mark.parametrize("at_step", [3, 5])  # a step that is logged, one that is not
def test_a_mid_epoch_loss_spike_diverges_when_the_loss_is_read_once_per_epoch(tmp_path, at_step):
    each_step = first_epoch(spiking_run(tmp_path, at_step, each_step=True))  # the CPU default
    per_epoch = first_epoch(spiking_run(tmp_path, at_step, each_step=False))  # the GPU default
    assert each_step.diverged and per_epoch.diverged
    assert per_epoch.first_loss == each_step.first_loss
    # The same record of where it diverged: the rows up to the spike, its loss last.
    assert per_epoch.step_rows == each_step.step_rows
    steps = [row["step"] for row in per_epoch.step_rows]
    assert steps[-1] == at_step + 1 and len(set(steps)) == len(steps)
    assert per_epoch.step_rows[-1]["train_loss"] > 100


def test_a_run_that_reads_the_loss_once_per_epoch_matches_the_per_step_run(tmp_path):
    runs = [tiny_training(tiny_config(tmp_path, train__log_every=2)) for _ in range(2)]
    each_step, per_epoch = (
        first_epoch(dataclasses.replace(run, check_each_step=flag))
        for run, flag in zip(runs, (True, False), strict=True)
    )
    assert not per_epoch.diverged
    assert (per_epoch.stats, per_epoch.step_rows) == (each_step.stats, each_step.step_rows)
    assert per_epoch.first_loss == each_step.first_loss


# --- 3. Resume: the checkpoint is read onto the host ----------------------------------------


def adam_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, optim__name="adam", optim__lr=1e-3)
    run = tiny_training(cfg)
    first_epoch(run)
    order = torch.Generator().manual_seed(0)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, RunRecord(epoch=1, first_loss=1.5), run.model, run.optimizer, order)
    return cfg, run, path


def test_a_checkpoint_loads_onto_the_host_and_adam_keeps_its_step_counters_there(tmp_path):
    """Whatever the training device, the file is read onto the CPU and load_state_dict places
    each tensor: Adam's `step` stays a CPU scalar (on CUDA, a GPU one costs a sync per step).
    The meta device stands in for a device other than the host."""
    cfg, trained, path = adam_checkpoint(tmp_path)
    fresh = tiny_training(cfg)
    record = load_checkpoint(
        path, fresh.model, fresh.optimizer, torch.Generator(), torch.device("meta")
    )
    assert record is not None and record.epoch == 1 and record.first_loss == 1.5
    assert_same_state(state(fresh.model), state(trained.model))
    for param in fresh.model.parameters():
        assert fresh.optimizer.state[param]["step"].device == CPU
        assert fresh.optimizer.state[param]["exp_avg"].device == param.device


# --- issue 16: a checkpoint that cannot be read, a disk that is full ------------------------


def test_a_checkpoint_that_does_not_load_is_moved_aside_and_the_model_left_fresh(tmp_path, capsys):
    cfg, _, path = adam_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a copy cut short
    fresh = tiny_training(cfg)
    before, rng = state(fresh.model), torch.get_rng_state()
    assert load_checkpoint(path, fresh.model, fresh.optimizer, torch.Generator(), CPU) is None
    assert (
        not path.exists()
        and (tmp_path / "checkpoint.pt.corrupt").read_bytes() == data[: len(data) // 2]
    )
    assert "checkpoint.pt" in capsys.readouterr().err
    assert_same_state(state(fresh.model), before)
    assert torch.equal(torch.get_rng_state(), rng) and not fresh.optimizer.state


def test_a_checkpoint_that_half_loads_leaves_nothing_of_itself_behind(tmp_path):
    """The model's tensors load but the optimizer's do not: the model is put back as it was."""
    cfg, _, path = adam_checkpoint(tmp_path)
    saved = torch.load(path, weights_only=True)
    saved["optimizer"]["state"] = "garbage"
    torch.save(saved, path)
    fresh = tiny_training(cfg)
    before = state(fresh.model)
    assert load_checkpoint(path, fresh.model, fresh.optimizer, torch.Generator(), CPU) is None
    assert_same_state(state(fresh.model), before)
    assert not fresh.optimizer.state


def test_a_corrupt_checkpoint_is_set_aside_and_its_run_trains_from_the_beginning(tmp_path):
    """Through the command line: the warning names the file, the run completes from epoch 1
    and its summary says that the checkpoint was discarded."""
    results = tmp_path / "results"
    args = [*TINY, "train.epochs=2", "sweep=t", "threads=1", "optim.lr=0.05"]
    directory = run_dir(tiny_config(results))
    directory.mkdir(parents=True)
    (directory / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    out = bnbench("run", *args, f"results_dir={results}", "train.checkpoint=true", cwd=tmp_path)
    assert "checkpoint.pt" in out.stderr and "resuming" not in out.stderr
    assert (directory / "checkpoint.pt.corrupt").exists()
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["checkpoint_discarded"]
    assert "resumed_after_epoch" not in summary


class FillingDisk(io.RawIOBase):
    """A file on a disk with `room` bytes left: writes go through until it is full, then
    fail with ENOSPC, as on a real filesystem that fills during a save."""

    def __init__(self, fd: int, room: int):
        self.fd, self.room = fd, room

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data) -> int:
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(self.fd, bytes(data[: self.room]))
        self.room -= written
        return written

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


@pytest.fixture(params=[0, 20_000, 100_000], ids=lambda room: f"room{room}")
def full_disk(request, monkeypatch):
    """Every binary file the store writes lands on a disk with a few bytes left."""
    real = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        if "b" not in mode:
            return real(fd, mode, *args, **kwargs)
        return io.BufferedWriter(FillingDisk(fd, request.param))

    monkeypatch.setattr(os, "fdopen", fdopen)


def test_a_full_disk_during_a_checkpoint_save_says_so_and_leaves_no_file(tmp_path, full_disk):
    model = build_model(ModelConfig(), 1, 10, seed=0)  # a 0.8 MB checkpoint with momentum
    optimizer = make_optimizer(tiny_config(tmp_path).optim, model)
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError, match=r"no space left on \S+ while writing \S+checkpoint\.pt"):
        save_checkpoint(path, RunRecord(), model, optimizer, torch.Generator())
    assert list(tmp_path.iterdir()) == []


# --- 4. What a run id does not cover ---------------------------------------------------------


def test_runtime_facts_on_the_cpu_record_what_the_run_id_leaves_out():
    torch.set_num_threads(1)
    facts = runtime.runtime_facts(CPU)
    assert facts["device"] == "cpu" and facts["device_name"].startswith("cpu: ")
    assert facts["threads"] == 1
    assert facts["tf32"] is False and facts["cudnn_deterministic"] is None
    assert facts["amp"] is False and runtime.runtime_facts(CPU, amp=True)["amp"] is True
    json.dumps(facts)  # goes into summary.json as it is


def test_a_no_bn_run_whose_loss_spikes_then_settles_at_chance_diverges_either_way(
    tmp_path, monkeypatch
):
    """The natural case: no BN at a high LR, the loss jumps past 10x its first value at
    step 2, then the dead ReLUs leave it near ln 4 (chance) by the epoch's end."""
    changes = dict(model__norm="none", optim__lr=1.0, train__epochs=1)
    each_step = tiny_config(tmp_path / "each", **changes)
    assert execute(each_step) == "diverged"
    setup = runner.setup_training
    monkeypatch.setattr(
        runner, "setup_training", lambda *a: dataclasses.replace(setup(*a), check_each_step=False)
    )
    once = tiny_config(tmp_path / "once", **changes)
    assert execute(once) == "diverged"
    steps = [pd.read_csv(run_dir(cfg) / "steps.csv") for cfg in (each_step, once)]
    pd.testing.assert_frame_equal(*steps)
    assert steps[0].step.iloc[-1] < 8  # inside the epoch's 8 steps
