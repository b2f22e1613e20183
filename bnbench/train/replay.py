"""Train a finished run again from its config.yaml and compare the records with the original.

What a reviewer runs to see that a committed run is what this checkout's code makes of its
settings: the run is retrained in a scratch results directory (never beside the original)
with the thread count its summary.json records, since the order of a float sum depends on
it, and every record file is compared value by value, the timing columns aside. Identical
records also need the device type and torch version the run was trained with; the result
names them when they differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from bnbench.config.schema import Config, to_config
from bnbench.store.files import (
    CONFIG_FILE,
    EVALS_FILE,
    FINISHED,
    METRICS_FILE,
    PROBES_FILE,
    STEPS_FILE,
    TIMING_COLUMNS,
    read_summary,
    run_dir,
)
from bnbench.train.runner import execute

REPLAYED_FILES = (METRICS_FILE, STEPS_FILE, EVALS_FILE, PROBES_FILE)


@dataclass
class Replay:
    original: Path
    status: str  # the retrained run's status, or "refused" with the reason in `differences`
    compared: dict[str, int]  # file name -> rows compared
    differences: list[str]  # one line per file that differs; empty when identical
    caveats: list[str]  # what differs from the original's machine (device, torch version)

    @property
    def identical(self) -> bool:
        return self.status in FINISHED and not self.differences


def replay(original: Path, scratch: Path) -> Replay:
    """Retrain the finished run in `original` under `scratch` and compare its records."""
    summary = read_summary(original) or {}
    if summary.get("status") not in FINISHED:
        return Replay(original, "refused", {}, [f"not finished ({summary.get('status')})"], [])
    try:
        raw = OmegaConf.load(original / CONFIG_FILE)
    except (OSError, ValueError) as error:
        return Replay(original, "refused", {}, [f"unreadable config.yaml ({error})"], [])
    cfg = dataclasses.replace(
        to_config(raw), results_dir=str(scratch), threads=summary.get("threads")
    )
    status = execute(cfg)
    retrained = run_dir(cfg)
    compared, differences = {}, []
    for name in REPLAYED_FILES:
        if (original / name).exists() or (retrained / name).exists():
            rows, difference = compare_records(original / name, retrained / name)
            compared[name] = rows
            differences += [f"{name}: {difference}"] if difference else []
    return Replay(original, status, compared, differences, machine_caveats(summary, cfg))


def compare_records(original: Path, retrained: Path) -> tuple[int, str | None]:
    """Rows compared, and the first difference in words (None when the values are equal)."""
    if not retrained.exists() or not original.exists():
        return 0, f"only in the {'original' if original.exists() else 'retrained'} run"
    old, new = pd.read_csv(original), pd.read_csv(retrained)
    old = old.drop(columns=[c for c in TIMING_COLUMNS if c in old.columns])
    new = new.drop(columns=[c for c in TIMING_COLUMNS if c in new.columns])
    if list(old.columns) != list(new.columns) or len(old) != len(new):
        return len(old), f"{len(old)} rows of {list(old.columns)} vs {len(new)} of {list(new)}"
    unequal = (old != new) & ~(old.isna() & new.isna())
    if not unequal.to_numpy().any():
        return len(old), None
    row, column = next((r, c) for r in unequal.index for c in unequal if unequal.at[r, c])
    was, now, count = old.at[row, column], new.at[row, column], int(unequal.sum().sum())
    return len(old), f"row {row + 1} {column}: {was!r} vs {now!r} ({count} values differ)"


def machine_caveats(summary: dict, cfg: Config) -> list[str]:
    """What makes identical records impossible here, though the code is the same."""
    caveats = []
    trained_on = str(summary.get("device", "cpu")).split(":")[0]
    here = "cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu"
    if trained_on != here:
        caveats.append(f"trained on {trained_on}, retrained on {here}")
    trained_with = (summary.get("versions") or {}).get("torch")
    if trained_with and trained_with != torch.__version__:
        caveats.append(f"trained with torch {trained_with}, retrained with {torch.__version__}")
    return caveats
