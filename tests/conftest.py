"""Shared helpers: tiny synthetic configs and a way to call the real `bnbench` command."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnbench.config import Config, DatasetConfig, ModelConfig, OptimConfig, TrainConfig

# Overrides that make any CLI run tiny: synthetic data, a small net, one epoch.
TINY = [
    "dataset=synthetic",
    "model.widths=[8,16]",
    "train.epochs=1",
    "train.batch_size=32",
    "progress=false",
]


def tiny_config(results_dir: Path, **changes) -> Config:
    cfg = Config(
        dataset=DatasetConfig(name="synthetic", val_size=64),
        model=ModelConfig(widths=[8, 16]),
        optim=OptimConfig(lr=0.05),
        train=TrainConfig(epochs=2, batch_size=32),
        sweep="t",
        results_dir=str(results_dir),
        progress=False,
        threads=1,
    )
    for key, value in changes.items():  # "model__norm" -> cfg.model.norm
        section, _, field = key.partition("__")
        if field:
            setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{field: value}))
        else:
            setattr(cfg, section, value)
    return cfg


def bnbench(*args: str, cwd: Path, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """Run the real command line in a child process, as a user would."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bnbench.cli", *args]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"
