"""What a run has produced: the rows of its CSVs as they grow, written out after each
epoch, and the outcome its summary.json records when it ends (bnbench.store.files says
where each file goes and which columns it holds)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bnbench.config.schema import Config
from bnbench.store.files import (
    EVALS_COLUMNS,
    EVALS_FILE,
    FINAL_KEYS,
    METRIC_COLUMNS,
    METRICS_FILE,
    PROBE_COLUMNS,
    PROBES_FILE,
    STEP_COLUMNS,
    STEPS_FILE,
    run_dir,
    write_csv,
)
from bnbench.train.data import Splits


@dataclass
class RunRecord:
    """What a run has produced so far: the rows of its CSVs and its bookkeeping."""

    metrics: list[dict] = field(default_factory=list)  # metrics.csv rows
    steps: list[dict] = field(default_factory=list)  # steps.csv rows
    probes: list[dict] = field(default_factory=list)  # probes.csv rows
    evals: list[dict] = field(default_factory=list)  # evals.csv rows
    first_loss: float | None = None  # the divergence reference
    epoch: int = 0  # epochs finished
    wall_time_s: float = 0.0  # training time before this process took over


def eval_row(step: int, epoch: int, metrics: dict) -> dict:
    return {
        "step": step,
        "epoch": epoch,
        "val_loss": metrics["val_loss"],
        "val_acc": metrics["val_acc"],
    }


def write_record(cfg: Config, record: RunRecord) -> None:
    """The run's CSVs as they stand (each written whole, atomically)."""
    directory = run_dir(cfg)
    write_csv(directory / METRICS_FILE, METRIC_COLUMNS, record.metrics)
    write_csv(directory / STEPS_FILE, STEP_COLUMNS, record.steps)
    write_csv(directory / EVALS_FILE, EVALS_COLUMNS, record.evals)
    if cfg.probes.names:
        write_csv(directory / PROBES_FILE, PROBE_COLUMNS, record.probes)


def finish_summary(record: RunRecord, status: str, splits: Splits, final: dict) -> dict:
    """The finished run's outcome; `final` adds to the last epoch's metrics (eval_train)."""
    rows = record.metrics
    best = max((r for r in rows if "val_acc" in r), key=lambda r: r["val_acc"], default=None)
    return {
        "status": status,
        "epochs_completed": len(rows) - (status == "diverged"),  # a diverged epoch is its last
        "final": {k: rows[-1].get(k) for k in FINAL_KEYS} | final,
        "best_val_acc": best["val_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "first_loss": record.first_loss,
        "data_source": splits.source,
        "num_classes": splits.num_classes,
        "n_train": len(splits.train_y),
        "n_val": len(splits.val_y),
        "n_test": len(splits.test_y),
    }
