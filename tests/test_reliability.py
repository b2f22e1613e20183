"""Reliability with real processes and real faults: kill -9 and resume, two sweeps at once,
Ctrl-C, preemption with checkpoints, stale claims, the submitit launcher, and every refused
input of the refused-input catalogue (docs/reliability.md)."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, bnbench, tiny_config

from bnbench import run_claim
from bnbench.plan import expand
from bnbench.run_claim import STALE_AFTER_S, ClaimLost, claim_run
from bnbench.run_reader import scan
from bnbench.runner import execute
from bnbench.runtime import Terminated
from bnbench.store import CLAIM_FILE, METRIC_COLUMNS, run_dir

REFUSED_INPUT_DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
# One thread per run: on a busy 2-core machine, two threads per run crawl (OpenMP spinning).
FAST = [*TINY, "threads=1"]
SIX_RUNS = ["-m", "model.norm=batch,none", "seed=0,1,2"]
# A bigger toy problem for the tests that must catch a run between two epochs.
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


def configs(args: list[str]) -> list:
    """The configs that `bnbench run -m ARGS` trains, in order, to train them in this process."""
    return [planned.config for planned in expand([a for a in args if a != "-m"], multirun=True)]


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


def same_metrics(a: Path, b: Path) -> None:
    """Identical metrics.csv and steps.csv (bit for bit), wall times aside."""
    columns = [c for c in METRIC_COLUMNS if c != "epoch_time_s"]
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "metrics.csv")[columns],
        pd.read_csv(b / "metrics.csv")[columns],
        check_exact=True,
    )
    assert (a / "steps.csv").read_text() == (b / "steps.csv").read_text()


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
    assert not (run / CLAIM_FILE).exists()
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
    assert not (run_dir(cfg) / CLAIM_FILE).exists()
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


# --- claims, in process ------------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def plant_claim(directory: Path, age_s: float = 0, **info) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CLAIM_FILE
    path.write_text(json.dumps(info))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


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


def test_the_heartbeat_touches_the_claim_and_notices_a_takeover(tmp_path):
    claim = claim_run(tmp_path)
    old = time.time() - 100
    os.utime(claim.path, (old, old))
    claim.beat()  # too soon after the last one: nothing to do
    assert claim.path.stat().st_mtime == old
    claim.beat(force=True)
    assert claim.path.stat().st_mtime > old
    claim.path.unlink()
    plant_claim(tmp_path, host="elsewhere", pid=1)  # another process took the run over
    with pytest.raises(ClaimLost):
        claim.beat(force=True)
    claim.release()
    assert (tmp_path / CLAIM_FILE).exists()  # not ours to delete


def test_a_run_whose_claim_is_taken_over_stops_without_writing_results(results, monkeypatch):
    monkeypatch.setattr(run_claim, "HEARTBEAT_S", 0.0)  # beat at every step
    cfg = tiny_config(results, train__epochs=40)
    directory = run_dir(cfg)

    def take_over_after_first_epoch() -> None:
        while not (directory / "metrics.csv").exists():
            time.sleep(0.01)
        # In one rename, as a real take-over does: the run must never see the claim missing.
        staged = plant_claim(results / "staged", host="elsewhere", pid=1)
        os.replace(staged, directory / CLAIM_FILE)

    threading.Thread(target=take_over_after_first_epoch, daemon=True).start()
    assert execute(cfg) == "claimed"
    assert not (directory / "summary.json").exists()
    assert json.loads((directory / CLAIM_FILE).read_text())["host"] == "elsewhere"


def test_a_run_claimed_by_a_live_process_is_skipped(results):
    cfg = tiny_config(results)
    plant_claim(run_dir(cfg), host=socket.gethostname(), pid=os.getppid())
    assert execute(cfg) == "claimed"
    plant_claim(run_dir(cfg), host="elsewhere", pid=1)  # fresh heartbeat on another machine
    assert execute(cfg) == "claimed"
    assert not (run_dir(cfg) / "summary.json").exists()


def _try_claim(directory: Path, barrier, wins) -> None:
    barrier.wait()  # all at once, to make the race as close as it gets
    wins.put(claim_run(directory) is not None)
    barrier.wait()  # the winner stays alive (its claim live) until every taker has tried


def test_of_several_processes_taking_over_one_stale_claim_exactly_one_wins(tmp_path):
    plant_claim(tmp_path, host=socket.gethostname(), pid=dead_pid())
    context = multiprocessing.get_context("fork")  # the children touch files only, no torch
    takers = 6
    barrier, wins = context.Barrier(takers), context.Queue()
    children = [
        context.Process(target=_try_claim, args=(tmp_path, barrier, wins)) for _ in range(takers)
    ]
    for child in children:
        child.start()
    results = [wins.get(timeout=30) for _ in children]
    for child in children:
        child.join()
    assert sum(results) == 1
    assert [p.name for p in tmp_path.iterdir()] == [CLAIM_FILE]  # no takeover lock left


# --- the submitit launcher ---------------------------------------------------------------------


def test_submitit_local_runs_the_sweep_like_the_basic_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    args = [*TINY, "sweep=sub", "model.norm=batch,none"]
    sub = tmp_path / "submitit"
    bnbench("run", "-m", *args, f"results_dir={sub}", "hydra/launcher=submitit_local", cwd=tmp_path)

    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # what bnbench gives each of the 2 runs
    basic = configs([*args, f"results_dir={tmp_path / 'basic'}", f"threads={threads}"])
    assert [execute(cfg) for cfg in basic] == ["completed", "completed"]  # the basic launcher's
    sub_runs = sorted((sub / "sub" / "runs").iterdir())
    assert [r.name for r in sub_runs] == sorted(run_dir(cfg).name for cfg in basic)
    for ours in sub_runs:
        same_metrics(ours, tmp_path / "basic" / "sub" / "runs" / ours.name)
        assert json.loads((ours / "summary.json").read_text())["threads"] == threads
    assert list((sub / "sub" / ".submitit").glob("*/*_log.out"))  # logs beside runs/
    runs, skipped = scan(sub)
    assert len(runs) == 2 and not skipped  # report is not confused by .submitit/


def test_the_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from bnbench.config import register_configs
    from bnbench.plan import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.array_parallelism) == (4, 8, 64)
    assert launcher.submitit_folder == "results/default/.submitit/%j"  # beside runs/


# --- the catalogue of refused input ------------------------------------------------------------


def read_refusals() -> list[tuple[str, str]]:
    """(command, message) for each row of the "Refused input" table in docs/reliability.md."""
    section = REFUSED_INPUT_DOC.read_text().split("### Refused input", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(bnbench [^`]+)` \| `([^`]+)` \|$", section, re.MULTILINE)
    return [(command, message.replace(r"\|", "|")) for command, message in rows]


REFUSALS = read_refusals()


def test_the_catalogue_lists_every_kind_of_refusal():
    commands = " ".join(command for command, _ in REFUSALS)
    for needle in ["optim.lr=0", "batch_size=0", "dropout=1", "norm=layer", "init=", "imagenet"]:
        assert needle in commands
    for needle in ["ghost", "groups", "nrom", "batch,none", "DIR", "results_dir", "claims"]:
        assert needle in commands
    # issue 16: paths out of results_dir, values that cannot train, unwritable reports
    for needle in ["sweep=/", "sweep=..", "lr=inf", "lr=1e308", "gamma=-1", "diverge_factor"]:
        assert needle in commands
    for needle in ["seed=12345678901234567890", "report /sys"]:
        assert needle in commands


def damaged_dataset(directory: Path, train_images: bytes) -> Path:
    """The four Fashion-MNIST IDX names; the training images hold the given bytes."""
    directory.mkdir()
    for name in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (directory / name).write_bytes(b"")
    (directory / "train-images-idx3-ubyte").write_bytes(train_images)
    return directory


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple[str, subprocess.CompletedProcess, Path]]:
    """Every catalogue command run through the real CLI, one per core at a time (the rows are
    independent, and each costs a Python start-up): command -> (message, result, cwd)."""
    root = tmp_path_factory.mktemp("refused")
    header = struct.pack(">HBB3I", 0, 8, 3, 60000, 28, 28)  # IDX: 60000 images of 28x28
    places = {
        "TRUNCATED_DIR": damaged_dataset(root / "truncated", header + bytes(100)),
        "CORRUPT_DIR": damaged_dataset(root / "corrupt", b"<!DOCTYPE html>" + b" " * 500),
    }

    def refuse(row: int, command: str, message: str):
        for name, path in places.items():
            command, message = command.replace(name, str(path)), message.replace(name, str(path))
        cwd = root / f"row{row}"
        cwd.mkdir()
        return message, bnbench(*shlex.split(command)[1:], cwd=cwd, check=False), cwd

    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        futures = {cmd: pool.submit(refuse, i, cmd, msg) for i, (cmd, msg) in enumerate(REFUSALS)}
    return {command: future.result() for command, future in futures.items()}


@pytest.mark.parametrize("command", [command for command, _ in REFUSALS])
def test_refused_input(command, refused):
    message, result, cwd = refused[command]
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]  # Python warnings may come before it
    pattern = ".*".join(re.escape(part) for part in message.split("…"))
    assert re.fullmatch(pattern, line), f"{line!r} does not match {message!r}"
    assert not list(cwd.glob("**/summary.json"))  # nothing trained


class UncompletedJobError(RuntimeError):
    """Named as submitit's: raised in a task out of requeues at its time limit."""


