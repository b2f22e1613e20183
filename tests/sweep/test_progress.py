"""A sweep's progress: the ETA from the planned cost of the runs left (never from runs
skipped on a resume), the sweep's bar above the run's on a terminal, and a line at least
every 10 s from a run whose output is piped."""

from __future__ import annotations

import sys

import pytest
from conftest import tiny_config

from bnbench.sweep.progress import PlannedCost, SweepProgress
from bnbench.train import progress as run_progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_after_a_resume_counts_only_the_runs_trained_since(monkeypatch):
    """6 runs done before the resume, 4 left of costs 1, 1, 2, 2: after the first cost-1 run
    took 60 s, the 5 cost units left take 300 s; the skipped runs are neither done work
    nor speed."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    clock = Clock()
    planned = [PlannedCost(f"old{i}", 1.0, True) for i in range(6)]
    planned += [PlannedCost(r, c, False) for r, c in [("a", 1), ("b", 1), ("c", 2), ("d", 2)]]
    sweep = SweepProgress("s", planned, clock)
    assert sweep.eta_s() is None and "6/10 runs finished" in sweep.text()
    assert sweep.text().endswith("ETA ?")
    clock.now = 60.0
    line = sweep.finished("a", "completed")
    assert sweep.eta_s() == pytest.approx(300.0)
    assert line == "[sweep s] 7/10 runs finished, 0 failed, 1.0 min elapsed, ETA 5.0 min"
    clock.now = 120.0
    line = sweep.finished("b", "failed")
    assert sweep.eta_s() == pytest.approx(240.0) and "1 failed" in line
    sweep.finished("old0", "skipped")  # a job of a run done before: changes nothing
    sweep.finished("c", "claimed")  # trained elsewhere: done here, but no speed
    assert sweep.done == 9 and sweep.eta_s() == pytest.approx(120.0)


def test_the_eta_corrects_each_sweep_by_the_time_its_runs_took(monkeypatch):
    """Two sweeps the cost model rates alike (cost 1 a run), whose runs take 10 s and 50 s:
    once one run of each has trained, the ETA is the time the runs left take (one of 10 s,
    three of 50 s: 160 s), not the planned cost's 4 runs at the mean 30 s (120 s). Before
    the first 50 s run, the second sweep is taken at the rate seen so far."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    clock = Clock()
    planned = [PlannedCost(r, 1.0, False, group="fast") for r in ("a1", "a2")]
    planned += [PlannedCost(r, 1.0, False, group="slow") for r in ("b1", "b2", "b3", "b4")]
    sweep = SweepProgress("2 sweeps", planned, clock)
    clock.now = 10.0
    sweep.finished("a1", "completed", seconds=10.0)
    assert sweep.eta_s() == pytest.approx(50.0)  # 5 runs left, all at 10 s so far
    clock.now = 60.0
    sweep.finished("b1", "completed", seconds=50.0)
    assert sweep.eta_s() == pytest.approx(160.0)
    clock.now = 110.0
    sweep.finished("b2", "diverged", seconds=50.0)
    assert sweep.eta_s() == pytest.approx(110.0)


def test_the_sweep_bar_stays_above_the_run_bar_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    sweep = SweepProgress("s", [PlannedCost("a", 1.0, False), PlannedCost("b", 1.0, False)])
    board = run_progress.shared_board()
    for name in ("a", "b"):
        run = run_progress.Progress(tiny_config(tmp_path, progress=True), steps_per_epoch=3)
        assert run.bar is board and [t.id for t in board.tasks] == [sweep.task, run.task]
        run.close()
        sweep.finished(name, "completed")
        assert [t.id for t in board.tasks] == [sweep.task]  # the sweep's bar stays
    assert board.tasks[0].completed == 2 and "2/2 runs finished" in board.tasks[0].description
    sweep.close()
    assert run_progress._BOARD is None  # the last bar off stops the display


def test_a_piped_run_prints_a_line_at_least_every_10_s(tmp_path, monkeypatch, capsys):
    """Steps of 3 s each: a line once 10 s have passed since the last one (so within 10 s and
    one step), and none 9 s after an epoch's line."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    clock = Clock()
    run = run_progress.Progress(tiny_config(tmp_path, progress=True), 100, clock=clock)
    printed_at = []
    for _ in range(20):
        clock.now += 3.0
        run.step()
        if capsys.readouterr().out:
            printed_at.append(clock.now)
    assert printed_at == [12.0, 24.0, 36.0, 48.0, 60.0]
    assert max(b - a for a, b in zip([0.0, *printed_at], printed_at, strict=False)) <= 12.0
    run.epoch_done({"epoch": 1, "train_loss": 1.0, "val_acc": 0.5, "epoch_time_s": 1}, "ok")
    assert "epoch 1/" in capsys.readouterr().out
    clock.now += 9.0
    run.step()  # 9 s after the epoch's line: still quiet
    assert capsys.readouterr().out == ""


def test_the_planned_cost_counts_steps_evaluation_and_probes():
    """The cost that orders the pool and weighs the ETA grows with what a run does besides
    its training images: more steps for the same images, test-set evaluation of the train
    split, probes during and after training."""
    from dataclasses import replace

    from bnbench.config.schema import Config
    from bnbench.sweep.pool import estimated_cost

    base = Config()
    cost = estimated_cost(base)
    smaller_batches = replace(base, train=replace(base.train, batch_size=8))
    eval_train = replace(base, train=replace(base.train, eval_train=True))
    probed = replace(base, probes=replace(base.probes, names=["ics"]))
    probed_after = replace(base, probes=replace(base.probes, names=["test_time"]))
    for heavier in (smaller_batches, eval_train, probed, probed_after):
        assert estimated_cost(heavier) > cost
    more_epochs = replace(base, train=replace(base.train, epochs=2 * base.train.epochs))
    assert estimated_cost(more_epochs) == pytest.approx(2 * cost, rel=0.1)
