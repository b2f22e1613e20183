"""Shared helpers: the one tiny test config (conf/debug/tiny.yaml), composed as the CLI
composes it, and a way to call the real `bnbench` command."""

from __future__ import annotations

import copy
import dataclasses
import functools
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bnbench.config.schema import Config
from bnbench.store.files import HOLD_FILE, METRIC_COLUMNS
from bnbench.sweep.plan import expand

# A test run started in the background (`make test &` in a script) inherits SIGINT ignored,
# and so would every command it starts; the tests that press Ctrl-C need it as a terminal
# has it. (A Python handler here is reset to the default in children; SIG_IGN would not be.)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The override that makes any CLI run tiny: synthetic data, a small net, one epoch.
TINY = ["debug=tiny"]


@functools.cache
def _tiny() -> Config:
    """debug=tiny, two epochs, one thread, composed once per test session."""
    return expand([*TINY, "train.epochs=2", "sweep=t", "threads=1", "optim.lr=0.05"])[0].config


def tiny_config(results_dir: Path, **changes) -> Config:
    """The composed tiny config in results_dir, with `section__key=value` changes."""
    cfg = copy.deepcopy(_tiny())
    cfg.results_dir = str(results_dir)
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


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `cuda` skip, with the reason, on a machine without a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(directory: Path, n_train: int = 2000, n_test: int = 50) -> None:
    """Random images in Fashion-MNIST's IDX files: the loaders' paths without the dataset."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in arrays.items():
        write_idx(directory / f"{stem}.gz", array)


def configs(args: list[str]) -> list:
    """The configs that `bnbench run -m ARGS` trains, in order, to train them in this process."""
    return [planned.config for planned in expand([a for a in args if a != "-m"], multirun=True)]


def same_metrics(a: Path, b: Path) -> None:
    """Identical metrics.csv and steps.csv (bit for bit), wall times aside."""
    import pandas as pd

    columns = [c for c in METRIC_COLUMNS if c != "epoch_time_s"]
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "metrics.csv")[columns],
        pd.read_csv(b / "metrics.csv")[columns],
        check_exact=True,
    )
    assert (a / "steps.csv").read_text() == (b / "steps.csv").read_text()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def plant_claim(directory: Path, age_s: float = 0, **info) -> Path:
    """A claim.json (a run's hold) as another process would leave it, `age_s` old."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / HOLD_FILE
    path.write_text(json.dumps(info))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path
