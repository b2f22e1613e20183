"""The run directory: where a run's files live and how they are written.

results/<sweep>/runs/<run_id>/ holds config.yaml, metrics.csv, steps.csv, probes.csv and
summary.json. Every file is written whole to a temporary name and renamed into place,
so a killed process never leaves a half-written file; a run is complete only when its
summary.json says `completed` or `diverged`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from bnbench.config import Config, run_id

FINISHED = ("completed", "diverged")  # a rerun skips these; anything else is trained again
METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "grad_norm",
    "epoch_time_s",
]
STEP_COLUMNS = ["step", "epoch", "train_loss", "lr"]
PROBE_COLUMNS = ["step", "probe", "layer", "value"]  # long format; see bnbench/probes.py


def sweep_dir(cfg: Config) -> Path:
    return Path(cfg.results_dir) / cfg.sweep


def run_dir(cfg: Config) -> Path:
    return sweep_dir(cfg) / "runs" / run_id(cfg)


def write_atomic(path: Path, text: str) -> None:
    """Write text to path so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are shared on clusters
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_config(path: Path, cfg: Config) -> None:
    write_atomic(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def read_summary(directory: Path) -> dict | None:
    """The run's summary, or None when it is missing or unreadable (an unfinished run)."""
    try:
        return json.loads((directory / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def run_status(directory: Path) -> str:
    """`completed`, `diverged`, `failed`, `running` (or killed), or `new` when never started."""
    summary = read_summary(directory)
    if summary is None:
        return "running" if directory.exists() else "new"
    return summary.get("status", "running")


def is_finished(directory: Path) -> bool:
    return run_status(directory) in FINISHED
