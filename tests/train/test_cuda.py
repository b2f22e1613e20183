"""The GPU path: data on the device, AMP with normalization kept in fp32, no host sync per
step, fp32 and deterministic cuDNN by default (the benchmark's GPU path:
tests/bench/test_bench_cuda.py).

The CUDA tests skip on machines without a GPU (CI has none); the same logic is checked on
the CPU in test_gpu_path.py (CPU autocast, the once-per-epoch loss read forced on).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from bnbench.config.schema import PROBES, ConfigError, ModelConfig
from bnbench.config.validation import validate
from bnbench.store.files import METRIC_COLUMNS, run_dir
from bnbench.train.checkpoint import RunRecord, load_checkpoint, save_checkpoint
from bnbench.train.data import load_splits
from bnbench.train.loop import Training, train_epoch
from bnbench.train.model import build_model, norm_layers
from bnbench.train.runner import execute, setup_training
from bnbench.train.runtime import keep_norms_fp32, resolve_device, runtime_facts, setup_runtime


@pytest.mark.parametrize("norm", ["batch", "group", "noisy_batch"])
def test_under_autocast_norm_layers_compute_in_fp32_and_keep_their_state_dict(norm):
    model = build_model(ModelConfig(widths=[8, 16], norm=norm, groups=4), 1, 10, seed=0)
    keys = list(model.state_dict())
    keep_norms_fp32(model)
    seen = {}
    first_norm, first_conv = norm_layers(model)[0], model[0][0].conv
    first_norm.register_forward_hook(lambda m, i, o: seen.update(norm=(i[0].dtype, o.dtype)))
    first_conv.register_forward_hook(lambda m, i, o: seen.update(conv=o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(4, 1, 28, 28))
    assert seen["conv"] == torch.bfloat16  # the convolutions run in bf16
    # handed bf16 (without the wrapper it would also return bf16), computes and returns fp32
    assert seen["norm"] == (torch.bfloat16, torch.float32)
    assert list(model.state_dict()) == keys


def test_amp_on_cpu_is_refused_before_training(tmp_path):
    cfg = tiny_config(tmp_path, device="cpu")
    cfg.train.amp = True
    with pytest.raises(ConfigError, match="train.amp"):
        validate(cfg)


@pytest.mark.cuda
def test_a_cuda_run_completes_and_matches_the_cpu_run_closely(tmp_path):
    on_gpu = tiny_config(tmp_path / "gpu", device="cuda")
    on_cpu = tiny_config(tmp_path / "cpu", device="cpu")
    assert execute(on_gpu) == "completed" and execute(on_cpu) == "completed"
    summary = json.loads((run_dir(on_gpu) / "summary.json").read_text())
    assert summary["device"].startswith("cuda")
    gpu, cpu = (pd.read_csv(run_dir(c) / "metrics.csv") for c in (on_gpu, on_cpu))
    assert abs(gpu.train_loss.iloc[0] - cpu.train_loss.iloc[0]) < 0.05


@pytest.mark.cuda
def test_an_amp_run_trains_with_fp32_bn_statistics(tmp_path):
    cfg = tiny_config(tmp_path, device="cuda")
    cfg.train.amp = True
    assert execute(cfg) == "completed"
    table = pd.read_csv(run_dir(cfg) / "metrics.csv")
    assert table.train_loss.notna().all() and table.train_loss.iloc[-1] < table.train_loss.iloc[0]


@pytest.mark.cuda
def test_a_diverging_cuda_run_is_stopped_by_its_first_epoch_end(tmp_path):
    cfg = tiny_config(tmp_path, device="cuda", model__norm="none")
    cfg.optim.lr = 50.0
    assert execute(cfg) == "diverged"
    assert len(pd.read_csv(run_dir(cfg) / "metrics.csv")) == 1


# --- what the first GPU run would have hit (issue 19) -----------------------------------------


def cuda_training(cfg) -> Training:
    device = setup_runtime(cfg)  # the runner's process settings: fp32, deterministic cuDNN
    return setup_training(cfg, load_splits(cfg.dataset).to(device), device)


def epoch(run: Training, number: int = 1, first_loss: float | None = None):
    order = torch.Generator().manual_seed(number)
    perm = torch.randperm(len(run.splits.train_y), generator=order).to("cuda")
    return train_epoch(run, number, perm, first_loss)


@pytest.fixture
def no_sync_after_the_first_step() -> Iterator:
    """on_step(run) -> hook: any host sync raises from the second step to the last but one
    (the first sets up cuBLAS and cuDNN; the epoch's end reads its sums)."""

    def hook(run: Training):
        def on_step(step: int, lr: float) -> None:
            inside = 1 <= step % run.steps_per_epoch < run.steps_per_epoch - 1
            torch.cuda.set_sync_debug_mode("error" if inside else "default")

        return on_step

    try:
        yield hook
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.cuda
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_steps_on_cuda_never_wait_for_the_gpu(
    tmp_path, optimizer, no_sync_after_the_first_step
):
    run = cuda_training(tiny_config(tmp_path, device="cuda", optim__name=optimizer))
    run.on_step = no_sync_after_the_first_step(run)
    assert not epoch(run).diverged


@pytest.mark.cuda
def test_an_adam_run_resumed_on_cuda_keeps_its_step_counters_on_the_host(
    tmp_path, no_sync_after_the_first_step
):
    cfg = tiny_config(tmp_path, device="cuda", optim__name="adam", optim__lr=1e-3)
    first = cuda_training(cfg)
    result = epoch(first)
    path, order = tmp_path / "checkpoint.pt", torch.Generator().manual_seed(0)
    record = RunRecord(epoch=1, first_loss=result.first_loss)
    save_checkpoint(path, record, first.model, first.optimizer, order)
    resumed = cuda_training(cfg)
    record = load_checkpoint(path, resumed.model, resumed.optimizer, order, torch.device("cuda"))
    assert record is not None and record.epoch == 1
    steps = [state["step"] for state in resumed.optimizer.state.values()]
    assert steps and all(step.device.type == "cpu" for step in steps)
    resumed.on_step = no_sync_after_the_first_step(resumed)
    assert not epoch(resumed, 2, record.first_loss).diverged


@pytest.mark.cuda
def test_an_amp_run_with_every_probe_completes(tmp_path):
    cfg = tiny_config(tmp_path, device="cuda", train__amp=True, probes__names=list(PROBES))
    assert execute(cfg) == "completed"
    probes = set(pd.read_csv(run_dir(cfg) / "probes.csv").probe)
    assert {"ics_l2", "act_p50", "grad_norm", "one_step_rel_loss", "test_time_acc"} <= probes
    assert {"var_shift", "recalibrated_acc"} <= probes


@pytest.mark.cuda
def test_a_cuda_run_repeats_bit_for_bit_and_records_its_precision(tmp_path):
    first, second = (tiny_config(tmp_path / name, device="cuda") for name in ("a", "b"))
    assert execute(first) == "completed" and execute(second) == "completed"
    columns = [c for c in METRIC_COLUMNS if c != "epoch_time_s"]
    a, b = (pd.read_csv(run_dir(cfg) / "metrics.csv")[columns] for cfg in (first, second))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    facts = runtime_facts(torch.device("cuda"))
    assert facts["tf32"] is False and facts["cudnn_deterministic"] is True
    assert facts["device_name"] == torch.cuda.get_device_name()


@pytest.mark.cuda
def test_device_auto_picks_the_gpu(tmp_path):
    assert resolve_device("auto").type == "cuda"
    cfg = tiny_config(tmp_path, device="auto")
    assert execute(cfg) == "completed"
    assert json.loads((run_dir(cfg) / "summary.json").read_text())["device"].startswith("cuda")
