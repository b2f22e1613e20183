"""The training loop's pieces: one epoch of steps, evaluation, the optimizer, the LR schedule.

The loop follows cifar10-airbench: the dataset is a tensor on the training device, a batch
is an index slice of a per-epoch permutation, metrics accumulate on the device and reach
the host once per epoch (every step on CPU, where reading a scalar costs nothing, so a
diverging run stops at once).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bnbench.config import OptimConfig, TrainConfig
from bnbench.data import Splits

EVAL_BATCH = 256  # activations of 1000 images spill the CPU caches: 15-40% slower per image


def _no_hook(step: int, lr: float) -> None:
    pass


@dataclass
class Training:
    """What every epoch of one run trains with (fixed for the run)."""

    train: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    splits: Splits
    lr_at: Callable[[int], float]  # step -> learning rate
    steps_per_epoch: int
    on_step: Callable[[int, float], None] = field(default=_no_hook)  # before each update


@dataclass
class EpochResult:
    stats: dict  # train_loss, train_acc, grad_norm, lr: means over the steps taken
    step_rows: list[dict]  # rows of steps.csv
    first_loss: float | None  # the run's first training loss (the divergence reference)
    diverged: bool  # the loss went non-finite or above diverge_factor x first_loss


def train_epoch(
    run: Training, epoch: int, perm: torch.Tensor, first_loss: float | None
) -> EpochResult:
    """One pass over the training set in the order `perm`; stops at once on divergence."""
    model, optimizer, splits, cfg = run.model, run.optimizer, run.splits, run.train
    model.train()
    batch, log_every, steps_per_epoch = cfg.batch_size, cfg.log_every, run.steps_per_epoch
    device = splits.train_x.device
    # Reading the loss on the host is free on CPU, so a diverging run stops at once; on a GPU
    # it is a sync, so the loss is read once per epoch (a NaN persists to the epoch's end).
    check_every = 1 if device.type == "cpu" else steps_per_epoch
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    grad_norm_sum = torch.zeros((), device=device)
    window = torch.zeros((), device=device)
    pending_logs = []
    limit = math.inf if first_loss is None else cfg.diverge_factor * first_loss

    for i in range(steps_per_epoch):
        step = (epoch - 1) * steps_per_epoch + i
        lr = run.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        run.on_step(step, lr)  # probes see the parameters before this step's update
        idx = perm[i * batch : (i + 1) * batch]
        x, y = splits.train_x[idx], splits.train_y[idx]
        if cfg.channels_last:
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
                first_loss, limit = value, cfg.diverge_factor * value
            if not math.isfinite(value) or value > limit:
                step_rows = _step_rows(pending_logs) + [
                    {"step": step + 1, "epoch": epoch, "train_loss": value, "lr": lr}
                ]
                stats = _train_stats(loss_sum, correct, grad_norm_sum, i + 1, batch, lr)
                return EpochResult(stats, step_rows, first_loss, diverged=True)
    stats = _train_stats(loss_sum, correct, grad_norm_sum, steps_per_epoch, batch, run.lr_at(step))
    return EpochResult(stats, _step_rows(pending_logs), first_loss, diverged=False)


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


def make_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
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


def lr_schedule(cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
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
