"""Datasets: IDX files found where promised, clear errors otherwise, splits as documented."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from conftest import fake_fashion_mnist, write_idx

from bnbench.config.schema import DatasetConfig
from bnbench.train import data
from bnbench.train.data import DatasetNotFound, load_splits, read_idx


def test_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), array)


def test_truncated_idx_file_names_the_file(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((10, 28, 28)))
    raw = gzip.decompress((tmp_path / "x.gz").read_bytes())[:100]
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(DatasetNotFound, match="damaged dataset file .*x.gz"):
        read_idx(tmp_path / "x.gz")


def test_data_dir_is_searched_first_and_splits_are_as_configured(tmp_path):
    fake_fashion_mnist(tmp_path / "fm")
    data.load_raw.cache_clear()
    cfg = DatasetConfig(
        data_dir=str(tmp_path / "fm"), val_size=500, train_subset=300, test_subset=20
    )
    splits = load_splits(cfg)
    assert splits.source == str(tmp_path / "fm")
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (300, 500, 20)
    assert splits.train_x.shape[1:] == (1, 28, 28) and splits.num_classes == 10
    # The validation split is the same whatever the training subset: no leakage into train.
    again = load_splits(DatasetConfig(data_dir=str(tmp_path / "fm"), val_size=500))
    assert torch.equal(again.val_x, splits.val_x)
    assert torch.equal(again.train_x[:300], splits.train_x)


def test_missing_fashion_mnist_names_every_place_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    data.load_raw.cache_clear()

    def no_download(*args, **kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(data, "torchvision_arrays", no_download)
    with pytest.raises(DatasetNotFound) as info:
        load_splits(DatasetConfig(data_dir=str(tmp_path / "mine")))
    message = str(info.value)
    for place in (
        "mine",
        "debian",
        "torchvision download",
        "apt-get install dataset-fashion-mnist",
    ):
        assert place in message


def test_synthetic_data_is_deterministic():
    data.load_raw.cache_clear()
    a = load_splits(DatasetConfig(name="synthetic", val_size=64))
    data.load_raw.cache_clear()
    b = load_splits(DatasetConfig(name="synthetic", val_size=64))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.num_classes == 4 and len(a.train_y) == 448
