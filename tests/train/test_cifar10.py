"""CIFAR-10 from torchvision's layout in dataset.data_dir, with the standard augmentation as
an option (issue 29, item 6), on tiny CIFAR-format files the test writes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import bnbench, same_metrics

from bnbench.train.data import CIFAR10_FILES, crop_and_flip, load_raw

PER_BATCH = 40


def fake_cifar10(root: Path) -> Path:
    """Six pickled batches as in cifar-10-python.tar.gz: {b'data': (N, 3072) uint8, b'labels'}."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(CIFAR10_FILES):
        data = rng.integers(0, 256, (PER_BATCH, 3 * 32 * 32), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(PER_BATCH)]
        with (directory / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
    return directory


def test_cifar10_loads_from_torchvisions_layout(tmp_path: Path) -> None:
    directory = fake_cifar10(tmp_path)
    train_x, train_y, test_x, test_y, source = load_raw("cifar10", str(tmp_path), 0, 0, 0)
    assert source == str(directory)
    assert train_x.shape == (5 * PER_BATCH, 3, 32, 32) and test_x.shape == (PER_BATCH, 3, 32, 32)
    assert train_y.tolist()[:3] == [0, 1, 2] and test_y.tolist()[:2] == [5, 6]
    with (directory / "data_batch_1").open("rb") as f:
        first = pickle.load(f)[b"data"][0].reshape(3, 32, 32)  # channel planes, row-major
    mean, std = 0.4914, 0.2470
    assert train_x[0, 0].numpy() == pytest.approx((first[0] / 255 - mean) / std, abs=1e-5)


def test_data_names_the_files_it_expects(tmp_path: Path) -> None:
    result = bnbench("data", "cifar10", "--data-dir", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert (
        "looked for data_batch_1, data_batch_2" in result.stderr and "test_batch" in result.stderr
    )
    fake_cifar10(tmp_path)
    out = bnbench("data", "cifar10", "--data-dir", str(tmp_path), cwd=tmp_path).stdout
    assert "cifar10: found in" in out and "200 train + 40 test images of 3x32x32" in out


def test_a_batch_that_is_not_cifar_is_refused_not_unpickled(tmp_path: Path) -> None:
    directory = fake_cifar10(tmp_path)
    (directory / "test_batch").write_bytes(pickle.dumps(print))  # any other callable
    result = bnbench("data", "cifar10", "--data-dir", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 1 and "damaged dataset file" in result.stderr
    assert "builtins.print is not part of a CIFAR-10 batch" in result.stderr


def test_crop_and_flip_shifts_and_mirrors_within_the_padding() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = crop_and_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    for image, source in zip(out, x, strict=True):
        padded = torch.nn.functional.pad(source, (2, 2, 2, 2))
        crops = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(image, c) or torch.equal(image, c.flip(2)) for c in crops)
    again = crop_and_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)


def test_cifar10_trains_with_augmentation_deterministically(tmp_path: Path) -> None:
    fake_cifar10(tmp_path / "data")
    args = [
        "dataset=cifar10",
        f"dataset.data_dir={tmp_path / 'data'}",
        "dataset.val_size=40",
        "train.batch_size=32",
        "train.epochs=2",
        "model.widths=[8,8]",
        "threads=1",
        "progress=false",
    ]
    for results, augment in [("a", True), ("b", True), ("c", False)]:
        extra = ["dataset.augment=true"] if augment else []
        bnbench("run", *args, *extra, f"results_dir={tmp_path / results}", cwd=tmp_path)
    (a,), (b,), (c,) = ((tmp_path / r / "default" / "runs").iterdir() for r in "abc")
    assert a.name == b.name != c.name  # augmentation is part of what a run computes
    same_metrics(a, b)
    assert (a / "steps.csv").read_text() != (c / "steps.csv").read_text()
