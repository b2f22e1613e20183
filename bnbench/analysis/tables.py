"""Aggregate: read every finished run directory into two tables, `runs` and `curves`.

A run directory is `<results>/<sweep>/runs/<run_id>/` (config.yaml, metrics.csv,
summary.json), read by bnbench.store.reader. This module reads files only, never imports
torch, so it works on results copied from a cluster. A partial, failed or corrupt run is
skipped with a warning that names it; the rest still loads.

    runs    one row per finished run: run_id, status, every config key (dotted names),
            final metrics, best_val_acc, best_epoch, epochs_completed, wall_time_s, chance_acc;
            for runs a claims sweep planned: protocols ("claim:hash" ...) and started_at
    curves  one row per run and epoch: run_id, the config keys that tell the runs apart,
            the metrics.csv columns, elapsed_s (cumulative seconds) and status
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bnbench.analysis.columns import ACCURACY_METRICS, factors, scored
from bnbench.config.schema import NORM_ONLY_KEYS, NUM_CLASSES
from bnbench.store.files import EVALS_FILE, OPTIONAL_FINAL_KEYS, RUNS_DIR, STEPS_FILE, write_atomic
from bnbench.store.reader import FINAL_COLUMNS, Run, scan


@dataclass
class Aggregate:
    runs: pd.DataFrame
    curves: pd.DataFrame
    skipped: list[tuple[Path, str]]
    runs_csv: Path
    curves_csv: Path
    mixed: list[str] = field(default_factory=list)  # settings the runs did not share


# --- tables --------------------------------------------------------------------------------


def chance_accuracy(summary: dict, dataset: str) -> float:
    """1 / classes: from summary.json, or for runs recorded before it held num_classes, from
    the dataset's known class count."""
    return 1.0 / (summary.get("num_classes") or NUM_CLASSES.get(dataset, 10))


def runs_table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        s = run.summary
        row = {"run_id": s["run_id"], "status": s["status"], **applicable(run.config)}
        row |= {k: s["final"][k] for k in FINAL_COLUMNS}
        row |= {k: s["final"][k] for k in OPTIONAL_FINAL_KEYS if k in s["final"]}
        row |= {k: s.get(k) for k in ("best_val_acc", "best_epoch", "epochs_completed")}
        row["wall_time_s"] = s["wall_time_s"]
        row["chance_acc"] = chance_accuracy(s, run.config.get("dataset.name", ""))
        if "protocols" in row:  # a JSON list of "claim:hash": the pre-registration check
            row["started_at"] = s.get("started_at")
        if "train_s" in (s.get("timing") or {}):  # seconds in training steps (wall-clock)
            row["train_s"] = s["timing"]["train_s"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if not rows:
        return table
    optional = [k for k in OPTIONAL_FINAL_KEYS if k in table.columns]
    numeric = FINAL_COLUMNS + optional + ["best_val_acc", "wall_time_s", "chance_acc"]
    # None (a run diverged before any evaluation) becomes NaN; epochs stay whole numbers
    return table.astype({c: float for c in numeric} | {"best_epoch": "Int64"})


def applicable(config: dict) -> dict:
    """The run's config with the keys its norm does not read (NORM_ONLY_KEYS) set to None."""
    norm = config.get("model.norm")
    blank = {k: None for k, only in NORM_ONLY_KEYS.items() if k in config and only != norm}
    return config | blank


def curves_table(runs: list[Run], keys: list[str]) -> pd.DataFrame:
    frames = []
    for run in runs:
        frame = run.metrics.copy()
        frame["elapsed_s"] = frame["epoch_time_s"].cumsum()
        frame["status"] = run.summary["status"]
        config = applicable(run.config)
        ids = {"run_id": run.summary["run_id"]} | {k: config.get(k) for k in keys}
        frames.append(frame.assign(**ids)[[*ids, *frame.columns]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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


def load_steps(path: str | Path) -> pd.DataFrame:
    """steps.csv of every finished run under path, stacked, with its run_id: the training
    loss every train.log_every steps."""
    return _per_run(path, STEPS_FILE)


def load_evals(path: str | Path) -> pd.DataFrame:
    """evals.csv of every finished run under path, stacked, with its run_id: validation
    every train.val_every steps (the runs that set it) and at validated epochs."""
    return _per_run(path, EVALS_FILE)


def _per_run(path: str | Path, name: str) -> pd.DataFrame:
    runs, _ = scan(_existing(path))
    frames = [
        pd.read_csv(run.directory / name).assign(run_id=run.summary["run_id"])
        for run in runs
        if (run.directory / name).is_file()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id"])


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


# What a run id leaves out but the numbers depend on (bit for bit): where and how it ran
# (the speed switches count with the memory format: other kernels, other rounding).
# device and threads are summary.json's (what the run used); the rest come from its config.
RUNTIME_KEYS = ("device", "device_name", "threads", "tf32", "cudnn_deterministic")
LAYOUT_KEYS = ("train.channels_last", "train.fused_optimizer", "train.compile")


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