def test_a_run_that_fails_after_its_claim_was_taken_over_is_not_marked_failed(results, monkeypatch):
    """A live process judged dead (no heartbeat for STALE_AFTER_S) loses its run; the error
    the takeover causes it (its temp file deleted under it) is not the run's failure."""
    cfg = tiny_config(results)

    def taken_over_then_broken(cfg, claim, parallel_jobs=1):
        claim.path.write_text(json.dumps({"token": "another process"}))
        raise FileNotFoundError("its .metrics.csv temp file, deleted by the new holder")

    monkeypatch.setattr("bnbench.runner.train_run", taken_over_then_broken)
    assert execute(cfg) == "claimed"
    assert not (run_dir(cfg) / "summary.json").exists()


def test_a_run_out_of_requeues_is_left_interrupted_and_the_command_says_so(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import bnbench.runner
    from bnbench.cli import app

    def time_limit(*args, **kwargs):
        raise UncompletedJobError("job 7 (task: 0) was timed-out too many times")

    monkeypatch.setattr(bnbench.runner, "train_run", time_limit)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", *TINY, "sweep=limit", f"results_dir={tmp_path}"])
    (summary,) = tmp_path.glob("limit/runs/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "interrupted"
    assert result.exit_code == 1  # not done: a script or make must not go on as if it were
    assert "1 run(s) unfinished (interrupted)" in result.output
    assert "run the same command again" in result.output
