"""Sweeps through the real command line: the files they write, resume, and surviving a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import TINY, bnbench

from bnbench.store.files import METRIC_COLUMNS

SWEEP = ["-m", "model.norm=batch,none", "optim.lr=0.01,0.1"]


def summaries(sweep: Path) -> dict[str, int]:
    """run id -> summary.json mtime, for the runs that finished."""
    return {p.parent.name: p.stat().st_mtime_ns for p in sweep.glob("runs/*/summary.json")}


def test_multirun_writes_one_dir_per_run_and_a_rerun_trains_nothing(tmp_path):
    args = ["run", *TINY, f"results_dir={tmp_path}", "sweep=grid", *SWEEP, "seed=0"]
    first = bnbench(*args, cwd=tmp_path)
    assert "4 run(s) planned" in first.stdout and "0 done, 4 to train" in first.stdout
    sweep = tmp_path / "grid"
    done = summaries(sweep)
    assert len(done) == 4
    for run in sweep.glob("runs/*"):
        assert list(pd.read_csv(run / "metrics.csv").columns) == METRIC_COLUMNS
    second = bnbench(*args, cwd=tmp_path)
    assert "4 done, 0 to train" in second.stdout
    assert summaries(sweep) == done  # nothing rewritten
    assert "completed" in second.stdout  # the comparison table is still printed


def test_dry_run_lists_runs_and_trains_nothing(tmp_path):
    out = bnbench("run", "--dry-run", *TINY, f"results_dir={tmp_path}", *SWEEP, cwd=tmp_path)
    assert out.stdout.count(" new ") == 4
    assert not list(tmp_path.glob("**/summary.json"))


def test_a_killed_sweep_resumes_and_trains_only_the_missing_runs(tmp_path):
    args = [*TINY, "train.epochs=3", f"results_dir={tmp_path}", "sweep=kill", *SWEEP, "seed=0"]
    cmd = [sys.executable, "-m", "bnbench.cli", "run", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sweep = tmp_path / "kill"
    deadline = time.time() + 120
    while len(summaries(sweep)) < 2 and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    before = summaries(sweep)
    assert 2 <= len(before) < 4, "the sweep should have been killed part-way"

    out = bnbench("run", *args, cwd=tmp_path)
    assert f"{len(before)} done, {4 - len(before)} to train" in out.stdout
    after = summaries(sweep)
    assert len(after) == 4
    assert {k: after[k] for k in before} == before  # finished runs were not trained again
    assert not list(sweep.glob("runs/*/.*.tmp"))  # no half-written files left behind


def test_joblib_launcher_runs_the_sweep_in_parallel_workers(tmp_path):
    args = [
        "run",
        *TINY,
        f"results_dir={tmp_path}",
        "sweep=par",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "-m",
        "model.norm=batch,none",
    ]
    bnbench(*args, cwd=tmp_path)
    assert len(summaries(tmp_path / "par")) == 2


def test_a_sweep_prints_one_progress_line_per_finished_run(tmp_path):
    """In a pipe: after each run, runs finished of those planned, failed, elapsed and ETA;
    at the end, the paired BN - no-BN effect."""
    out = bnbench(
        "run",
        "-m",
        *TINY,
        "model.norm=batch,none",
        "seed=0",
        f"results_dir={tmp_path}",
        cwd=tmp_path,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("[sweep default]")]
    assert [line.split("]")[1].split(",")[0].strip() for line in lines] == [
        "1/2 runs finished",
        "2/2 runs finished",
    ]
    assert all("0 failed" in line and "ETA" in line for line in lines)
    # the end: the paired effect the sweep was run for, and what one seed cannot show
    effect = out.stdout.split("paired BN - no-BN, test accuracy (points), per configuration:")
    assert len(effect) == 2 and ", n=1" in effect[1].splitlines()[1]
    assert "one seed per arm" in effect[1] and "bnbench claims run faster-convergence" in effect[1]
