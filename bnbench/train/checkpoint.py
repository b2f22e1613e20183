"""A run's training state between epochs (train.checkpoint=true): saved after each epoch,
restored by the next call after a kill, so the run resumes where it stopped. A checkpoint
that does not load never blocks its run: it is set aside and the run starts again."""

from __future__ import annotations

import copy
import io
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from bnbench.store.files import atomic_file
from bnbench.train.record import RunRecord

CORRUPT_SUFFIX = ".corrupt"  # checkpoint.pt.corrupt: a checkpoint that did not load


def save_checkpoint(
    path: Path, record: RunRecord, model: nn.Module, optimizer: torch.optim.Optimizer, order
) -> None:
    """Everything the next epoch depends on, written atomically."""
    state = asdict(record) | training_state(model, optimizer, order)
    # Serialized in memory, then written in one piece: torch.save streaming into a file that
    # hits a full disk reports "unexpected pos"; a plain write raises ENOSPC, which
    # atomic_file turns into "no space left on DEVICE while writing FILE", and leaves no file.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_file(path, "wb") as f:
        f.write(buffer.getbuffer())


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, order) -> dict:
    """The model, optimizer and random states (as save_checkpoint stores them)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_order": order.get_state(),  # the per-epoch permutations still to come
        "torch_rng": torch.get_rng_state(),  # dropout and noisy_batch draw from it
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    order,
    device,
    refuse: Callable[[RunRecord], str | None] = lambda record: None,
) -> RunRecord | None:
    """Restore model, optimizer and random states from save_checkpoint; return the record.

    A file that does not load (truncated, corrupt, from another version), or whose record
    `refuse` has a reason against, is renamed to `<name>.corrupt`, named in a warning on
    stderr, and None is returned with model, optimizer and random states as they were: the
    caller trains from the beginning.
    """
    fresh = copy.deepcopy(training_state(model, optimizer, order))  # to undo a partial load
    try:
        # Read onto the host whatever the device: load_state_dict puts each tensor where its
        # parameter is, and keeps Adam's `step` counters on the CPU, where foreach Adam reads
        # them (on the GPU each read would be a sync per parameter per step).
        state = torch.load(path, map_location="cpu", weights_only=True)
        record = RunRecord(**{k: state[k] for k in RunRecord.__dataclass_fields__})
        if reason := refuse(record):
            raise ValueError(reason)
        restore(state, model, optimizer, order, device)
    except Exception as error:  # a truncated file gives OSError(EINVAL) too; it is kept aside
        restore(fresh, model, optimizer, order, device)
        set_aside(path, error)
        return None
    return record


def restore(state: dict, model: nn.Module, optimizer, order, device: torch.device) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    order.set_state(state["data_order"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] and device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def set_aside(path: Path, error: Exception) -> None:
    """Rename an unloadable checkpoint out of the way (kept for inspection) and say so."""
    aside = path.with_name(path.name + CORRUPT_SUFFIX)
    try:
        os.replace(path, aside)
        where = f"moved to {aside.name}"
    except OSError as why:  # the next save replaces it anyway
        where = f"left in place ({why.strerror})"
    reason = str(error).split(". ")[0].splitlines()[0][:160] if str(error) else repr(error)
    print(
        f"warning: checkpoint {path} does not load ({reason}); {where}; "
        "the run starts from its first epoch",
        file=sys.stderr,
        flush=True,
    )
