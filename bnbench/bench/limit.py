"""The limit a training loop is measured against: the model's FLOPs per image, as torch's
FlopCounterMode counts them, and the device's dense-matmul rate, timed in every round."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

GEMM_SIZE = 1024  # CPU
CUDA_GEMM_SIZE, CUDA_GEMM_REPEATS = 4096, 50  # about 0.1-0.3 s a trial on a datacenter GPU


def training_flops(model: torch.nn.Module, batch: int, device: torch.device) -> float:
    """FLOPs of one forward + backward per image, as torch's FlopCounterMode counts them.
    It updates BN's running statistics: hand it a model that does not train afterwards."""
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
