"""A run's training state between epochs (train.checkpoint=true): saved after each epoch,
restored by the next call after a kill, so the run resumes where it stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from bnbench.store import atomic_file


@dataclass
class RunRecord:
    """What a run has produced so far: the rows of its CSVs and its bookkeeping."""

    metrics: list[dict] = field(default_factory=list)  # metrics.csv rows
    steps: list[dict] = field(default_factory=list)  # steps.csv rows
    probes: list[dict] = field(default_factory=list)  # probes.csv rows
    first_loss: float | None = None  # the divergence reference
    epoch: int = 0  # epochs finished
    wall_time_s: float = 0.0  # training time before this process took over


def save_checkpoint(
    path: Path, record: RunRecord, model: nn.Module, optimizer: torch.optim.Optimizer, order
) -> None:
    """Everything the next epoch depends on, written atomically."""
    state = asdict(record) | {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_order": order.get_state(),  # the per-epoch permutations still to come
        "torch_rng": torch.get_rng_state(),  # dropout and noisy_batch draw from it
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, order, device
) -> RunRecord:
    """Restore model, optimizer and random states from save_checkpoint; return the record."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    order.set_state(state["data_order"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] and device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return RunRecord(**{k: state[k] for k in RunRecord.__dataclass_fields__})
