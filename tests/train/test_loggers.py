"""logger=tensorboard | mlflow and `bnbench export` (issue 29, item 4): what a dashboard
receives, read back with the dashboards' own readers; the run's id and metrics unchanged."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TINY, bnbench, same_metrics

from bnbench.sweep.plan import expand
from bnbench.train.loggers import missing_package

ARGS = [*TINY, "train.epochs=2", "threads=1"]


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def one_run(results: Path) -> Path:
    (directory,) = (results / "default" / "runs").iterdir()
    return directory


def tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    tags = events.Tags()["scalars"]
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}


def check_tensorboard(run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = tensorboard_scalars(run / "tensorboard")
    metrics, steps = rows(run / "metrics.csv"), rows(run / "steps.csv")
    val_acc = [(int(r["epoch"]), pytest.approx(float(r["val_acc"]))) for r in metrics]
    assert scalars["epoch/val_acc"] == val_acc
    assert [s for s, _ in scalars["step/train_loss"]] == [int(r["step"]) for r in steps]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")


def check_mlflow(results: Path, run: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["default"])
    assert len(found) == 1
    (found,) = found.to_dict("records")
    metrics = rows(run / "metrics.csv")
    assert found["tags.bnbench.run_id"] == run.name and found["tags.bnbench.sweep"] == "default"
    assert found["params.optim.lr"] == "0.05" and found["params.model.norm"] == "batch"
    assert found["metrics.epoch/val_acc"] == pytest.approx(float(metrics[-1]["val_acc"]))
    history = mlflow.MlflowClient().get_metric_history(found["run_id"], "epoch/val_acc")
    assert [m.step for m in history] == [1, 2]


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_logger_copies_the_rows_and_changes_no_metric(tmp_path: Path, logger: str) -> None:
    pytest.importorskip(logger)
    plain, logged = tmp_path / "plain", tmp_path / "logged"
    bnbench("run", *ARGS, f"results_dir={plain}", cwd=tmp_path)
    bnbench("run", *ARGS, f"logger={logger}", f"results_dir={logged}", cwd=tmp_path)
    run = one_run(logged)
    assert run.name == one_run(plain).name == expand(ARGS)[0].run_id
    same_metrics(one_run(plain), run)
    if logger == "tensorboard":
        check_tensorboard(run)
    else:
        check_mlflow(logged, run)


@pytest.mark.parametrize("dashboard", ["tensorboard", "mlflow"])
def test_export_writes_what_the_logger_writes(tmp_path: Path, dashboard: str) -> None:
    pytest.importorskip(dashboard)
    results = tmp_path / "results"
    bnbench("run", *ARGS, f"results_dir={results}", cwd=tmp_path)
    for _ in range(2):  # exporting again replaces the first export
        out = bnbench("export", dashboard, str(results), cwd=tmp_path).stdout
        assert f"exported 1 of 1 run(s) from {results} to {dashboard}" in out
    run = one_run(results)
    if dashboard == "tensorboard":
        check_tensorboard(run)
    else:
        check_mlflow(results, run)


def test_export_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    result = bnbench("export", "wandb", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "bnbench: invalid DASHBOARD='wandb': allowed: tensorboard | mlflow"
    )
    result = bnbench("export", "tensorboard", str(tmp_path / "none"), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "no run directories" in result.stderr


def test_a_logger_without_its_package_is_named_with_the_extra() -> None:
    assert missing_package("none") is None
    assert missing_package("no_such_dashboard") == (
        "logger=no_such_dashboard needs the no_such_dashboard package: "
        "pip install 'bnbench[no_such_dashboard]'"
    )


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.sent, self.fail = [], fail

    def rows(self, steps: list[dict], epochs: list[dict]) -> None:
        if self.fail:
            raise ConnectionError("tracking server down")
        self.sent.append(([r["step"] for r in steps], [r["epoch"] for r in epochs]))

    def finish(self, summary: dict) -> None:
        self.sent.append(summary["status"])


def test_a_resumed_run_sends_only_its_new_rows() -> None:
    from bnbench.train.loggers import Dashboard

    steps = [{"step": s} for s in range(1, 7)]
    epochs = [{"epoch": e} for e in range(1, 4)]
    writer = Recorder()
    dashboard = Dashboard(writer, steps_sent=2, epochs_sent=1)  # sent before the checkpoint
    dashboard.update(steps[:4], epochs[:2])
    dashboard.update(steps, epochs)
    dashboard.finish({"status": "completed"})
    assert writer.sent == [([3, 4], [2]), ([5, 6], [3]), "completed"]


def test_a_failing_dashboard_warns_once_and_the_run_goes_on(capsys) -> None:
    from bnbench.train.loggers import Dashboard

    dashboard = Dashboard(Recorder(fail=True))
    dashboard.update([{"step": 1}], [{"epoch": 1}])
    dashboard.update([{"step": 1}, {"step": 2}], [{"epoch": 1}])
    dashboard.finish({"status": "completed"})
    warning = capsys.readouterr().err
    assert warning.count("warning: logger stopped") == 1 and "tracking server down" in warning
