"""Datasets as whole tensors: load once, split, normalise; batches are index slices later.

Fashion-MNIST is read from `data_dir`, else from Debian's `dataset-fashion-mnist`
package, else downloaded by torchvision; CIFAR-10 from torchvision's layout in `data_dir`,
else downloaded there; a miss names every place looked and the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import pickle
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bnbench.config.schema import NUM_CLASSES, DatasetConfig

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DOWNLOAD_DIR = Path.home() / ".cache" / "bnbench"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_DIR = "cifar-10-batches-py"  # torchvision's layout under its root
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")  # the last: test
# Per-channel mean and std of the training images, the usual published constants.
NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


class DatasetNotFound(RuntimeError):
    pass


@dataclass
class Splits:
    """Normalised float images (N, C, H, W) and int64 labels for each split."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    source: str  # where the data came from, for the summary

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    def to(self, device: torch.device) -> Splits:
        tensors = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        return dataclasses.replace(self, **{k: getattr(self, k).to(device) for k in tensors})


def load_splits(cfg: DatasetConfig, seed: int = 0) -> Splits:
    """Train/val/test tensors for a dataset config; validation is held out of train. The
    split and the training subset are drawn with cfg.split_seed, or the run's `seed`."""
    images, labels, test_images, test_labels, source = load_raw(
        cfg.name, cfg.data_dir, cfg.synthetic_train, cfg.synthetic_test, cfg.synthetic_image_size
    )
    draw = cfg.split_seed if cfg.split_seed is not None else seed
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(draw))
    val_idx, train_idx = order[: cfg.val_size], order[cfg.val_size :]
    if cfg.train_subset is not None:
        train_idx = train_idx[: cfg.train_subset]
    test_end = cfg.test_subset if cfg.test_subset is not None else len(test_labels)
    return Splits(
        train_x=images[train_idx],
        train_y=labels[train_idx],
        val_x=images[val_idx],
        val_y=labels[val_idx],
        test_x=test_images[:test_end],
        test_y=test_labels[:test_end],
        num_classes=NUM_CLASSES[cfg.name],
        source=source,
    )


@functools.lru_cache(maxsize=4)
def load_raw(name, data_dir, n_train, n_test, image_size):
    """(train_x, train_y, test_x, test_y, source), normalised; cached across runs in a process."""
    if name == "synthetic":
        return (*synthetic(n_train, n_test, image_size), "synthetic")
    if name == "fashion_mnist":
        arrays, source = load_fashion_mnist(data_dir)
    elif name == "cifar10":
        arrays, source = load_cifar10(data_dir)
    else:
        arrays, source = torchvision_arrays(name, data_dir)
    train_x, train_y, test_x, test_y = arrays
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORMALIZATION[name])
    return (
        (_to_float(train_x) - mean) / std,
        torch.as_tensor(train_y, dtype=torch.int64),
        (_to_float(test_x) - mean) / std,
        torch.as_tensor(test_y, dtype=torch.int64),
        source,
    )


def _to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    x = torch.as_tensor(np.asarray(images, dtype=np.uint8)).float().div_(255)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def fashion_mnist_candidates(data_dir: str | None) -> list[Path]:
    """The directories searched for the IDX files, in order."""
    dirs = []
    if data_dir:
        dirs += [
            Path(data_dir),
            Path(data_dir) / "fashion_mnist",
            Path(data_dir) / "FashionMNIST" / "raw",
        ]
    return [*dirs, DEBIAN_FASHION_MNIST]


def find_fashion_mnist(data_dir: str | None) -> Path | None:
    for directory in fashion_mnist_candidates(data_dir):
        if all(_idx_path(directory, stem) for stem in IDX_FILES.values()):
            return directory
    return None


def load_fashion_mnist(data_dir: str | None):
    directory = find_fashion_mnist(data_dir)
    if directory is not None:
        arrays = tuple(read_idx(_idx_path(directory, stem)) for stem in IDX_FILES.values())
        return (arrays[0], arrays[1], arrays[2], arrays[3]), str(directory)
    try:
        return torchvision_arrays("fashion_mnist", data_dir)
    except Exception as error:  # network refused, no disk, ...: say where we looked
        looked = ", ".join(str(p) for p in fashion_mnist_candidates(data_dir))
        raise DatasetNotFound(
            f"Fashion-MNIST not found. Looked in: {looked} (IDX files, .gz or not); "
            f"then a torchvision download to {_download_root(data_dir)} failed "
            f"({_one_line(error)}). "
            "Fix: `apt-get install dataset-fashion-mnist` (Debian), or put the four IDX files "
            "in a directory and pass dataset.data_dir=DIR."
        ) from None


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a uint8 array; clear error if damaged."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return body.reshape(shape).copy()  # writable, so torch can share it
    except (OSError, EOFError, ValueError, struct.error) as error:
        raise DatasetNotFound(f"damaged dataset file {path}: {error}") from None


