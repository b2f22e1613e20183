"""Datasets: IDX files found where promised, clear errors otherwise, splits as documented."""

from __future__ import annotations

import gzip
from pathlib import Path

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


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_a_failed_download_leaves_nothing_on_disk(name, folder, tmp_path, monkeypatch):
    """torchvision makes DIR/<class>/raw before it finds the network down: a refused run
    removes what it made (dataset.data_dir=/nonexistent made /nonexistent/MNIST/raw), in one
    line, and keeps what was there."""
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            raw = Path(root) / folder / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            (raw / "train-images-idx3-ubyte.gz").write_bytes(b"cut off")
            raise RuntimeError("Error downloading train-images:\nTried https://x/, got:\nno DNS")

    Offline.__name__ = folder  # torchvision's folder is the class's name
    monkeypatch.setattr(tvd, folder, Offline)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for data_dir in (tmp_path / "new" / "data", mine):
        data.load_raw.cache_clear()
        with pytest.raises(DatasetNotFound) as info:
            load_splits(DatasetConfig(name=name, data_dir=str(data_dir)))
        assert "\n" not in str(info.value) and "Tried https://x/, got: no DNS" in str(info.value)
    data.load_raw.cache_clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]


def test_synthetic_data_is_deterministic():
    data.load_raw.cache_clear()
    a = load_splits(DatasetConfig(name="synthetic", val_size=64))
    data.load_raw.cache_clear()
    b = load_splits(DatasetConfig(name="synthetic", val_size=64))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.num_classes == 4 and len(a.train_y) == 448
