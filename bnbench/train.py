"""One run: data -> model -> SGD/Adam loop -> per-epoch metrics, written to the run directory.

The loop follows cifar10-airbench: the dataset is a tensor on the training device, a batch
is an index slice of a per-epoch permutation, metrics accumulate on the device and reach
the host once per epoch (every step on CPU, where reading a scalar costs nothing, so a
diverging run stops at once).

Reliability: a run is claimed before it trains (store.claim_run), so concurrent sweeps
share the work; Ctrl-C and SIGTERM leave it `interrupted` with its partial CSVs; with
train.checkpoint=true it resumes from its last finished epoch after a kill.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bnbench import __version__
from bnbench.config import Config, OptimConfig, run_id
from bnbench.data import Splits, load_splits
from bnbench.model import build_model, norm_layers
from bnbench.store import (
    METRIC_COLUMNS,
    PROBE_COLUMNS,
    STEP_COLUMNS,
    Claim,
    ClaimLost,
    claim_run,
    is_finished,
    read_claim,
    run_dir,
    write_config,
    write_csv,
    write_json,
)

EVAL_BATCH = 256  # activations of 1000 images spill the CPU caches: 15-40% slower per image
CHECKPOINT_FILE = "checkpoint.pt"


class Diverged(Exception):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, scancel, preemption) as an exception, so it is handled like Ctrl-C."""


def execute(cfg: Config, parallel_jobs: int = 1) -> str:
    """Train the run unless it is finished or another process holds its claim.

    Returns completed | diverged | failed | skipped (finished earlier) | claimed (another
    process trains it). A crash is recorded, not raised, so the sweep goes on; Ctrl-C and
    SIGTERM mark the run `interrupted` and propagate, so the sweep stops.
    """
    directory = run_dir(cfg)
    if is_finished(directory):
        return "skipped"
    with sigterm_raises():
        claim = claim_run(directory)
        if claim is None:
            holder = read_claim(directory)
            _log(cfg, f"skipped: claimed by {holder.get('host')} pid {holder.get('pid')}")
            return "claimed"
        try:
            if is_finished(directory):  # another process finished it while we claimed
                return "skipped"
            return train_run(cfg, claim, parallel_jobs)["status"]
        except ClaimLost as why:  # we looked dead to another process, which trains it now
            _log(cfg, f"stopped: {why}")
            return "claimed"
        except Exception as error:  # one broken run must not end the sweep
            extra = {"error": repr(error), "traceback": traceback.format_exc()}
            record_unfinished(cfg, claim, "failed", extra)
            _log(cfg, f"failed: {error!r}")
            return "failed"
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM, submitit's requeue exit
            record_unfinished(cfg, claim, "interrupted", {})
            _log(cfg, "interrupted; its partial files are kept, the next call trains it again")
            raise
        finally:
            claim.release()


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


def record_unfinished(cfg: Config, claim: Claim, status: str, extra: dict) -> None:
    """summary.json for a run that stopped early; the next call trains it again."""
    if not claim.held():
        return  # the run belongs to another process now; its files are not ours to write
    summary = base_summary(cfg) | {"status": status, **extra}
    summary |= {"started_at": claim.started_at, "pid": os.getpid()}
    write_json(run_dir(cfg) / "summary.json", summary)


def _log(cfg: Config, message: str) -> None:
    print(f"[{run_id(cfg)}] {message}", file=sys.stderr, flush=True)


