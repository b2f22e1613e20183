"""One run's lifecycle with real processes and real faults: kill -9 and resume, two sweeps
at once, Ctrl-C and SIGTERM, preemption with checkpoints, runs held by other processes or
left held by dead ones, a time limit with no requeue left."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, configs, dead_pid, plant_claim, same_metrics, tiny_config

from bnbench.store import hold
from bnbench.store.files import HOLD_FILE, run_dir
from bnbench.store.hold import STALE_AFTER_S
from bnbench.store.reader import scan
from bnbench.train.runner import execute
from bnbench.train.runtime import Terminated

FAST = [*TINY, "threads=1"]
SIX_RUNS = ["-m", "model.norm=batch,none", "seed=0,1,2"]
SLOWER = [
    *FAST,
    "dataset.synthetic_train=2112",
    "dataset.train_subset=null",
]  # 2048 training images, 64 steps per epoch
EPOCH_LINE = re.compile(r"^\[(\w{12}) \w+\] epoch (\d+)/", re.MULTILINE)


# --- helpers ---------------------------------------------------------------------------------


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """`bnbench run ARGS` in the background, in its own process group, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "bnbench.cli", "run", *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert child.poll() is None, f"exited early:\n{child.communicate()}"
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def summaries(sweep: Path) -> dict[str, dict]:
    """run id -> summary.json, for the runs that have one."""
    found = {}
    for path in sweep.glob("runs/*/summary.json"):
        found[path.parent.name] = json.loads(path.read_text())
    return found


def completed(sweep: Path) -> dict[str, dict]:
    return {k: s for k, s in summaries(sweep).items() if s["status"] == "completed"}


def metric_rows(directory: Path) -> int:
    try:
        return len(pd.read_csv(directory / "metrics.csv"))
    except (OSError, pd.errors.EmptyDataError):
        return 0


def trained(stdout: str) -> Counter:
    """run id -> how many times its first epoch was trained, from the progress lines."""
    return Counter(run for run, epoch in EPOCH_LINE.findall(stdout) if epoch == "1")


def leftovers(sweep: Path) -> list[Path]:
    """Claims, temporary files and checkpoints that a finished sweep must not leave."""
    patterns = ["runs/*/claim.json", "runs/*/.*", "runs/*/checkpoint.pt"]
    return [p for pattern in patterns for p in sweep.glob(pattern)]


# --- kill, resume, concurrency -----------------------------------------------------------------


def test_a_sweep_killed_after_two_runs_resumes_without_training_any_run_twice(tmp_path):
    args = [*FAST, f"results_dir={tmp_path}", "sweep=kill", *SIX_RUNS]
    sweep = tmp_path / "kill"
    child = start(args, tmp_path)
    wait_for(lambda: len(completed(sweep)) >= 2, child)
    os.killpg(child.pid, signal.SIGKILL)
    child.communicate()
    before = completed(sweep)
    assert 2 <= len(before) < 6, "the sweep should have been killed part-way"
    runs, skipped = scan(sweep)  # what `bnbench report` reads now: the finished runs only
    assert sorted(run.directory.name for run in runs) == sorted(before)
    assert all("no summary.json" in why for _, why in skipped)

    # The rerun, in this process: what the basic launcher does with each run of the sweep.
    statuses = {run_dir(cfg).name: execute(cfg) for cfg in configs(args)}
    assert statuses == {run: "skipped" if run in before else "completed" for run in statuses}
    after = completed(sweep)
    assert len(after) == 6 and {k: after[k] for k in before} == before  # untouched
    assert not leftovers(sweep)  # the killed run's claim was taken over, then released


def test_two_processes_on_one_sweep_train_each_run_exactly_once(tmp_path):
    args = [*FAST, "train.epochs=2", f"results_dir={tmp_path}", "sweep=pair", *SIX_RUNS]
    sweep, runs = tmp_path / "pair", configs(args)
    child = start(args, tmp_path)
    wait_for(lambda: any(sweep.glob("runs/*/claim.json")), child)  # it has begun training
    here = {run_dir(cfg).name: execute(cfg) for cfg in runs}  # meanwhile, this process
    stdout, stderr = child.communicate()
    assert child.returncode == 0, stderr

    there = trained(stdout)  # run id -> times the other process trained it
    done = completed(sweep)
    assert len(done) == 6
    for run in done:
        assert there[run] + (here[run] == "completed") == 1, (run, here[run], there[run])
    assert {s["pid"] for s in done.values()} == {child.pid, os.getpid()}  # both did work
    assert not leftovers(sweep)


