"""The loops `bnbench bench` times against each other, each training the same CNN with the
same SGD settings and batch size on Fashion-MNIST:

- `bnbench`: bnbench's own loop (train_epoch), set up as a run is, with the speed switches
  asked for; `bnbench_default` beside it (switches off) when any switch is on, so a lever is
  judged in the same rounds;
- `plain`: the strongest plain loop a competent user writes: the data as tensors in memory,
  batches as index slices of a per-epoch permutation, channels_last, torch's SGD as is;
- `tutorial`: the loop of the PyTorch tutorials: torchvision's FashionMNIST with
  ToTensor/Normalize, DataLoader(shuffle=True), contiguous tensors, loss.item() per step.

`bnbench` and `plain` train on the same tensors in the same order from the same weights, so
their losses agree within float32 rounding (tests/bench/test_bench.py).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bnbench.config.schema import Config, DatasetConfig, ModelConfig, OptimConfig, TrainConfig
from bnbench.train.data import (
    DEFAULT_DOWNLOAD_DIR,
    IDX_FILES,
    NORMALIZATION,
    Splits,
    find_fashion_mnist,
    load_splits,
)
from bnbench.train.loop import train_epoch
from bnbench.train.model import build_model
from bnbench.train.runner import setup_training

BNBENCH, DEFAULT, PLAIN, TUTORIAL = "bnbench", "bnbench_default", "plain", "tutorial"
DEFAULT_WIDTHS = ModelConfig().widths
DEFAULT_BATCH = TrainConfig().batch_size  # the batch the default LR is for


@dataclass
class BenchOptions:
    batch_size: int = 128
    device: str = "cpu"
    threads: list[int] | None = None  # torch thread counts to bench; default: 1 and every core
    norms: list[str] = field(default_factory=lambda: ["batch", "none"])
    widths: list[int] = field(default_factory=lambda: list(DEFAULT_WIDTHS))
    channels_last: bool = True  # bnbench's loop; the plain loop is always channels_last
    fused_optimizer: bool = False  # bnbench's loop: train.fused_optimizer
    compile: bool = False  # bnbench's loop: train.compile (its compile time is reported)
    rounds: int = 5
    steps: int = 30  # training steps per timed measurement
    out_dir: str = "results/bench"
    data_dir: str | None = None  # where Fashion-MNIST is looked for first
    torchvision_dir: str | None = None  # the tutorial's copy of it; default: the user's cache

    def switches_on(self) -> bool:
        return self.fused_optimizer or self.compile


def quick(opts: BenchOptions) -> BenchOptions:
    """Tiny rounds (2 of 2 steps, 1 thread): checks every path in seconds, measures nothing."""
    return dataclasses.replace(opts, rounds=2, steps=2, threads=[1])


def bench_config(opts: BenchOptions, norm: str, switches: bool) -> Config:
    """The run config bnbench's loop trains: `steps` batches of training images, no validation."""
    train = TrainConfig(
        batch_size=opts.batch_size,
        channels_last=opts.channels_last,
        fused_optimizer=switches and opts.fused_optimizer,
        compile=switches and opts.compile,
    )
    # The LR scaled linearly with the batch, as claim 7's runs are: at batch 2 the default LR
    # diverged within a round, and bnbench's loop stops at divergence, so such a round timed
    # fewer steps than it counted (47 000 img/s against 1 500).
    optim = OptimConfig(lr=OptimConfig().lr * opts.batch_size / DEFAULT_BATCH)
    return Config(
        dataset=DatasetConfig(
            data_dir=opts.data_dir, train_subset=opts.steps * opts.batch_size, val_size=0
        ),
        model=ModelConfig(norm=norm, widths=list(opts.widths)),
        optim=optim,
        train=train,
        device=opts.device,
        progress=False,
    )


class TimedLoop(ABC):
    """`steps` training steps per measurement; the mean loss of each measurement is kept."""

    name: str
    model: nn.Module

    def __init__(self, opts: BenchOptions, device: torch.device):
        self.steps, self.batch, self.device = opts.steps, opts.batch_size, device
        self.order = torch.Generator().manual_seed(0)  # the same orders for every loop
        self.mean_losses: list[float] = []

    @abstractmethod
    def time_steps(self) -> float:
        """Images per second of one measurement."""

    def next_perm(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.order).to(self.device)

    def images_per_s(self, start: float) -> float:
        _sync(self.device)
        return self.steps * self.batch / (time.perf_counter() - start)


