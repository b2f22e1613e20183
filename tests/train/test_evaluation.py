"""What a run evaluates: validation where train.val_every_epochs says and at the last epoch,
the test set at the last epoch; the final metrics are the same however often it evaluates."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from bnbench.analysis.tables import aggregate
from bnbench.config.identity import run_id
from bnbench.config.schema import ConfigError
from bnbench.config.validation import validate
from bnbench.store.files import (
    CHECKPOINT_FILE,
    EVALS_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    SUMMARY_FILE,
    run_dir,
    write_config,
)
from bnbench.store.reader import read_run
from bnbench.train.checkpoint import RunRecord, save_checkpoint
from bnbench.train.data import load_splits
from bnbench.train.runner import execute, setup_training

FINAL = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


def summary(cfg) -> dict:
    return json.loads((run_dir(cfg) / SUMMARY_FILE).read_text())


def test_evaluating_less_often_gives_the_same_final_metrics_and_run_id(tmp_path):
    every = tiny_config(tmp_path / "every", train__epochs=4, train__test_every_epoch=True)
    thin = tiny_config(tmp_path / "thin", train__epochs=4, train__val_every_epochs=3)
    assert execute(every) == execute(thin) == "completed"
    assert run_id(every) == run_id(thin)  # the same run: a rerun either way skips it
    assert summary(thin)["final"] == summary(every)["final"]  # exactly, same seed
    assert summary(thin)["epochs_completed"] == 4

    full = pd.read_csv(run_dir(every) / METRICS_FILE)
    thinned = pd.read_csv(run_dir(thin) / METRICS_FILE)
    assert full.test_acc.notna().all() and full.val_acc.notna().all()
    assert thinned.val_acc.notna().tolist() == [False, False, True, True]  # epoch 3 and last
    assert thinned.test_acc.notna().tolist() == [False, False, False, True]
    pd.testing.assert_frame_equal(thinned[["train_loss"]], full[["train_loss"]])
    # the evaluations the thinned run made are the ones the full run made at those epochs
    pd.testing.assert_frame_equal(thinned.loc[2:, ["val_acc"]], full.loc[2:, ["val_acc"]])


def test_a_thinned_run_is_read_and_tabled_like_any_other(tmp_path):
    cfg = tiny_config(tmp_path, train__epochs=3, train__val_every_epochs=2)
    execute(cfg)
    run = read_run(run_dir(cfg))  # no "NaN in val_acc" refusal at the unvalidated epoch
    assert run.metrics.val_acc.notna().tolist() == [False, True, True]
    tables = aggregate(tmp_path)
    assert not tables.skipped and tables.runs.val_acc.iloc[0] == summary(cfg)["final"]["val_acc"]
    assert tables.curves.val_acc.notna().tolist() == [False, True, True]


def test_a_run_that_diverges_after_a_completed_epoch_is_read(tmp_path):
    """Its completed epochs have no test metrics (the test set is evaluated at the last
    epoch, which it never reached): still a result, not a corrupt run."""
    cfg = tiny_config(tmp_path, train__epochs=3)
    directory = run_dir(cfg)
    directory.mkdir(parents=True)
    write_config(directory / "config.yaml", cfg)
    rows = [
        {"epoch": 1, "train_loss": 2.0, "train_acc": 0.3, "val_loss": 1.9, "val_acc": 0.35},
        {"epoch": 2, "train_loss": float("inf"), "train_acc": 0.1},
    ]
    metrics = pd.DataFrame(rows).assign(epoch_time_s=0.1, lr=0.1, grad_norm=1.0)
    metrics.reindex(columns=METRIC_COLUMNS).to_csv(directory / METRICS_FILE, index=False)
    final = dict.fromkeys(FINAL) | {"lr": 0.1, "grad_norm": None}
    record = {
        "run_id": run_id(cfg),
        "status": "diverged",
        "epochs_completed": 1,
        "final": final,
        "wall_time_s": 1.0,
    }
    (directory / SUMMARY_FILE).write_text(json.dumps(record))
    assert read_run(directory).summary["status"] == "diverged"


@pytest.mark.parametrize("value", [0, -2])
def test_a_validation_cadence_below_one_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="train.val_every_epochs"):
        validate(tiny_config(tmp_path, train__val_every_epochs=value))


def test_the_step_curve_is_the_same_whatever_the_epoch_cadence(tmp_path):
    """With train.val_every set, every epoch's end joins evals.csv (steps to a target read
    it), so a sparser val_every_epochs cannot move a measure while the run id stays."""
    common = {"train__epochs": 3, "train__val_every": 3}
    every = tiny_config(tmp_path / "every", **common)
    thin = tiny_config(tmp_path / "thin", **common, train__val_every_epochs=3)
    execute(every), execute(thin)
    curve = pd.read_csv(run_dir(every) / EVALS_FILE)
    pd.testing.assert_frame_equal(pd.read_csv(run_dir(thin) / EVALS_FILE), curve)
    per_epoch = summary(every)["n_train"] // every.train.batch_size
    assert per_epoch % 3  # epoch ends fall between the every-3-steps points
    ends = curve[curve.step % per_epoch == 0]
    assert ends.step.tolist() == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert ends.epoch.tolist() == [1, 2, 3] and curve.step.is_unique
    assert (curve.epoch == (curve.step - 1) // per_epoch + 1).all()


def test_a_checkpoint_saved_under_a_sparser_cadence_is_set_aside(tmp_path, capsys):
    """Its epochs lack the validation this cadence records: the run starts again from epoch
    1 rather than leave a metrics.csv the reader would refuse."""
    cfg = tiny_config(tmp_path, train__epochs=2, train__checkpoint=True)
    run = setup_training(cfg, load_splits(cfg.dataset), torch.device("cpu"))
    rows = [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "lr": 0.1, "epoch_time_s": 0.1}]
    record = RunRecord(metrics=rows, epoch=1, first_loss=2.3)
    directory = run_dir(cfg)
    directory.mkdir(parents=True)
    save_checkpoint(
        directory / CHECKPOINT_FILE, record, run.model, run.optimizer, torch.Generator()
    )
    assert execute(cfg) == "completed"
    assert "epoch 1 was not validated" in capsys.readouterr().err
    assert summary(cfg)["checkpoint_discarded"] and "resumed_after_epoch" not in summary(cfg)
    assert read_run(directory).metrics.val_acc.notna().all()
