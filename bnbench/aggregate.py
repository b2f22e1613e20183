"""Aggregate: read every finished run directory into two tables, `runs` and `curves`.

A run directory is `<results>/<sweep>/runs/<run_id>/` (config.yaml, metrics.csv,
summary.json). This module reads files only, never imports torch, so it works on results
copied from a cluster. A partial, failed or corrupt run is skipped with a warning that names
it; the rest still loads.

    runs    one row per finished run: run_id, status, every config key (dotted names),
            final metrics, best_val_acc, best_epoch, epochs_completed, wall_time_s, chance_acc
    curves  one row per run and epoch: run_id, the config keys that tell the runs apart,
            the metrics.csv columns, elapsed_s (cumulative seconds) and status
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import yaml

from bnbench.config import NOT_IDENTITY, NUM_CLASSES, Config, flatten
from bnbench.store import (
    CONFIG_FILE,
    FINAL_KEYS,
    FINISHED,
    METRIC_COLUMNS,
    METRICS_FILE,
    OPTIONAL_FINAL_KEYS,
    RUNS_DIR,
    SUMMARY_FILE,
    SUMMARY_REQUIRED,
    TEST_COLUMNS,
    write_atomic,
)

# runs.csv's final metrics: summary.json's "final" without the LR (the config's optim.lr
# column already says it; for a schedule, the last LR is in curves.csv).
FINAL_COLUMNS = [c for c in FINAL_KEYS if c != "lr"]
VAL_COLUMNS = ["val_loss", "val_acc"]
TOP_LEVEL_KEYS = tuple(f.name for f in fields(Config))  # config keys without a dot: seed, sweep...


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


@dataclass
class Aggregate:
    runs: pd.DataFrame
    curves: pd.DataFrame
    skipped: list[tuple[Path, str]]
    runs_csv: Path
    curves_csv: Path
    mixed: list[str] = field(default_factory=list)  # settings the runs did not share


# --- finding and reading run directories ---------------------------------------------------


def find_run_dirs(path: str | Path) -> list[Path]:
    """Run directories under a sweep dir, a results root with several sweeps, or a runs/ dir."""
    path = Path(path)
    configs = set(path.glob(f"**/{RUNS_DIR}/*/{CONFIG_FILE}"))
    if path.name == RUNS_DIR:
        configs |= set(path.glob(f"*/{CONFIG_FILE}"))
    return sorted(c.parent for c in configs)


def read_run(directory: Path) -> Run:
    """One finished run's files, checked against each other; raises CorruptRun saying why."""
    config = _read_config(directory)
    summary = _read_finished_summary(directory)
    metrics = _read_metrics(directory, summary)
    return Run(directory, config, summary, metrics)


# libyaml's safe loader where PyYAML was built with it: a results tree has a config per run.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_config(directory: Path) -> dict:
    try:
        tree = yaml.load((directory / CONFIG_FILE).read_text(), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as error:
        raise CorruptRun(f"config.yaml unreadable ({error.__class__.__name__})") from None
    if not isinstance(tree, dict) or "model" not in tree:
        raise CorruptRun("config.yaml is not a bnbench config")
    # Lists (model.widths) become JSON text: hashable for groupby, and unchanged by a CSV trip.
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(tree).items()}


def _read_finished_summary(directory: Path) -> dict:
    path = directory / SUMMARY_FILE
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


def _read_metrics(directory: Path, summary: dict) -> pd.DataFrame:
    """metrics.csv, refused when truncated: a completed run has one full row per evaluated
    epoch; a diverged run has one more, without val/test columns."""
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
    evaluated = int(summary["epochs_completed"])
    expected = evaluated + (summary["status"] == "diverged")
    if len(metrics) != expected:
        raise CorruptRun(f"metrics.csv has {len(metrics)} rows, summary.json says {expected}")
    if metrics["epoch"].tolist() != list(range(1, expected + 1)):
        raise CorruptRun("metrics.csv epochs are not 1, 2, ... in order")
    if _cut_off(text):
        raise CorruptRun("metrics.csv has a cut-off row (truncated)")
    # Whole rows: epoch_time_s is always there, val on every evaluated epoch, test on the
    # last one (on every one in runs recorded before that); an empty one is a NaN metric.
    required = {"epoch_time_s": metrics.index, **dict.fromkeys(VAL_COLUMNS, range(evaluated))}
    required |= dict.fromkeys(TEST_COLUMNS, [evaluated - 1] if evaluated else [])
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
    for directory in find_run_dirs(path):
        try:
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


