"""Dashboards a run's rows also go to (`logger=tensorboard | mlflow`), besides its CSVs.

While a run trains, `open_dashboard` sends each epoch's new rows of steps.csv and
metrics.csv; `export_run` sends a finished run's rows from its files, through the same
writers (`bnbench export`). The CSVs stay the record: a dashboard only copies rows already
computed, and one that fails is warned about and dropped, never failing the run.

TensorBoard: event files in the run directory's tensorboard/ (scalars `step/train_loss`,
`step/lr` per step, `epoch/<column>` per epoch, the run's settings as hparams).
MLflow: one MLflow run per bnbench run in the experiment named after the sweep, params the
run's settings, tags the sweep, run id and status, the same metrics.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bnbench.config.identity import NOT_IDENTITY, run_id, settings
from bnbench.config.schema import Config
from bnbench.store.files import METRICS_FILE, STEPS_FILE, read_summary, run_dir

TENSORBOARD_DIR = "tensorboard"  # in the run directory
MLFLOW_DB = "mlflow.db"  # the default tracking store, in results_dir
RUN_ID_TAG = "bnbench.run_id"
STEP_SCALARS = ("train_loss", "lr")


@dataclass
class RunInfo:
    """What a dashboard names a run by."""

    run_id: str
    sweep: str
    params: dict  # the run's settings, flattened (config keys less NOT_IDENTITY's)
    directory: Path
    tracking_uri: str


def missing_package(kind: str) -> str | None:
    """Why logger=KIND cannot write here (its package is an extra), or None."""
    import importlib.util

    if kind == "none" or importlib.util.find_spec(kind) is not None:
        return None
    return f"logger={kind} needs the {kind} package: pip install 'bnbench[{kind}]'"


class NoDashboard:
    def update(self, steps: list[dict], epochs: list[dict]) -> None:
        pass

    def finish(self, summary: dict) -> None:
        pass


class Dashboard:
    """Sends rows not sent yet; warns once and goes quiet if the dashboard fails."""

    def __init__(self, writer, steps_sent: int = 0, epochs_sent: int = 0) -> None:
        self.writer, self.steps_sent, self.epochs_sent = writer, steps_sent, epochs_sent

    def update(self, steps: list[dict], epochs: list[dict]) -> None:
        if self.writer is not None:
            self.guarded(self.writer.rows, steps[self.steps_sent :], epochs[self.epochs_sent :])
        self.steps_sent, self.epochs_sent = len(steps), len(epochs)

    def finish(self, summary: dict) -> None:
        if self.writer is not None:
            self.guarded(self.writer.finish, summary)

    def guarded(self, call, *args):
        try:
            return call(*args)
        except Exception as error:  # a dashboard must never fail the run it copies
            print(f"warning: logger stopped ({error!r}); the CSVs are complete", file=sys.stderr)
            self.writer = None
            return None


def open_dashboard(cfg: Config, steps_sent: int, epochs_sent: int) -> NoDashboard | Dashboard:
    """The run's dashboard while it trains; rows up to the counts were sent by an earlier
    process (a resumed run), and a run that starts from nothing replaces what was sent."""
    if cfg.logger.name == "none":
        return NoDashboard()
    uri = cfg.logger.tracking_uri or default_tracking_uri(Path(cfg.results_dir))
    info = RunInfo(run_id(cfg), cfg.sweep, settings(cfg), run_dir(cfg), uri)
    fresh = steps_sent == 0 and epochs_sent == 0
    dashboard = Dashboard(None, steps_sent, epochs_sent)
    dashboard.writer = dashboard.guarded(make_writer, cfg.logger.name, info, fresh)
    return dashboard


def default_tracking_uri(results_dir: Path) -> str:
    return f"sqlite:///{(results_dir / MLFLOW_DB).resolve()}"


def make_writer(kind: str, info: RunInfo, fresh: bool):
    return TensorBoardWriter(info, fresh) if kind == "tensorboard" else MlflowWriter(info, fresh)


def export_run(kind: str, directory: Path, tracking_uri: str | None = None) -> None:
    """A finished run's rows, from its files, to a dashboard (replacing an earlier export).
    `directory` is results_dir/<sweep>/runs/<run_id>; raises CorruptRun for a broken one."""
    from bnbench.store.reader import read_config  # pandas: not in a training process

    sweep = directory.parent.parent
    params = {k: v for k, v in read_config(directory).items() if k not in NOT_IDENTITY}
    uri = tracking_uri or default_tracking_uri(sweep.parent)
    writer = make_writer(kind, RunInfo(directory.name, sweep.name, params, directory, uri), True)
    writer.rows(read_rows(directory / STEPS_FILE), read_rows(directory / METRICS_FILE))
    writer.finish(read_summary(directory) or {})


def read_rows(path: Path) -> list[dict]:
    """A run CSV's rows, numbers as floats and blanks left out."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)
        ]


