"""`bnbench bench`: the runner's own training loop against a plain PyTorch loop, in one process.

Both loops train the same CNN with the same optimizer and batch size on Fashion-MNIST.
The reference is the loop of the PyTorch tutorials: torchvision's FashionMNIST dataset
with ToTensor/Normalize, DataLoader(shuffle=True), contiguous tensors. The two alternate
for several rounds after a warm-up, so drift in the machine's speed hits both alike, and
each round also times an fp32 GEMM, the machine's dense-matmul rate, for scale.
"""

from __future__ import annotations

import gzip
import json
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bnbench.config.schema import Config, DatasetConfig, ModelConfig, TrainConfig
from bnbench.store.files import write_atomic, write_csv
from bnbench.train.data import (
    DEFAULT_DOWNLOAD_DIR,
    IDX_FILES,
    NORMALIZATION,
    find_fashion_mnist,
    load_splits,
)
from bnbench.train.loop import Training, lr_schedule, make_optimizer, train_epoch
from bnbench.train.model import build_model
from bnbench.train.runtime import device_name, setup_runtime

GEMM_SIZE = 1024  # CPU
CUDA_GEMM_SIZE, CUDA_GEMM_REPEATS = 4096, 50  # about 0.1-0.3 s a trial on a datacenter GPU


@dataclass
class BenchOptions:
    batch_size: int = 128
    device: str = "cpu"
    threads: int | None = None  # default: every core
    norms: list[str] = field(default_factory=lambda: ["batch", "none"])
    channels_last: bool = True
    compile: bool = False
    rounds: int = 5
    steps: int = 30  # training steps per timed measurement
    out_dir: str = "results/bench"


def run_bench(opts: BenchOptions, log=print) -> dict:
    """Time both loops round by round; write bench.csv and bench.json; return the summary."""
    # The runner's own process settings (threads, denormals, allocator); the reference loop
    # shares the process, so it gets them too.
    device = setup_runtime(Config(device=opts.device, threads=opts.threads))
    rows, compile_s, flops_per_image = [], {}, {}
    for norm in opts.norms:
        runner = RunnerLoop(opts, norm, device)
        reference = ReferenceLoop(opts, norm, device)
        flops_per_image[norm] = training_flops(reference.model, opts.batch_size, device)
        compile_s[norm] = runner.warm_up()
        reference.warm_up()
        for round_ in range(1, opts.rounds + 1):
            gemm = gemm_gflops(device)
            for loop_name, loop in (("runner", runner), ("reference", reference)):
                images_per_s = loop.time_steps()
                rows.append(
                    {
                        "round": round_,
                        "norm": norm,
                        "loop": loop_name,
                        "images_per_s": images_per_s,
                        "gflops": images_per_s * flops_per_image[norm] / 1e9,
                        "matmul_gflops": gemm,
                    }
                )
            log(_round_line(rows[-2], rows[-1]))
    summary = summarize(rows, opts, device, compile_s, flops_per_image)
    write_outputs(Path(opts.out_dir), rows, summary)
    return summary


def _round_line(runner: dict, reference: dict) -> str:
    return (
        f"{runner['norm']:>6} round {runner['round']}: runner {runner['images_per_s']:7.0f} img/s, "
        f"reference {reference['images_per_s']:7.0f} img/s, "
        f"ratio {runner['images_per_s'] / reference['images_per_s']:.2f}x, "
        f"matmul {runner['matmul_gflops']:.1f} GFLOP/s"
    )


class RunnerLoop:
    """bnbench.train.loop.train_epoch itself, on tensors already on the device."""

    def __init__(self, opts: BenchOptions, norm: str, device: torch.device):
        self.cfg = Config(
            dataset=DatasetConfig(train_subset=opts.steps * opts.batch_size, val_size=0),
            model=ModelConfig(norm=norm),
            train=TrainConfig(batch_size=opts.batch_size, channels_last=opts.channels_last),
            progress=False,
        )
        self.splits = load_splits(self.cfg.dataset).to(device)
        torch.manual_seed(0)
        self.model = build_model(self.cfg.model, 1, 10, seed=0).to(device)
        if opts.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.cfg.optim, self.model)
        self.forward_model = torch.compile(self.model) if opts.compile else self.model
        self.steps, self.batch = opts.steps, opts.batch_size
        self.order = torch.Generator().manual_seed(0)
        self.epoch = 0

    def warm_up(self) -> float:
        """One untimed pass; returns its extra cost over a timed pass (compile time)."""
        start = time.perf_counter()
        self.time_steps()
        first = time.perf_counter() - start
        return max(0.0, first - self.steps * self.batch / self.time_steps())

    def time_steps(self) -> float:
        self.epoch += 1
        perm = torch.randperm(len(self.splits.train_y), generator=self.order)
        perm = perm.to(self.splits.train_x.device)
        lr_at = lr_schedule(self.cfg.optim, self.steps, 10**6)
        _sync(self.splits.train_x.device)
        start = time.perf_counter()
        run = Training(
            self.cfg.train, self.forward_model, self.optimizer, self.splits, lr_at, self.steps
        )
        train_epoch(run, self.epoch, perm, first_loss=None)
        _sync(self.splits.train_x.device)
        return self.steps * self.batch / (time.perf_counter() - start)