class BnbenchLoop(TimedLoop):
    """bnbench.train.loop.train_epoch itself, set up by setup_training as a run is."""

    def __init__(self, name: str, cfg: Config, opts: BenchOptions, device: torch.device):
        super().__init__(opts, device)
        self.name, self.cfg, self.epoch = name, cfg, 0
        self.run = setup_training(cfg, load_splits(cfg.dataset).to(device), device)
        self.model = self.run.model

    def time_steps(self) -> float:
        self.epoch += 1
        perm = self.next_perm(len(self.run.splits.train_y))
        _sync(self.device)
        start = time.perf_counter()
        result = train_epoch(self.run, self.epoch, perm, first_loss=None)
        images_per_s = self.images_per_s(start)
        self.mean_losses.append(result.stats["train_loss"])
        return images_per_s


class PlainLoop(TimedLoop):
    """The strongest plain loop: in-memory tensors (bnbench's own), index slices of a
    permutation, channels_last, torch.optim.SGD with its defaults; no metrics but the loss,
    kept on the device (a user watches it) and read after the measurement."""

    name = PLAIN

    def __init__(self, cfg: Config, splits: Splits, opts: BenchOptions, device: torch.device):
        super().__init__(opts, device)
        self.x, self.y = splits.train_x, splits.train_y
        model = build_model(cfg.model, splits.in_channels, splits.num_classes, cfg.seed)
        self.model = model.to(device).to(memory_format=torch.channels_last)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum)

    def time_steps(self) -> float:
        self.model.train()
        perm = self.next_perm(len(self.y))
        losses = torch.empty(self.steps, device=self.device)
        _sync(self.device)
        start = time.perf_counter()
        for i in range(self.steps):
            idx = perm[i * self.batch : (i + 1) * self.batch]
            x = self.x[idx].contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(self.model(x), self.y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses[i] = loss.detach()
        images_per_s = self.images_per_s(start)
        self.mean_losses.append(losses.mean().item())
        return images_per_s


class TutorialLoop(TimedLoop):
    """The tutorial loop: Dataset + transforms + DataLoader(shuffle=True), eager, contiguous."""

    name = TUTORIAL

    def __init__(self, cfg: Config, opts: BenchOptions, device: torch.device):
        super().__init__(opts, device)
        root = Path(opts.torchvision_dir) if opts.torchvision_dir else None
        dataset = reference_dataset(torchvision_root(opts.data_dir, root))
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=opts.batch_size, shuffle=True, drop_last=True
        )
        self.batches = iter(self.loader)
        self.model = build_model(cfg.model, 1, 10, seed=cfg.seed).to(device)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum)

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def time_steps(self) -> float:
        self.model.train()
        running_loss = 0.0
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(self.steps):
            x, y = self.next_batch()
            x, y = x.to(self.device), y.to(self.device)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            running_loss += loss.item()
        images_per_s = self.images_per_s(start)
        self.mean_losses.append(running_loss / self.steps)
        return images_per_s


def make_loops(opts: BenchOptions, norm: str, device: torch.device) -> list[TimedLoop]:
    """bnbench's loop (and its default twin when a switch is on), the plain and tutorial loops."""
    cfg = bench_config(opts, norm, switches=True)
    mine = BnbenchLoop(BNBENCH, cfg, opts, device)
    loops: list[TimedLoop] = [mine]
    if opts.switches_on():
        loops.append(BnbenchLoop(DEFAULT, bench_config(opts, norm, switches=False), opts, device))
    return [*loops, PlainLoop(cfg, mine.run.splits, opts, device), TutorialLoop(cfg, opts, device)]


def warm_up(loop: TimedLoop) -> float:
    """Two untimed measurements; the seconds the first took beyond the second (compile time,
    caches, kernel choice): a cost a run pays once."""
    start = time.perf_counter()
    loop.time_steps()
    first = time.perf_counter() - start
    return max(0.0, first - loop.steps * loop.batch / loop.time_steps())


def reference_dataset(root: Path):
    """torchvision's FashionMNIST with the usual ToTensor + Normalize transforms."""
    from torchvision import datasets, transforms

    mean, std = NORMALIZATION["fashion_mnist"]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return datasets.FashionMNIST(str(root), train=True, transform=transform)


def torchvision_root(data_dir: str | None = None, root: Path | None = None) -> Path:
    """A torchvision-layout copy (FashionMNIST/raw/, uncompressed) of the IDX files found
    (in `root`; default: the user's cache)."""
    source = find_fashion_mnist(data_dir)
    if source is None:
        raise FileNotFoundError(
            "Fashion-MNIST not found: `apt-get install dataset-fashion-mnist` (or `make data`); "
            "`bnbench data` says where it looks"
        )
    # One copy per source directory: a copy is reused once made, so two sources never share one.
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    root = root or DEFAULT_DOWNLOAD_DIR / "torchvision" / key
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES.values():
        target = raw / stem
        if target.exists():
            continue
        gz = source / f"{stem}.gz"
        with gzip.open(gz) if gz.exists() else open(source / stem, "rb") as src:
            with open(target.with_suffix(".tmp"), "wb") as dst:
                shutil.copyfileobj(src, dst)
        target.with_suffix(".tmp").replace(target)
    return root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