def cifar10_candidates(data_dir: str | None) -> list[Path]:
    """The directories searched for CIFAR-10's python batches, in order: torchvision's layout
    (DIR/cifar-10-batches-py/) or the batches themselves in DIR."""
    root = _download_root(data_dir)
    return [root / CIFAR10_DIR, root]


def load_cifar10(data_dir: str | None):
    for directory in cifar10_candidates(data_dir):
        if all((directory / name).is_file() for name in CIFAR10_FILES):
            batches = [read_cifar_batch(directory / name) for name in CIFAR10_FILES]
            train_x = np.concatenate([x for x, _ in batches[:-1]])
            train_y = np.concatenate([y for _, y in batches[:-1]])
            return (train_x, train_y, *batches[-1]), str(directory)
    try:
        return torchvision_arrays("cifar10", data_dir)
    except DatasetNotFound as error:
        looked = ", ".join(str(p) for p in cifar10_candidates(data_dir))
        raise DatasetNotFound(
            f"CIFAR-10 not found: looked for {', '.join(CIFAR10_FILES)} (the python version, "
            f"cifar-10-python.tar.gz unpacked) in {looked}; {error}"
        ) from None


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's batches are pickles of a dict of numpy arrays and lists: load nothing else."""

    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "numpy" and name in ("_reconstruct", "ndarray", "dtype"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: uint8 images (N, 32, 32, 3) and their labels."""
    try:
        with path.open("rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
    except (OSError, EOFError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as error:
        raise DatasetNotFound(f"damaged dataset file {path}: {error}") from None
    return images.transpose(0, 2, 3, 1), labels


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation of a batch: each image shifted by a random crop of it
    padded by `pad` (zeros: the mean colour once normalised) and flipped left-right half the
    time, drawn from `generator` (on the CPU, so every device draws the same)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1), generator=generator) for _ in range(2))
    flip = torch.rand(n, 1, generator=generator) < 0.5
    rows = (dy + torch.arange(h)).to(x.device)
    cols = dx + torch.arange(w)
    cols = torch.where(flip, cols.flip(1), cols).to(x.device)
    images = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice put their dims first: (n, h, w, c)
    return padded[images, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _download_root(data_dir: str | None) -> Path:
    return Path(data_dir) if data_dir else DEFAULT_DOWNLOAD_DIR


def torchvision_arrays(name: str, data_dir: str | None):
    """torchvision's copy in data_dir, downloading it there if missing."""
    import torchvision.datasets as tvd

    cls = {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    root = _download_root(data_dir)
    new = _first_missing(root / cls.__name__)  # torchvision downloads into root/<class>/raw
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except Exception as error:
        if new is not None:  # a refused run leaves nothing: not /nonexistent/MNIST/raw
            shutil.rmtree(new, ignore_errors=True)
        if name == "fashion_mnist":
            raise
        raise DatasetNotFound(
            f"{name} not found in {root} and the torchvision download failed "
            f"({_one_line(error)}). "
            f"Fix: download it on a machine with internet access into DIR and pass "
            f"dataset.data_dir=DIR."
        ) from None
    return (
        (
            np.asarray(train.data),
            np.asarray(train.targets),
            np.asarray(test.data),
            np.asarray(test.targets),
        ),
        str(root),
    )


def _one_line(error: Exception) -> str:
    """An error's text on one line (torchvision's download errors span several)."""
    return " ".join(str(error).split())


def _first_missing(path: Path) -> Path | None:
    """The outermost directory on the way to path that does not exist yet (None: path exists):
    what a download into path creates, so what a failed one removes again."""
    missing = None
    for directory in (path, *path.parents):
        if directory.exists():
            return missing
        missing = directory
    return missing


def synthetic(n_train: int, n_test: int, size: int, num_classes: int = NUM_CLASSES["synthetic"]):
    """A deterministic, learnable toy problem: each class is a noisy fixed prototype image."""
    g = torch.Generator().manual_seed(1234)
    prototypes = torch.randn(num_classes, 1, size, size, generator=g)
    labels = torch.arange(n_train + n_test) % num_classes
    labels = labels[torch.randperm(len(labels), generator=g)]
    images = prototypes[labels] + 1.5 * torch.randn(len(labels), 1, size, size, generator=g)
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]
