"""The run record: where a run's files live, what they hold, and how they are written.

This module is the one schema of a run's files; the runner writes them and every reader
(analysis, claims, report) imports the names and columns from here.

results/<sweep>/runs/<run_id>/ holds config.yaml, metrics.csv, steps.csv, probes.csv and
summary.json (and checkpoint.pt while a checkpointed run is unfinished). Every file is
written whole to a temporary name and renamed into place, so a killed process never
leaves a half-written file; a run is complete only when its summary.json says
`completed` or `diverged`.

While a process trains a run it holds the run's claim.json, created exclusively, so two
processes working on one sweep never train the same run; see bnbench.store.hold.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from bnbench.config.identity import run_id
from bnbench.config.schema import Config

# --- layout ----------------------------------------------------------------------------------
RUNS_DIR = "runs"  # results/<sweep>/runs/<run_id>/
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
STEPS_FILE = "steps.csv"
PROBES_FILE = "probes.csv"
EVALS_FILE = "evals.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
HOLD_FILE = "claim.json"

# --- statuses --------------------------------------------------------------------------------
FINISHED = ("completed", "diverged")  # a rerun skips these; anything else is trained again
UNFINISHED = ("failed", "interrupted")  # recorded in summary.json; the next call trains again

# --- columns -------------------------------------------------------------------------------
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
# Wall-clock columns: never the same twice, so a replayed run is compared without them.
TIMING_COLUMNS = ("epoch_time_s",)
STEP_COLUMNS = ["step", "epoch", "train_loss", "lr"]
PROBE_COLUMNS = ["step", "probe", "layer", "value"]  # long format; see bnbench/probes.py
# Validation after `step` optimizer steps: every validated epoch's end, and every
# train.val_every steps (then every epoch's end too, whatever train.val_every_epochs says).
EVALS_COLUMNS = ["step", "epoch", "val_loss", "val_acc"]
# The test columns of metrics.csv are filled on the last epoch (every validated epoch with
# train.test_every_epoch); runs recorded before that have them on every epoch.
TEST_COLUMNS = ["test_loss", "test_acc"]
# summary.json's "final": the last metrics.csv row's metrics (its epoch and time aside),
# and with train.eval_train, eval-mode loss and accuracy on the training images.
FINAL_KEYS = [c for c in METRIC_COLUMNS if c not in ("epoch", "epoch_time_s")]
OPTIONAL_FINAL_KEYS = ["train_eval_loss", "train_eval_acc"]
# What every finished summary.json holds; a reader refuses a summary that lacks one.
SUMMARY_REQUIRED = ("run_id", "status", "epochs_completed", "final", "wall_time_s")


def sweep_dir(cfg: Config) -> Path:
    return Path(cfg.results_dir) / cfg.sweep


def run_path(sweep: Path, run_id: str) -> Path:
    """A run's directory inside a sweep directory."""
    return Path(sweep) / RUNS_DIR / run_id


def run_dir(cfg: Config) -> Path:
    return run_path(sweep_dir(cfg), run_id(cfg))


class DiskFull(OSError):
    """No space (or quota) left where a file was being written; the message says where."""


FULL = (errno.ENOSPC, errno.EDQUOT)


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding path (the "device" a full disk names)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def disk_full(path: Path) -> DiskFull:
    """The one-line error for a write to path that ran out of space."""
    error = DiskFull(errno.ENOSPC, f"no space left on {mount_point(path)} while writing {path}")
    error.filename = str(path)
    return error


TEMP_SUFFIX = ".tmp"  # an atomic write's file until it is renamed in: `.<name>.<random>.tmp`
TEMP_STALE_S = 60.0  # a shared directory's temporary file this old was left by a dead process


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator:
    """An open file that appears at `path` only once it is complete (synced, renamed in);
    on any error, or a kill, readers still see the old file or none. A full disk raises
    DiskFull naming the file, with nothing partial left behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as error:
        if error.errno in FULL:
            raise disk_full(path) from None
        raise
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are shared on clusters
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in FULL and not isinstance(error, DiskFull):
            raise disk_full(path) from None
        raise


def remove_partial_writes(directory: Path, older_than_s: float = 0.0) -> None:
    """Delete the temporary files of atomic writes cut off mid-way (a signal can land between
    creating one and the cleanup that would remove it). In a directory other processes write
    to as well (a sweep's), only those older than older_than_s: a write takes milliseconds,
    an older temporary file belongs to a process that died."""
    now = time.time()
    for leftover in directory.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):  # gone already, or another user's
            if now - leftover.lstat().st_mtime >= older_than_s:
                leftover.unlink()


def discard(path: Path) -> None:
    """Remove a file; a directory in its place (it cannot be written over) is renamed aside,
    with a warning that names it."""
    try:
        path.unlink(missing_ok=True)
    except (IsADirectoryError, PermissionError):  # unlink(2) of a directory: EISDIR or EPERM
        aside = path.with_name(f"{path.name}.corrupt-{uuid.uuid4().hex[:8]}")
        os.replace(path, aside)
        warnings.warn(f"{path} is a directory, not a file; moved it to {aside.name}", stacklevel=2)


def write_atomic(path: Path, text: str) -> None:
    """Write text to path so readers see either the old file or the whole new one."""
    with atomic_file(path) as f:
        f.write(text)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def write_json(path: Path, data: dict) -> None:
    """Always valid JSON: a non-finite number (a diverged loss) is written as null."""
    text = json.dumps(finite(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    write_atomic(path, text + "\n")


def finite(value):
    """value with every NaN or infinite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_config(path: Path, cfg: Config) -> None:
    write_atomic(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def read_summary(directory: Path) -> dict | None:
    """The run's summary, or None when it is missing or unreadable (an unfinished run)."""
    try:
        summary = json.loads((directory / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None  # a JSON list or string


def recorded_seconds(directory: Path) -> float | None:
    """The wall time the run's summary.json records, or None where it records none."""
    try:
        return float((read_summary(directory) or {})["wall_time_s"])
    except (KeyError, TypeError, ValueError):
        return None


def run_status(directory: Path) -> str:
    """`completed`, `diverged`, `failed`, `interrupted`, `running` (or killed), or `new`."""
    summary = read_summary(directory)
    if summary is None:
        return "running" if directory.exists() else "new"
    return summary.get("status", "running")


def is_finished(directory: Path) -> bool:
    return run_status(directory) in FINISHED


def check_writable(directory: Path) -> None:
    """Create directory and a file in it, or raise OSError saying why not (before any training)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
        pass


def check_inside(path: Path, root: str | Path) -> None:
    """Raise OSError unless path, symlinks resolved, lies inside root: a symlinked sweep or
    run directory pointing elsewhere is neither followed nor written through."""
    if not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise OSError(errno.EXDEV, f"{path} is a symlink out of {root}")
