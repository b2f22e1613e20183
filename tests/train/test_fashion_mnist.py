"""Integration: real Fashion-MNIST (Debian's dataset-fashion-mnist), small subsets."""

from __future__ import annotations

import pytest

from bnbench.config.schema import Config, DatasetConfig, TrainConfig
from bnbench.store.files import read_summary, run_dir
from bnbench.train.data import find_fashion_mnist
from bnbench.train.runner import execute

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_fashion_mnist(None) is None and not __import__("os").environ.get("CI"),
        reason="Fashion-MNIST not installed (make data)",
    ),
]


def test_bn_trains_well_above_chance_on_a_real_subset(tmp_path):
    cfg = Config(
        dataset=DatasetConfig(train_subset=3000, val_size=1000, test_subset=1000),
        train=TrainConfig(epochs=2, batch_size=64),
        results_dir=str(tmp_path),
        progress=False,
    )
    assert execute(cfg) == "completed"
    summary = read_summary(run_dir(cfg))
    assert summary["data_source"].startswith("/usr/share/datasets/fashion-mnist")
    assert summary["final"]["val_acc"] > 0.6  # chance is 0.1
    assert summary["final"]["test_acc"] > 0.6