def train_run(cfg: Config, claim: Claim, parallel_jobs: int = 1) -> dict:
    directory = run_dir(cfg)
    (directory / "summary.json").unlink(missing_ok=True)  # a rerun starts from nothing
    write_config(directory / "config.yaml", cfg)
    started = time.time()
    device = setup_runtime(cfg, parallel_jobs)

    torch.manual_seed(cfg.seed)
    splits = load_splits(cfg.dataset).to(device)
    model = build_model(cfg.model, splits.in_channels, splits.num_classes, cfg.seed).to(device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(cfg.optim, model, device)
    if cfg.train.amp:
        keep_norms_fp32(model)

    epochs, batch = cfg.train.epochs, cfg.train.batch_size
    steps_per_epoch = len(splits.train_y) // batch  # the partial last batch is dropped
    lr_at = lr_schedule(cfg.optim, steps_per_epoch, epochs)
    order = torch.Generator().manual_seed(cfg.seed)  # same data order for BN and no-BN
    progress = Progress(cfg, steps_per_epoch)
    probe_rows: list[dict] = []
    probe = probe_hook(cfg, model, splits, probe_rows)

    def on_step(step: int, lr: float) -> None:
        probe(step, lr)
        progress.step()
        claim.beat()  # cheap: touches the file only every HEARTBEAT_S

    metric_rows, step_rows, status, first_loss = [], [], "completed", None
    checkpoint, done_before, wall_before = directory / CHECKPOINT_FILE, 0, 0.0
    if cfg.train.checkpoint and checkpoint.exists():
        saved = load_checkpoint(checkpoint, model, optimizer, order, device)
        metric_rows, step_rows, first_loss = saved["metrics"], saved["steps"], saved["first_loss"]
        probe_rows.extend(saved["probes"])  # the probe hook appends to this very list
        done_before, wall_before = saved["epoch"], saved["wall_time_s"]
        _log(cfg, f"resuming after epoch {done_before} from {checkpoint.name}")
    for epoch in range(done_before + 1, epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(len(splits.train_y), generator=order).to(device)
        try:
            epoch_stats, epoch_steps, first_loss = train_epoch(
                cfg,
                model,
                optimizer,
                splits,
                perm,
                epoch,
                steps_per_epoch,
                lr_at,
                first_loss,
                on_step,
            )
        except Diverged as why:
            status, (epoch_stats, epoch_steps, first_loss) = "diverged", why.args
        step_rows += epoch_steps
        row = {"epoch": epoch, **epoch_stats}
        if status == "completed":
            row.update(_prefixed("val", evaluate(model, splits.val_x, splits.val_y, memory_format)))
            row.update(
                _prefixed("test", evaluate(model, splits.test_x, splits.test_y, memory_format))
            )
        row["epoch_time_s"] = time.perf_counter() - t0
        metric_rows.append(row)
        write_csv(directory / "metrics.csv", METRIC_COLUMNS, metric_rows)
        write_csv(directory / "steps.csv", STEP_COLUMNS, step_rows)
        if cfg.probes.names:
            write_csv(directory / "probes.csv", PROBE_COLUMNS, probe_rows)
        progress.epoch_done(row, status)
        if status == "diverged":
            break
        if cfg.train.checkpoint and epoch < epochs:
            state = {
                "epoch": epoch,
                "metrics": metric_rows,
                "steps": step_rows,
                "probes": probe_rows,
                "first_loss": first_loss,
                "wall_time_s": wall_before + time.time() - started,
            }
            save_checkpoint(checkpoint, state, model, optimizer, order)
    progress.close()
    if cfg.probes.names and status == "completed":
        from bnbench.probes import final_probes

        probe_rows += final_probes(cfg.probes, model, splits, step=epochs * steps_per_epoch)
        write_csv(directory / "probes.csv", PROBE_COLUMNS, probe_rows)

    summary = base_summary(cfg) | finish_summary(metric_rows, status, first_loss, splits)
    summary |= {"device": str(device), "threads": torch.get_num_threads()}
    summary |= {"started_at": claim.started_at, "pid": os.getpid()}
    summary |= {"resumed_after_epoch": done_before} if done_before else {}
    summary["wall_time_s"] = wall_before + time.time() - started
    claim.beat(force=True)  # still ours? (raises ClaimLost otherwise)
    write_json(directory / "summary.json", summary)
    checkpoint.unlink(missing_ok=True)  # finished: a rerun skips the run, the state is no use
    return summary


def save_checkpoint(
    path: Path, state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, order
) -> None:
    """Everything the next epoch depends on, written to a temporary name and renamed."""
    state = state | {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_order": order.get_state(),  # the per-epoch permutations still to come
        "torch_rng": torch.get_rng_state(),  # dropout and noisy_batch draw from it
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, order, device
) -> dict:
    """Restore model, optimizer and random states from save_checkpoint; return the rest."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    order.set_state(state["data_order"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] and device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return state


def train_epoch(
    cfg, model, optimizer, splits, perm, epoch, steps_per_epoch, lr_at, first_loss, on_step
):
    """One pass over the training set; raises Diverged(stats, step_rows, first_loss) on blow-up."""
    model.train()
    batch, log_every = cfg.train.batch_size, cfg.train.log_every
    device = splits.train_x.device
    # Reading the loss on the host is free on CPU, so a diverging run stops at once; on a GPU
    # it is a sync, so the loss is read once per epoch (a NaN persists to the epoch's end).
    check_every = 1 if device.type == "cpu" else steps_per_epoch
    channels_last = cfg.train.channels_last
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.amp)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    grad_norm_sum = torch.zeros((), device=device)
    window = torch.zeros((), device=device)
    pending_logs, step_rows = [], []
    limit = math.inf if first_loss is None else cfg.train.diverge_factor * first_loss

    for i in range(steps_per_epoch):
        step = (epoch - 1) * steps_per_epoch + i
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        on_step(step, lr)  # probes see the parameters before this step's update
        idx = perm[i * batch : (i + 1) * batch]
        x, y = splits.train_x[idx], splits.train_y[idx]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm_sum += torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
        optimizer.step()

        detached = loss.detach()
        loss_sum += detached
        window += detached
        correct += (logits.argmax(1) == y).sum()
        if (i + 1) % log_every == 0 or i + 1 == steps_per_epoch:
            pending_logs.append((step + 1, epoch, window / ((i % log_every) + 1), lr))
            window = torch.zeros((), device=device)
        if first_loss is None or (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
            value = detached.item()
            if first_loss is None:
                first_loss, limit = value, cfg.train.diverge_factor * value
            if not math.isfinite(value) or value > limit:
                step_rows = _step_rows(pending_logs) + [
                    {"step": step + 1, "epoch": epoch, "train_loss": value, "lr": lr}
                ]
                stats = _train_stats(loss_sum, correct, grad_norm_sum, i + 1, batch, lr)
                raise Diverged(stats, step_rows, first_loss)
    stats = _train_stats(loss_sum, correct, grad_norm_sum, steps_per_epoch, batch, lr_at(step))
    return stats, _step_rows(pending_logs), first_loss


def probe_hook(cfg: Config, model: nn.Module, splits: Splits, rows: list[dict]):
    """(step, lr) -> None: runs the in-training probes on a fixed batch every probes.every steps."""
    if not cfg.probes.names:
        return lambda step, lr: None
    from bnbench.probes import step_probes

    x, y = splits.train_x[: cfg.probes.batch_size], splits.train_y[: cfg.probes.batch_size]
    if cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def probe(step: int, lr: float) -> None:
        if step % cfg.probes.every == 0:
            rows.extend(step_probes(cfg.probes, model, lr, x, y, step))

    return probe


def _train_stats(loss_sum, correct, grad_norm_sum, steps, batch, lr) -> dict:
    return {
        "train_loss": loss_sum.item() / steps,
        "train_acc": correct.item() / (steps * batch),
        "grad_norm": grad_norm_sum.item() / steps,
        "lr": lr,
    }


def _step_rows(pending) -> list[dict]:
    return [
        {"step": s, "epoch": e, "train_loss": loss.item(), "lr": lr} for s, e, loss, lr in pending
    ]


def _prefixed(prefix: str, stats: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in stats.items()}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, memory_format=None) -> dict:
    """Mean loss and accuracy in eval mode (BN uses its running statistics)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, len(y), EVAL_BATCH):
        xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
        if memory_format is not None:
            xb = xb.contiguous(memory_format=memory_format)
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return {"loss": loss_sum.item() / len(y), "acc": correct.item() / len(y)}


def make_optimizer(
    cfg: OptimConfig, model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.name == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, foreach=True
        )
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        foreach=True,
    )