# --- tables --------------------------------------------------------------------------------


def chance_accuracy(summary: dict, dataset: str) -> float:
    """1 / classes: from summary.json, or for runs recorded before it held num_classes, from
    the dataset's known class count."""
    return 1.0 / (summary.get("num_classes") or NUM_CLASSES.get(dataset, 10))


def runs_table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        s = run.summary
        row = {"run_id": s["run_id"], "status": s["status"], **run.config}
        row |= {k: s["final"][k] for k in FINAL_COLUMNS}
        row |= {k: s["final"][k] for k in OPTIONAL_FINAL_KEYS if k in s["final"]}
        row |= {k: s.get(k) for k in ("best_val_acc", "best_epoch", "epochs_completed")}
        row["wall_time_s"] = s["wall_time_s"]
        row["chance_acc"] = chance_accuracy(s, run.config.get("dataset.name", ""))
        rows.append(row)
    table = pd.DataFrame(rows)
    if not rows:
        return table
    optional = [k for k in OPTIONAL_FINAL_KEYS if k in table.columns]
    numeric = FINAL_COLUMNS + optional + ["best_val_acc", "wall_time_s", "chance_acc"]
    # None (a run diverged before any evaluation) becomes NaN; epochs stay whole numbers
    return table.astype({c: float for c in numeric} | {"best_epoch": "Int64"})