def scalars(row: dict, keys) -> dict:
    """The row's finite numbers among keys (a diverged epoch's inf loss is left out)."""
    return {
        k: float(row[k])
        for k in keys
        if isinstance(row.get(k), (int, float)) and math.isfinite(row[k])
    }


def hparam(value):
    """A setting as TensorBoard and MLflow take it: a number, a bool or a string."""
    return value if isinstance(value, (int, float, bool, str)) else json.dumps(value)


def epoch_keys(row: dict) -> list[str]:
    return [k for k in row if k != "epoch"]


class TensorBoardWriter:
    def __init__(self, info: RunInfo, fresh: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.info, self.logdir = info, info.directory / TENSORBOARD_DIR
        if fresh:
            shutil.rmtree(self.logdir, ignore_errors=True)
        self.writer = SummaryWriter(log_dir=str(self.logdir))

    def rows(self, steps: list[dict], epochs: list[dict]) -> None:
        for row in steps:
            for key, value in scalars(row, STEP_SCALARS).items():
                self.writer.add_scalar(f"step/{key}", value, int(row["step"]))
        for row in epochs:
            for key, value in scalars(row, epoch_keys(row)).items():
                self.writer.add_scalar(f"epoch/{key}", value, int(row["epoch"]))
        self.writer.flush()

    def finish(self, summary: dict) -> None:
        final = scalars(summary.get("final") or {}, (summary.get("final") or {}).keys())
        hparams = {k: hparam(v) for k, v in self.info.params.items()} | {
            "status": summary.get("status", "")
        }
        metrics = {f"final/{k}": v for k, v in final.items()}
        self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.close()


class MlflowWriter:
    def __init__(self, info: RunInfo, fresh: bool) -> None:
        import mlflow

        self.client = mlflow.MlflowClient(tracking_uri=info.tracking_uri)
        experiment = self._experiment(info)
        earlier = self.client.search_runs(
            [experiment], filter_string=f"tags.`{RUN_ID_TAG}` = '{info.run_id}'"
        )
        if earlier and not fresh:
            self.run = earlier[0].info.run_id
            return
        for run in earlier:  # a run trained again from nothing, or exported again
            self.client.delete_run(run.info.run_id)
        tags = {RUN_ID_TAG: info.run_id, "bnbench.sweep": info.sweep}
        self.run = self.client.create_run(experiment, run_name=info.run_id, tags=tags).info.run_id
        from mlflow.entities import Param

        params = [Param(k, str(hparam(v))) for k, v in info.params.items()]
        for start in range(0, len(params), 100):  # MLflow takes 100 params per batch
            self.client.log_batch(self.run, params=params[start : start + 100])

    def _experiment(self, info: RunInfo) -> str:
        found = self.client.get_experiment_by_name(info.sweep)
        if found is not None:
            return found.experiment_id
        artifacts = (info.directory.parent.parent / "mlartifacts").resolve().as_uri()
        try:
            return self.client.create_experiment(info.sweep, artifact_location=artifacts)
        except Exception:  # another worker created it meanwhile
            return self.client.get_experiment_by_name(info.sweep).experiment_id

    def rows(self, steps: list[dict], epochs: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(f"step/{k}", v, now, int(row["step"]))
            for row in steps
            for k, v in scalars(row, STEP_SCALARS).items()
        ]
        metrics += [
            Metric(f"epoch/{k}", v, now, int(row["epoch"]))
            for row in epochs
            for k, v in scalars(row, epoch_keys(row)).items()
        ]
        for start in range(0, len(metrics), 1000):  # and 1000 metrics
            self.client.log_batch(self.run, metrics=metrics[start : start + 1000])

    def finish(self, summary: dict) -> None:
        self.client.set_tag(self.run, "bnbench.status", summary.get("status", ""))
        self.client.set_terminated(self.run, "FINISHED")
