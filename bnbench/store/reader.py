"""Reading run directories: find them under a path, read each finished run's files and check
them against each other (config.yaml, summary.json, metrics.csv), skip the rest with a
warning that names the run and says why.

Reads files only, never imports torch, so it works on results copied from a cluster;
bnbench.analysis.tables turns the runs into tables.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from bnbench.config.identity import ADDED_LATER, flatten, run_id_of
from bnbench.config.schema import validated
from bnbench.store.files import (
    CONFIG_FILE,
    FINAL_KEYS,
    FINISHED,
    METRIC_COLUMNS,
    METRICS_FILE,
    RUNS_DIR,
    SUMMARY_FILE,
    SUMMARY_REQUIRED,
    TEST_COLUMNS,
    run_status,
)
from bnbench.store.hold import held_by

# runs.csv's final metrics: summary.json's "final" without the LR (the config's optim.lr
# column already says it; for a schedule, the last LR is in curves.csv).
FINAL_COLUMNS = [c for c in FINAL_KEYS if c != "lr"]
VAL_COLUMNS = ["val_loss", "val_acc"]


class SkippedRunWarning(UserWarning):
    """A run directory that could not be used; the message names it and says why."""


class CorruptRun(Exception):
    pass


@dataclass
class Run:
    directory: Path
    config: dict  # flattened: {"model.norm": "batch", "optim.lr": 0.1, ...}
    summary: dict
    metrics: pd.DataFrame


def find_run_dirs(path: str | Path) -> list[Path]:
    """Run directories under a sweep dir, a results root with several sweeps, or a runs/ dir."""
    path = Path(path)
    configs = set(path.glob(f"**/{RUNS_DIR}/*/{CONFIG_FILE}"))
    if path.name == RUNS_DIR:
        configs |= set(path.glob(f"*/{CONFIG_FILE}"))
    return sorted(c.parent for c in configs)


def read_run(directory: Path) -> Run:
    """One finished run's files, checked against each other; raises CorruptRun saying why."""
    config = read_config(directory)
    summary = _read_finished_summary(directory)
    if summary["run_id"] != directory.name:  # a copy renamed, or its summary edited
        raise CorruptRun(f"foreign: its summary.json is run {summary['run_id']!r}")
    metrics = _read_metrics(directory, config, summary)
    return Run(directory, config, summary, metrics)


RUN_ID_NAME = re.compile(r"[0-9a-f]{12}")  # what bnbench.config.identity.run_id gives

# libyaml's safe loader where PyYAML was built with it: a results tree has a config per run.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_config(directory: Path) -> dict:
    """The run's config.yaml, flattened to dotted keys; raises CorruptRun saying why not."""
    try:
        tree = yaml.load((directory / CONFIG_FILE).read_text(), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as error:
        raise CorruptRun(f"config.yaml unreadable ({error.__class__.__name__})") from None
    if not isinstance(tree, dict) or "model" not in tree:
        raise CorruptRun("config.yaml is not a bnbench config")
    # Named as the runner names a run, but another run's files, or a config edited after the
    # run. (A directory named otherwise was made by hand, and is read as such.)
    own = run_id_of(flatten(tree))
    if RUN_ID_NAME.fullmatch(directory.name) and own != directory.name:
        raise CorruptRun(f"foreign: its config.yaml is run {own}, not {directory.name}")
    # A key added later reads as the value every earlier run had. Lists (model.widths) become
    # JSON text: hashable for groupby, and unchanged by a CSV trip.
    flat = {**ADDED_LATER, **flatten(tree)}
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flat.items()}


