"""The training loop's pieces: one epoch of steps, evaluation, the optimizer, the LR schedule.

The loop follows cifar10-airbench: the dataset is a tensor on the training device, a batch
is an index slice of a per-epoch permutation, metrics accumulate on the device and reach
the host once per epoch. Each step's loss is kept on the device too and checked for
divergence at the epoch's end (on CPU, where reading a scalar costs nothing, after every
step, so a diverging run stops at once); both find the same first diverging step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bnbench.config.schema import OptimConfig, TrainConfig
from bnbench.train.data import Splits, crop_and_flip

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
    # Read the loss on the host after every step (a diverging run stops at once) or once per
    # epoch (a sync per step on a GPU costs a large share of a small model's step time).
    # None: every step on CPU only. Tests force the once-per-epoch path on CPU.
    check_each_step: bool | None = None
    augment_seed: int | None = None  # dataset.augment: crops and flips drawn from it; None: off
    # What the training steps call (train.compile: the compiled model, sharing its parameters);
    # None: `model`. Evaluation, probes and checkpoints use `model` itself.
    step_model: nn.Module | None = None


@dataclass
class EpochResult:
    stats: dict  # train_loss, train_acc, grad_norm, lr: means over the steps taken
    step_rows: list[dict]  # rows of steps.csv
    first_loss: float | None  # the run's first training loss (the divergence reference)
    diverged: bool  # the loss went non-finite or above diverge_factor x first_loss


def train_epoch(
    run: Training, epoch: int, perm: torch.Tensor, first_loss: float | None
) -> EpochResult:
    """One pass over the training set in the order `perm`, up to the first step whose loss is
    non-finite or above diverge_factor x first_loss: stopped there at once when the loss is
    read every step; otherwise found at the epoch's end, with the same record of it."""
    model, optimizer, splits, cfg = run.model, run.optimizer, run.splits, run.train
    model.train()  # also the compiled step model's: it wraps the same modules
    forward = run.step_model or model
    batch, log_every, steps_per_epoch = cfg.batch_size, cfg.log_every, run.steps_per_epoch
    device = splits.train_x.device
    each_step = reads_each_step(run, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp)
    sums = Sums.zeros(device)
    losses = torch.empty(steps_per_epoch, device=device)  # every step's, read at the epoch end
    window = torch.zeros((), device=device)
    pending_logs = []
    params = list(model.parameters())  # once: walking the modules each step costs ~5% at batch 2
    augment = None  # seeded per epoch, so a run resumed from a checkpoint draws the same
    if run.augment_seed is not None:
        augment = torch.Generator().manual_seed(run.augment_seed * 1_000_003 + epoch)

    for i in range(steps_per_epoch):
        step = (epoch - 1) * steps_per_epoch + i
        lr = run.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        run.on_step(step, lr)  # probes see the parameters before this step's update
        idx = perm[i * batch : (i + 1) * batch]
        x, y = splits.train_x[idx], splits.train_y[idx]
        if augment is not None:
            x = crop_and_flip(x, augment)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            logits = forward(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sums.grad_norm += torch.nn.utils.get_total_norm([p.grad for p in params])
        optimizer.step()

        detached = loss.detach()
        losses[i] = detached  # a device copy, no sync: NaN and spikes are kept as they come
        sums.loss += detached
        window += detached
        sums.correct += (logits.argmax(1) == y).sum()
        if (i + 1) % log_every == 0 or i + 1 == steps_per_epoch:
            pending_logs.append((step + 1, epoch, window / ((i % log_every) + 1), lr))
            window = torch.zeros((), device=device)
        if each_step:
            value = detached.item()
            first_loss = value if first_loss is None else first_loss
            if _over(value, cfg.diverge_factor * first_loss):
                return _diverged(run, epoch, i, value, first_loss, pending_logs, sums, i + 1)

    if not each_step:  # the epoch's one read of its losses
        values = losses.tolist()
        first_loss = values[0] if first_loss is None else first_loss
        limit = cfg.diverge_factor * first_loss
        bad = next((i for i, value in enumerate(values) if _over(value, limit)), None)
        if bad is not None:  # the steps after it trained on; the record stops at it
            taken = steps_per_epoch
            return _diverged(run, epoch, bad, values[bad], first_loss, pending_logs, sums, taken)
    stats = sums.stats(steps_per_epoch, batch, run.lr_at(step))
    return EpochResult(stats, _step_rows(pending_logs), first_loss, diverged=False)


def reads_each_step(run: Training, device: torch.device) -> bool:
    return device.type == "cpu" if run.check_each_step is None else run.check_each_step


def _over(loss: float, limit: float) -> bool:
    return not math.isfinite(loss) or loss > limit


@dataclass
class Sums:
    """The epoch's running sums, on the training device (read once, at the epoch's end)."""

    loss: torch.Tensor
    correct: torch.Tensor
    grad_norm: torch.Tensor

    @classmethod
    def zeros(cls, device: torch.device) -> Sums:
        zero = torch.zeros((), device=device)
        return cls(zero.clone(), torch.zeros((), device=device, dtype=torch.int64), zero.clone())

    def stats(self, steps: int, batch: int, lr: float) -> dict:
        return {
            "train_loss": self.loss.item() / steps,
            "train_acc": self.correct.item() / (steps * batch),
            "grad_norm": self.grad_norm.item() / steps,
            "lr": lr,
        }


def _diverged(
    run: Training,
    epoch: int,
    i: int,
    loss: float,
    first_loss: float,
    pending_logs: list,
    sums: Sums,
    taken: int,
) -> EpochResult:
    """The result of an epoch whose step i diverged: the logged rows up to it and its own
    loss as the last row (in place of a window mean logged at that very step); the train_*
    means cover the `taken` steps the sums hold."""
    step = (epoch - 1) * run.steps_per_epoch + i
    rows = [row for row in _step_rows(pending_logs) if row["step"] <= step]
    rows.append({"step": step + 1, "epoch": epoch, "train_loss": loss, "lr": run.lr_at(step)})
    last = (epoch - 1) * run.steps_per_epoch + taken - 1
    stats = sums.stats(taken, run.train.batch_size, run.lr_at(last))
    return EpochResult(stats, rows, first_loss, diverged=True)


def _step_rows(pending) -> list[dict]:
    """steps.csv rows from (step, epoch, loss tensor, lr), the losses read in one transfer."""
    if not pending:
        return []
    losses = torch.stack([loss for _, _, loss, _ in pending]).tolist()
    return [
        {"step": s, "epoch": e, "train_loss": loss, "lr": lr}
        for (s, e, _, lr), loss in zip(pending, losses, strict=True)
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


def make_optimizer(
    cfg: OptimConfig, model: nn.Module, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD or Adam over all parameters; `fused` (train.fused_optimizer): one fused kernel per
    step (CPU and CUDA have them), else foreach: a few multi-tensor kernels per step."""
    params = model.parameters()
    kernels = {"fused": True} if fused else {"foreach": True}
    if cfg.name == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kernels
        )
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        **kernels,
    )


def step_model(train: TrainConfig, model: nn.Module) -> nn.Module | None:
    """train.compile: the model compiled for the training steps (compiled on its first step;
    the cost is paid once per run, in its first epoch), else None (eager)."""
    return torch.compile(model) if train.compile else None


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