def curves_table(runs: list[Run], keys: list[str]) -> pd.DataFrame:
    frames = []
    for run in runs:
        frame = run.metrics.copy()
        frame["elapsed_s"] = frame["epoch_time_s"].cumsum()
        frame["status"] = run.summary["status"]
        ids = {"run_id": run.summary["run_id"]} | {k: run.config.get(k) for k in keys}
        frames.append(frame.assign(**ids)[[*ids, *frame.columns]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def identity_columns(runs: pd.DataFrame) -> list[str]:
    """Config columns that define what a run computes (seed included; paths, device not)."""
    config = [c for c in runs.columns if "." in c or c in TOP_LEVEL_KEYS]
    return [c for c in config if c not in NOT_IDENTITY]


def varying_columns(runs: pd.DataFrame) -> list[str]:
    """Identity columns, seed aside, with more than one value in the table."""
    columns = [c for c in identity_columns(runs) if c != "seed"]
    return [c for c in columns if runs[c].nunique(dropna=False) > 1]


def factors(runs: pd.DataFrame) -> dict[str, list]:
    """The swept factors besides seed and norm, each with its sorted distinct values."""
    return {c: sorted_values(runs[c]) for c in varying_columns(runs) if c != "model.norm"}


def sorted_values(column: pd.Series) -> list:
    values = column.drop_duplicates().tolist()
    return sorted(values, key=lambda v: (pd.isna(v), v if not pd.isna(v) else 0))


def comparison_keys(runs: pd.DataFrame) -> list[str]:
    """The config columns that tell runs apart in curves.csv: norm, seed and the factors."""
    return ["model.norm", "seed", *factors(runs)] if len(runs) else []


# --- entry points --------------------------------------------------------------------------


def load_runs(path: str | Path) -> pd.DataFrame:
    """One row per finished run under path (a sweep directory, a results root holding several
    sweeps, or a runs/ directory); runs that cannot be read are skipped with a warning.

    Columns:
      run_id, status            completed | diverged
      model.norm, optim.lr, ... every config key, dotted; list-valued keys (model.widths) as
                                tuples
      train_loss, val_acc, ...  the final metrics as recorded: NaN where a run diverged
                                before evaluating
      val_acc_scored, ...       <accuracy>_scored: the same with diverged runs at chance
                                accuracy (chance_acc), as every report and verdict scores
                                them; group on these to agree with the report
      best_val_acc, best_epoch, epochs_completed, wall_time_s, chance_acc
      bookkeeping               results_dir, sweep, progress, threads, device and
                                dataset.data_dir say where and how a run ran, not what it
                                computed (they are not part of the run id)

    Raises FileNotFoundError when path does not exist; warns when it holds no runs."""
    runs = runs_table(scan(_existing(path))[0])
    if runs.empty:
        warnings.warn(f"no finished runs under {path}", UserWarning, stacklevel=2)
        return runs
    return _with_scored(_as_tuples(runs))


def load_curves(path: str | Path) -> pd.DataFrame:
    """One row per finished run and epoch under path (skipped runs are warned about): run_id,
    the keys that tell runs apart (norm, seed, swept factors), the metrics.csv columns,
    elapsed_s and status. Raises FileNotFoundError when path does not exist."""
    runs, _ = scan(_existing(path))
    return _as_tuples(curves_table(runs, comparison_keys(runs_table(runs))))


def _existing(path: str | Path) -> Path:
    if not Path(path).is_dir():
        raise FileNotFoundError(f"no results directory at {path}")
    return Path(path)


def _as_tuples(table: pd.DataFrame) -> pd.DataFrame:
    """List-valued config keys, kept as JSON text for the CSVs, as tuples (hashable)."""
    for column in table.columns:
        values = table[column]
        if not pd.api.types.is_numeric_dtype(values) and values.map(_is_json_list).all():
            table[column] = values.map(lambda text: tuple(json.loads(text)))
    return table


def _is_json_list(value) -> bool:
    return isinstance(value, str) and value.startswith("[") and value.endswith("]")


def _with_scored(runs: pd.DataFrame) -> pd.DataFrame:
    from bnbench.stats import ACCURACY_METRICS, scored  # stats imports this module

    metrics = [m for m in ACCURACY_METRICS if m in runs.columns]
    return runs.assign(**{f"{m}_scored": scored(runs, m) for m in metrics})


def output_dir(path: str | Path) -> Path:
    """Where the aggregated files go: the sweep dir for a runs/ dir, else path itself."""
    path = Path(path)
    return path.parent if path.name == RUNS_DIR else path


def aggregate(path: str | Path, out: str | Path | None = None) -> Aggregate:
    """Load both tables once and write runs.csv and curves.csv (atomically) into out
    (default: path itself, or the sweep dir of a runs/ dir)."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"no results directory at {path}")
    found, skipped = scan(path)
    runs = runs_table(found)
    curves = curves_table(found, comparison_keys(runs))
    out = Path(out) if out is not None else output_dir(path)
    runs_csv, curves_csv = out / "runs.csv", out / "curves.csv"
    write_atomic(runs_csv, runs.to_csv(index=False))
    write_atomic(curves_csv, curves.to_csv(index=False))
    return Aggregate(runs, curves, skipped, runs_csv, curves_csv, mixed_settings(found))


# What a run id leaves out but the numbers depend on (bit for bit): where and how it ran.
# device and threads are summary.json's (what the run used); the rest come from its config.
RUNTIME_KEYS = ("device", "device_name", "threads", "tf32", "cudnn_deterministic")
LAYOUT_KEYS = ("train.channels_last",)


def mixed_settings(runs: list[Run]) -> list[str]:
    """One line for each setting outside the run id that the runs did not all share."""
    lines = []
    for key in (*RUNTIME_KEYS, *LAYOUT_KEYS):
        counts: dict[str, int] = {}
        for run in runs:
            value = run.config.get(key) if key in LAYOUT_KEYS else _runtime(run.summary, key)
            if value is not None:
                counts[str(value)] = counts.get(str(value), 0) + 1
        if len(counts) > 1:
            spread = ", ".join(f"{value} ({n} runs)" for value, n in sorted(counts.items()))
            lines.append(
                f"the runs mixed {key}: {spread}; metrics repeat bit for bit only with the "
                "same device, threads and memory format, so compare them with care"
            )
    return lines


def _runtime(summary: dict, key: str):
    """A runtime fact from summary.json, top level or under "runtime"; cuda:1 -> cuda."""
    runtime = summary.get("runtime")
    value = summary.get(key, runtime.get(key) if isinstance(runtime, dict) else None)
    return value.split(":")[0] if key == "device" and isinstance(value, str) else value