def _read_finished_summary(directory: Path) -> dict:
    path = directory / SUMMARY_FILE
    holder = held_by(directory)
    if holder is not None and run_status(directory) not in FINISHED:  # a live sweep's run
        raise CorruptRun(f"still training (held by {holder})")
    if not path.exists():
        raise CorruptRun("no summary.json (unfinished or killed run)")
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CorruptRun("summary.json unreadable") from None
    if not isinstance(summary, dict):
        kind = type(summary).__name__
        raise CorruptRun(f"summary.json holds a JSON {kind}, not a run summary") from None
    status = summary.get("status")
    if status not in FINISHED:
        error = str(summary.get("error", ""))[:120]
        raise CorruptRun(f"status {status!r}" + (f": {error}" if error else ""))
    missing = [k for k in SUMMARY_REQUIRED if k not in summary]
    missing += [f"final.{k}" for k in FINAL_COLUMNS if k not in (summary.get("final") or {})]
    if missing:
        raise CorruptRun(f"summary.json lacks {', '.join(missing)}")
    if not isinstance(summary["final"], dict) or type(summary["epochs_completed"]) is not int:
        raise CorruptRun("summary.json's final or epochs_completed has the wrong type")
    return summary


def _read_metrics(directory: Path, config: dict, summary: dict) -> pd.DataFrame:
    """metrics.csv, refused when truncated: a completed run has one row per epoch, with val
    columns where it validated; a diverged run has one more, without val/test columns."""
    try:
        text = (directory / METRICS_FILE).read_text()
        metrics = pd.read_csv(io.StringIO(text))
    except (OSError, ValueError) as error:
        raise CorruptRun(f"metrics.csv unreadable ({error.__class__.__name__})") from None
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise CorruptRun(f"metrics.csv lacks columns {', '.join(missing)} (truncated?)")
    try:
        metrics = metrics[METRIC_COLUMNS].apply(pd.to_numeric)
    except ValueError:
        raise CorruptRun("metrics.csv has non-numeric values") from None
    trained = int(summary["epochs_completed"])  # without divergence
    expected = trained + (summary["status"] == "diverged")
    if len(metrics) != expected:
        raise CorruptRun(f"metrics.csv has {len(metrics)} rows, summary.json says {expected}")
    if metrics["epoch"].tolist() != list(range(1, expected + 1)):
        raise CorruptRun("metrics.csv epochs are not 1, 2, ... in order")
    if _cut_off(text):
        raise CorruptRun("metrics.csv has a cut-off row (truncated)")
    # Whole rows: epoch_time_s is always there, val on every validated epoch, test on a
    # completed run's last one (on every one in runs recorded before that); an empty one is a
    # NaN metric.
    epochs, every = config.get("train.epochs", 0), config["train.val_every_epochs"]
    val_rows = [i for i in range(trained) if validated(i + 1, epochs, every)]
    completed = summary["status"] == "completed"
    required = {"epoch_time_s": metrics.index, **dict.fromkeys(VAL_COLUMNS, val_rows)}
    required |= dict.fromkeys(TEST_COLUMNS, [trained - 1] if completed and trained else [])
    for column, rows in required.items():
        nan = metrics.loc[list(rows), column].isna()
        if nan.any():
            epoch = int(metrics.loc[nan.idxmax(), "epoch"])
            raise CorruptRun(
                f"metrics.csv holds NaN in {column} at epoch {epoch} "
                f"(the run recorded a non-finite metric)"
            )
    return metrics


def _cut_off(text: str) -> bool:
    """A file cut mid-row: its last line lacks the newline, or a row lacks fields."""
    lines = text.split("\n")
    fields_per_row = lines[0].count(",")
    return lines[-1] != "" or any(line.count(",") != fields_per_row for line in lines[1:-1])


def scan(path: str | Path) -> tuple[list[Run], list[tuple[Path, str]]]:
    """Every usable run under path, and (run_dir, reason) for each one skipped (warned)."""
    runs, skipped, seen = [], [], {}
    root = Path(path).resolve()
    for directory in find_run_dirs(path):
        try:
            if not directory.resolve().is_relative_to(root):
                raise CorruptRun(f"a symlink out of {path}, not followed")
            run = read_run(directory)
            run_id = run.summary["run_id"]
            if run_id in seen:  # the same config in two sweeps: count it once
                raise CorruptRun(f"duplicate of {seen[run_id]} (same run id)")
            seen[run_id] = directory
            runs.append(run)
        except CorruptRun as why:
            skipped.append((directory, str(why)))
            warnings.warn(f"skipping run {directory}: {why}", SkippedRunWarning, stacklevel=2)
    return runs, skipped
