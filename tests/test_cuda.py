"""The GPU path: data on the device, AMP with normalization kept in fp32.

The CUDA tests skip on machines without a GPU (CI has none); the autocast wrapper is checked
on the CPU, where torch.autocast works the same way with bf16.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from bnbench.config import ConfigError, ModelConfig, validate
from bnbench.model import build_model, norm_layers
from bnbench.runner import execute
from bnbench.runtime import keep_norms_fp32
from bnbench.store import run_dir


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
