"""The process a run trains in: device, threads, denormals, allocator, signals, precision.

Everything here sets up or guards the process, not the experiment; `bnbench bench` and
the CLI use the same helpers, so a benchmark measures the runner's own process settings.
"""

from __future__ import annotations

import ctypes
import platform
import signal
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from bnbench.config.machine import available_cores
from bnbench.config.schema import Config
from bnbench.train.model import norm_layers


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, scancel, preemption) as an exception, so it is handled like Ctrl-C."""


def setup_runtime(cfg: Config, parallel_jobs: int = 1) -> torch.device:
    """Pick the device, set threads (never more than cores), flush denormals on CPU."""
    torch.set_flush_denormal(True)  # a diverging no-BN run otherwise crawls through denormals
    keep_freed_memory()
    threads = cfg.threads or max(1, available_cores() // max(1, parallel_jobs))
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device)
    if cfg.train.amp and device.type != "cuda":
        raise RuntimeError("train.amp=true needs a CUDA device; this machine has none")
    if device.type == "cuda":
        exact_cuda_math()
    return device


def exact_cuda_math() -> None:
    """fp32 matmuls and convolutions (no TF32) with deterministic cuDNN algorithms: a GPU run
    computes in the precision a CPU run does and repeats bit for bit on the same GPU. It
    costs speed on Ampere and later, where TF32 is several times faster than fp32; the
    policy and its cost are in docs/configuration.md#gpu."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False  # the fastest algorithm can differ run to run


def runtime_facts(device: torch.device, amp: bool = False) -> dict:
    """What a run's numbers depend on that its run id does not cover, for summary.json:
    results repeat bit for bit only where these (and threads, memory format) are equal."""
    cuda = device.type == "cuda"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    return {
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "tf32": cuda and tf32,  # TF32 is a CUDA matter: the CPU computes in fp32
        "cudnn_deterministic": torch.backends.cudnn.deterministic if cuda else None,
        "amp": amp,  # bf16 autocast, normalization in fp32
    }


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and the cores this process may use."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.machine()
    return f"cpu: {model}, {available_cores()} cores"


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX = -1, -3, 32 * 2**20


def keep_freed_memory() -> None:
    """Keep freed activations in the heap for the next step instead of returning them to the OS.

    By default glibc serves each multi-MB activation with a fresh mmap and unmaps it when
    freed, so every training step page-faults its activations back in: on this project's
    CNN that is about a tenth of a CPU step (measured: 560 000 page faults in 400 steps,
    140 000 with this). A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, 2**30)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but no CUDA device is available (use device=cpu or auto)")
    return torch.device(name)


def keep_norms_fp32(model: nn.Module) -> None:
    """Under autocast, run every normalization layer in fp32 (its input cast up, autocast off
    inside): batch statistics of bf16 activations lose too much precision. Module paths and
    the state dict stay as they are."""
    for norm in norm_layers(model):
        if not isinstance(norm, nn.Identity):
            # A method bound to this very layer: a deepcopy of the model (every probe works on
            # one) binds the copy's method to the copy, so the copy runs its own weights, mode
            # and running statistics. A closure over `norm.forward` would run the original's.
            norm.forward = types.MethodType(_fp32_forward, norm)


def _fp32_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return type(self).forward(self, x.float())


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While training, SIGTERM raises Terminated in the main thread (signals go nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