def reference_dataset(root: Path):
    """torchvision's FashionMNIST with the usual ToTensor + Normalize transforms."""
    from torchvision import datasets, transforms

    mean, std = NORMALIZATION["fashion_mnist"]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return datasets.FashionMNIST(str(root), train=True, transform=transform)


class ReferenceLoop:
    """The tutorial loop: Dataset + transforms + DataLoader(shuffle=True), eager, contiguous."""

    def __init__(self, opts: BenchOptions, norm: str, device: torch.device):
        dataset = reference_dataset(torchvision_root())
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=opts.batch_size, shuffle=True, drop_last=True
        )
        self.batches = iter(self.loader)
        torch.manual_seed(0)
        self.model = build_model(ModelConfig(norm=norm), 1, 10, seed=0).to(device)
        cfg = Config().optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        self.device, self.steps, self.batch = device, opts.steps, opts.batch_size

    def warm_up(self) -> None:
        self.time_steps()

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
        _sync(self.device)
        return self.steps * self.batch / (time.perf_counter() - start)


def torchvision_root(data_dir: str | None = None, root: Path | None = None) -> Path:
    """A torchvision-layout copy (FashionMNIST/raw/, uncompressed) of the IDX files found."""
    source = find_fashion_mnist(data_dir)
    if source is None:
        raise FileNotFoundError(
            "Fashion-MNIST not found: `apt-get install dataset-fashion-mnist` (or `make data`); "
            "`bnbench data` says where it looks"
        )
    root = root or DEFAULT_DOWNLOAD_DIR / "torchvision"
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


def training_flops(model: torch.nn.Module, batch: int, device: torch.device) -> float:
    """FLOPs of one forward + backward per image, as torch's FlopCounterMode counts them."""
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.zeros(batch, dtype=torch.int64, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def gemm_gflops(device: torch.device, repeats: int = 5) -> float:
    """The dense-matmul ceiling of this device now, in GFLOP/s (fp32, or what cuDNN uses)."""
    if device.type == "cuda":
        return cuda_gemm_gflops(device)
    # Best-of-N single fp32 GEMMs: on a CPU one 1024^2 GEMM takes tens of milliseconds.
    a = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * GEMM_SIZE**3 / best / 1e9


def cuda_gemm_gflops(
    device: torch.device,
    size: int = CUDA_GEMM_SIZE,
    repeats: int = CUDA_GEMM_REPEATS,
    trials: int = 3,
) -> float:
    """Best of `trials` timings of `repeats` back-to-back size^2 GEMMs between two CUDA events.

    One small GEMM timed from the host measures mostly the launch and the sync (then
    "% of matmul" can pass 100%); queued repeats of a large one keep the GPU busy between
    the events. The GEMM runs at the convolutions' precision: TF32 exactly when cuDNN's is on.
    """
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty_like(a)
    with matmul_tf32(torch.backends.cudnn.allow_tf32):
        torch.mm(a, b, out=out)  # warm-up: cuBLAS handle and kernel choice
        best = float("inf")
        for _ in range(trials):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(repeats):
                torch.mm(a, b, out=out)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1000 / repeats)  # ms -> s per GEMM
    return 2 * size**3 / best / 1e9


@contextmanager
def matmul_tf32(allowed: bool) -> Iterator[None]:
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def summarize(rows, opts, device, compile_s, flops_per_image) -> dict:
    summary = {"options": asdict(opts), "device": device_name(device)}
    summary["threads"] = torch.get_num_threads()
    summary["torch"] = torch.__version__
    matmul = max(r["matmul_gflops"] for r in rows)
    summary["matmul_gflops"] = matmul
    for norm in opts.norms:
        mine = [r for r in rows if r["norm"] == norm and r["loop"] == "runner"]
        ref = [r for r in rows if r["norm"] == norm and r["loop"] == "reference"]
        ratios = [a["images_per_s"] / b["images_per_s"] for a, b in zip(mine, ref, strict=True)]
        runner_gflops = statistics.median(r["gflops"] for r in mine)
        summary[norm] = {
            "runner_images_per_s": _spread([r["images_per_s"] for r in mine]),
            "reference_images_per_s": _spread([r["images_per_s"] for r in ref]),
            "ratio_per_round": ratios,
            "ratio_median": statistics.median(ratios),
            "flops_per_image": flops_per_image[norm],
            "runner_gflops": runner_gflops,
            "fraction_of_matmul": runner_gflops / matmul,
            "compile_s": compile_s[norm],
        }
    return summary


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def write_outputs(directory: Path, rows: list[dict], summary: dict) -> None:
    write_csv(directory / "bench.csv", list(rows[0]), rows)
    write_atomic(directory / "bench.json", json.dumps(summary, indent=2) + "\n")
