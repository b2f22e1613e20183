"""The training loop: repeatable, records what it promises, stops diverging runs at once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from conftest import tiny_config

from bnbench.config.schema import OptimConfig
from bnbench.store.files import METRIC_COLUMNS, STEP_COLUMNS, run_dir
from bnbench.train.loop import lr_schedule
from bnbench.train.runner import execute


def metrics(cfg) -> pd.DataFrame:
    return pd.read_csv(run_dir(cfg) / "metrics.csv")


def test_a_run_writes_its_files_and_columns(results):
    cfg = tiny_config(results)
    assert execute(cfg) == "completed"
    directory = run_dir(cfg)
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.yaml",
        "evals.csv",
        "metrics.csv",
        "steps.csv",
        "summary.json",
    ]
    table = metrics(cfg)
    assert list(table.columns) == METRIC_COLUMNS and list(table.epoch) == [1, 2]
    assert table[["train_acc", "val_acc"]].stack().between(0, 1).all()
    # the test set is evaluated where the measures read it: the last epoch only
    assert table.test_acc.isna().tolist() == [True, False] and 0 <= table.test_acc.iloc[-1] <= 1
    assert list(pd.read_csv(directory / "steps.csv").columns) == STEP_COLUMNS
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["final"]["val_acc"] == table.val_acc.iloc[-1]
    assert summary["n_train"] == 256 and summary["versions"]["torch"]


def test_same_config_and_seed_on_cpu_gives_identical_metrics(tmp_path):
    first, second = tiny_config(tmp_path / "a"), tiny_config(tmp_path / "b")
    execute(first), execute(second)
    columns = [c for c in METRIC_COLUMNS if c != "epoch_time_s"]
    pd.testing.assert_frame_equal(
        metrics(first)[columns], metrics(second)[columns], check_exact=True
    )
    third = tiny_config(tmp_path / "c", seed=1)
    execute(third)
    assert not metrics(first)[columns].equals(metrics(third)[columns])


def test_a_finished_run_is_skipped(results):
    cfg = tiny_config(results)
    assert execute(cfg) == "completed"
    stamp = (run_dir(cfg) / "summary.json").stat().st_mtime_ns
    assert execute(cfg) == "skipped"
    assert (run_dir(cfg) / "summary.json").stat().st_mtime_ns == stamp


def test_huge_learning_rate_diverges_within_the_first_epoch(results):
    cfg = tiny_config(results, model__norm="none", optim__lr=1e4, train__epochs=3)
    assert execute(cfg) == "diverged"
    summary = json.loads((run_dir(cfg) / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0
    table = metrics(cfg)
    assert list(table.epoch) == [1] and math.isnan(table.val_acc.iloc[0])
    steps = pd.read_csv(run_dir(cfg) / "steps.csv")
    last = steps.train_loss.iloc[-1]
    assert not math.isfinite(last) or last > 10 * summary["first_loss"]
    assert steps.step.iloc[-1] < 14  # stopped inside epoch 1 (14 steps per epoch)


def test_a_crashing_run_is_recorded_as_failed_and_rerun_next_time(results, monkeypatch):
    cfg = tiny_config(results)
    monkeypatch.setattr("bnbench.train.runner.build_model", lambda *a, **k: 1 / 0)
    assert execute(cfg) == "failed"
    summary = json.loads((run_dir(cfg) / "summary.json").read_text())
    assert summary["status"] == "failed" and "ZeroDivisionError" in summary["error"]
    monkeypatch.undo()
    assert execute(cfg) == "completed"


def test_bn_pair_sees_the_same_data_order(results):
    """Paired by seed: the first logged losses differ, but the step grid is identical."""
    bn, plain = tiny_config(results), tiny_config(results, model__norm="none")
    execute(bn), execute(plain)
    a = pd.read_csv(run_dir(bn) / "steps.csv")
    b = pd.read_csv(run_dir(plain) / "steps.csv")
    assert list(a.step) == list(b.step)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, [0.1, 0.1, 0.1, 0.1]),
        ({"schedule": "step", "step_size": 1, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05]),
        ({"schedule": "cosine"}, [0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05, None]),
        ({"warmup_epochs": 1.0}, [0.05, 0.1, 0.1, 0.1]),
    ],
)
def test_lr_schedules(changes, expected):
    lr_at = lr_schedule(OptimConfig(lr=0.1, **changes), steps_per_epoch=2, epochs=2)
    for step, value in enumerate(expected):
        if value is not None:
            assert lr_at(step) == pytest.approx(value)


# Page faults taken by ten training steps (after ten of warm-up), half-width CNN, batch 128.
PAGE_FAULTS_PER_10_STEPS = textwrap.dedent("""
    import resource, torch
    import torch.nn.functional as F
    from bnbench.config.schema import ModelConfig
    from bnbench.train.model import build_model
    from bnbench.train.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    model = build_model(ModelConfig(widths=[16, 32, 64]), 1, 10, seed=0)
    x, y = torch.randn(128, 1, 28, 28), torch.zeros(128, dtype=torch.int64)
    for step in range(20):
        if step == 10:  # after the warm-up, the heap holds what a step needs
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        F.cross_entropy(model(x), y).backward()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt only")
def test_training_steps_reuse_freed_activations_instead_of_page_faulting():
    # glibc's default mmaps multi-MB activations afresh: 17 000-44 000 faults measured, 0-800
    # with keep_freed_memory. A fresh process: the setting is process-wide, set by other tests.
    out = subprocess.run(
        [sys.executable, "-c", PAGE_FAULTS_PER_10_STEPS], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 5000


def test_the_run_bar_covers_evaluation_and_ends_with_the_last_one(tmp_path, monkeypatch):
    from bnbench.train.progress import Progress

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # as on a terminal
    cfg = tiny_config(tmp_path, progress=True)  # 2 epochs
    progress = Progress(cfg, steps_per_epoch=3)
    (task,) = progress.bar.tasks
    row = {"epoch": 1, "train_loss": 1.0, "val_acc": 0.5, "epoch_time_s": 0.1}
    for epoch in (1, 2):
        for _ in range(3):
            progress.step()
        progress.evaluating()
        assert "evaluating" in task.description and not task.finished  # not stuck at 100%
        progress.epoch_done(row | {"epoch": epoch}, "completed")
        assert "evaluating" not in task.description
    assert task.completed == task.total == 8 and task.finished
    progress.close()