def test_ctrl_c_marks_the_run_in_flight_interrupted_and_a_rerun_finishes(tmp_path):
    args = [*SLOWER, "train.epochs=5", f"results_dir={tmp_path}", "sweep=int"]
    args += ["-m", "model.norm=batch,none"]
    sweep = tmp_path / "int"
    child = start(args, tmp_path)
    wait_for(lambda: any(sweep.glob("runs/*/metrics.csv")), child)  # after epoch 1
    child.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130
    assert "to resume, run the same command again: bnbench run" in stderr

    (run,) = [d for d in sweep.glob("runs/*") if (d / "summary.json").exists()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert 1 <= metric_rows(run) < 5  # the partial curve is kept
    assert not (run / HOLD_FILE).exists()
    assert len(list(sweep.glob("runs/*"))) == 1  # the sweep stopped: the next run never began

    assert [execute(cfg) for cfg in configs(args)] == ["completed", "completed"]  # the rerun
    assert not leftovers(sweep)


def test_sigterm_marks_the_run_interrupted_and_restores_the_handler(results):
    cfg = tiny_config(results, train__epochs=40)
    metrics = run_dir(cfg) / "metrics.csv"

    def terminate_after_first_epoch() -> None:
        while not metrics.exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_after_first_epoch, daemon=True).start()
    with pytest.raises(Terminated):
        execute(cfg)
    summary = json.loads((run_dir(cfg) / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 1 <= metric_rows(run_dir(cfg)) < 40
    assert not (run_dir(cfg) / HOLD_FILE).exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_killed_run_resumes_from_its_checkpoint_with_identical_metrics(tmp_path):
    args = [*SLOWER, "train.epochs=4", "sweep=ckpt"]
    (reference,) = configs([*args, f"results_dir={tmp_path / 'reference'}"])
    assert execute(reference) == "completed"  # uninterrupted, without checkpoints

    resumed = [*args, f"results_dir={tmp_path / 'resumed'}", "train.checkpoint=true"]
    (cfg,) = configs(resumed)
    run = run_dir(cfg)
    assert run.name == run_dir(reference).name  # train.checkpoint is not part of the run id
    child = start(resumed, tmp_path)
    wait_for(lambda: metric_rows(run) >= 2 and (run / "checkpoint.pt").exists(), child)
    os.killpg(child.pid, signal.SIGKILL)  # most likely during epoch 3
    child.communicate()
    assert not (run / "summary.json").exists() and metric_rows(run) < 4

    assert execute(cfg) == "completed"  # what the next `bnbench run` does for this run
    summary = json.loads((run / "summary.json").read_text())
    expected = json.loads((run_dir(reference) / "summary.json").read_text())
    assert summary["resumed_after_epoch"] >= 1 and summary["final"] == expected["final"]
    same_metrics(run, run_dir(reference))
    assert not (run / "checkpoint.pt").exists()


# --- runs held by another process ------------------------------------------------------------


def test_a_claim_left_by_a_dead_process_is_taken_over(results):
    cfg = tiny_config(results)
    plant_claim(run_dir(cfg), host=socket.gethostname(), pid=dead_pid(), started_at="earlier")
    assert execute(cfg) == "completed"
    assert not leftovers(results / cfg.sweep)


def test_a_rerun_removes_the_temp_file_of_a_write_a_signal_cut_off(results):
    """Ctrl-C can land between an atomic write creating its temp file and the cleanup that
    would remove it; the next process to hold the run's claim deletes it."""
    cfg = tiny_config(results)
    directory = run_dir(cfg)
    directory.mkdir(parents=True)
    (directory / ".evals.csv.x1y2z3.tmp").write_text("epoch,st")
    assert execute(cfg) == "completed"
    assert not leftovers(results / cfg.sweep)


def test_a_claim_with_a_stale_heartbeat_from_another_host_is_taken_over(results):
    cfg = tiny_config(results)
    plant_claim(run_dir(cfg), age_s=STALE_AFTER_S + 60, host="elsewhere", pid=1)
    assert execute(cfg) == "completed"


def test_a_run_whose_claim_is_taken_over_stops_without_writing_results(results, monkeypatch):
    monkeypatch.setattr(hold, "HEARTBEAT_S", 0.0)  # beat at every step
    cfg = tiny_config(results, train__epochs=40)
    directory = run_dir(cfg)

    def take_over_after_first_epoch() -> None:
        while not (directory / "metrics.csv").exists():
            time.sleep(0.01)
        # In one rename, as a real take-over does: the run must never see the claim missing.
        staged = plant_claim(results / "staged", host="elsewhere", pid=1)
        os.replace(staged, directory / HOLD_FILE)

    threading.Thread(target=take_over_after_first_epoch, daemon=True).start()
    assert execute(cfg) == "claimed"
    assert not (directory / "summary.json").exists()
    assert json.loads((directory / HOLD_FILE).read_text())["host"] == "elsewhere"


def test_a_run_claimed_by_a_live_process_is_skipped(results):
    cfg = tiny_config(results)
    plant_claim(run_dir(cfg), host=socket.gethostname(), pid=os.getppid())
    assert execute(cfg) == "claimed"
    plant_claim(run_dir(cfg), host="elsewhere", pid=1)  # fresh heartbeat on another machine
    assert execute(cfg) == "claimed"
    assert not (run_dir(cfg) / "summary.json").exists()


class UncompletedJobError(RuntimeError):
    """Named as submitit's: raised in a task out of requeues at its time limit."""


def test_a_run_that_fails_after_its_claim_was_taken_over_is_not_marked_failed(results, monkeypatch):
    """A live process judged dead (no heartbeat for STALE_AFTER_S) loses its run; the error
    the takeover causes it (its temp file deleted under it) is not the run's failure."""
    cfg = tiny_config(results)

    def taken_over_then_broken(cfg, claim, parallel_jobs=1):
        claim.path.write_text(json.dumps({"token": "another process"}))
        raise FileNotFoundError("its .metrics.csv temp file, deleted by the new holder")

    monkeypatch.setattr("bnbench.train.runner.train_run", taken_over_then_broken)
    assert execute(cfg) == "claimed"
    assert not (run_dir(cfg) / "summary.json").exists()


def test_a_run_out_of_requeues_is_left_interrupted_and_the_command_says_so(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import bnbench.train.runner
    from bnbench.cli import app

    def time_limit(*args, **kwargs):
        raise UncompletedJobError("job 7 (task: 0) was timed-out too many times")

    monkeypatch.setattr(bnbench.train.runner, "train_run", time_limit)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", *TINY, "sweep=limit", f"results_dir={tmp_path}"])
    (summary,) = tmp_path.glob("limit/runs/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "interrupted"
    assert result.exit_code == 1  # not done: a script or make must not go on as if it were
    assert re.search(r"1 of 1 planned run\(s\) not finished: \w+ \(interrupted\)", result.output)
    assert "run the same command again" in result.output