def lr_schedule(cfg: OptimConfig, steps_per_epoch: int, epochs: int):
    """step -> learning rate: linear warmup, then constant, step decay or cosine to zero."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        if cfg.schedule == "step":
            return cfg.lr * cfg.gamma ** (step // (cfg.step_size * steps_per_epoch))
        if cfg.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.lr

    return lr_at


def setup_runtime(cfg: Config, parallel_jobs: int = 1) -> torch.device:
    """Pick the device, set threads (never more than cores), flush denormals on CPU."""
    torch.set_flush_denormal(True)  # a diverging no-BN run otherwise crawls through denormals
    keep_freed_memory()
    threads = cfg.threads or max(1, available_cores() // max(1, parallel_jobs))
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device)
    if cfg.train.amp and device.type != "cuda":
        raise RuntimeError("train.amp=true needs a CUDA device; this machine has none")
    return device


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


def keep_norms_fp32(model: nn.Module) -> None:
    """Under autocast, run every normalization layer in fp32 (its input cast up, autocast off
    inside): batch statistics of bf16 activations lose too much precision. Module paths and
    the state dict stay as they are."""
    for norm in norm_layers(model):
        if isinstance(norm, nn.Identity):
            continue
        forward = norm.forward

        def fp32_forward(x: torch.Tensor, forward=forward) -> torch.Tensor:
            with torch.autocast(x.device.type, enabled=False):
                return forward(x.float())

        norm.forward = fp32_forward


def available_cores() -> int:
    """The CPUs this process may use: its affinity mask (what SLURM's cgroup or taskset set),
    capped by SLURM_CPUS_PER_TASK on clusters that allocate CPUs without pinning them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cores


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but no CUDA device is available (use device=cpu or auto)")
    return torch.device(name)


def base_summary(cfg: Config) -> dict:
    return {
        "run_id": run_id(cfg),
        "sweep": cfg.sweep,
        "seed": cfg.seed,
        "host": socket.gethostname(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "bnbench": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "git_commit": git_commit(),
    }


def finish_summary(rows: list[dict], status: str, first_loss: float | None, splits: Splits) -> dict:
    last = rows[-1]
    evaluated = [r for r in rows if "val_acc" in r]
    best = max(evaluated, key=lambda r: r["val_acc"], default=None)
    final = {k: last.get(k) for k in METRIC_COLUMNS if k not in ("epoch", "epoch_time_s")}
    return {
        "status": status,
        "epochs_completed": len(evaluated),
        "final": final,
        "best_val_acc": best["val_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "first_loss": first_loss,
        "data_source": splits.source,
        "n_train": len(splits.train_y),
        "n_val": len(splits.val_y),
        "n_test": len(splits.test_y),
    }


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class Progress:
    """A rich progress bar on a terminal; one plain line per epoch otherwise."""

    def __init__(self, cfg: Config, steps_per_epoch: int):
        self.label = f"{run_id(cfg)} {cfg.model.norm}"
        self.epochs = cfg.train.epochs
        self.bar = None
        if cfg.progress and sys.stdout.isatty():
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(transient=True)
            self.task = self.bar.add_task(self.label, total=steps_per_epoch * self.epochs)
            self.bar.start()

    def step(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def epoch_done(self, row: dict, status: str) -> None:
        val = f"val_acc {row['val_acc']:.2%}" if "val_acc" in row else status
        text = (
            f"[{self.label}] epoch {row['epoch']}/{self.epochs} "
            f"train_loss {row['train_loss']:.4f} {val} ({row['epoch_time_s']:.1f} s)"
        )
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
