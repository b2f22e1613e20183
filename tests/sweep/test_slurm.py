"""`hydra/launcher=slurm` against a real single-node SLURM cluster (tests/slurm/cluster.sh):
the job array, threads per task, requeue at the time limit with checkpoint resume, scancel and
rerun, and a local sweep sharing the runs with the array.

About 4 minutes on 2 cores. Skipped, with the reason, where the cluster cannot start: not root,
not Linux, no Slurm packages and no apt-get to install them, hydra-submitit-launcher missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SCRIPT = Path(__file__).resolve().parents[1] / "slurm" / "cluster.sh"
SKIPPED = 77  # cluster.sh: cannot run here
TINY = ["dataset=synthetic", "model.widths=[8,16]", "train.batch_size=32", "optim.lr=0.05"]
LONGER = [*TINY, "dataset.synthetic_train=4160"]  # 4096 training images: ~0.5 s an epoch
EPOCH_LINE = re.compile(r"^\[(\w{12}) \w+\] epoch (\d+)/", re.MULTILINE)


def slurm(cpus: int = 1, timeout_min: int = 10) -> list[str]:
    """The launcher as a user sets it: one CPU per task runs two tasks at once on 2 cores."""
    return [
        "hydra/launcher=slurm",
        f"hydra.launcher.cpus_per_task={cpus}",
        "hydra.launcher.mem_gb=1",
        f"hydra.launcher.timeout_min={timeout_min}",
    ]


# --- the cluster -------------------------------------------------------------------------------


@dataclass
class Cluster:
    directory: Path
    env: dict[str, str]  # SLURM_CONF points the commands (and bnbench's jobs) at this cluster

    def command(self, *args: str) -> str:
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, check=True)
        return result.stdout

    def cpus(self) -> int:
        return int(self.command("sinfo", "-h", "-o", "%c").split()[0])

    def active(self, job: str) -> bool:
        """Whether any task of the job is still pending, running or completing."""
        states = "pending,running,completing,configuring,requeued"
        return bool(self.command("squeue", "-h", "-j", job, "-t", states, "-o", "%i").strip())

    def time_limit_checks(self) -> list[datetime]:
        """When slurmctld checked time limits (every 30 s; logged at debug2)."""
        log = (self.directory / "log" / "slurmctld.log").read_text()
        found = re.findall(r"^\[([\dT:.-]+)\] debug2: Testing job time limits", log, re.M)
        return [datetime.fromisoformat(stamp) for stamp in found]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs bnbench[slurm]")
    directory = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURMCTLD_DEBUG": "debug2"}
    script = ["bash", str(SCRIPT)]
    up = subprocess.run(
        [*script, "up", str(directory)], env=env, capture_output=True, text=True, timeout=900
    )
    if up.returncode == SKIPPED:
        pytest.skip(up.stderr.strip().splitlines()[-1])
    assert up.returncode == 0, up.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}  # not in a job
    env |= {"SLURM_CONF": str(directory / "slurm.conf"), "OMP_NUM_THREADS": "1"}
    try:
        yield Cluster(directory, env)
    finally:
        down = subprocess.run(
            [*script, "down", str(directory)], capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stderr


# --- helpers ---------------------------------------------------------------------------------


def bnbench_run(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "bnbench.cli", "run", "-m", *args]


def run(cluster: Cluster, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`bnbench run -m ARGS` to the end, as a user types it; it must succeed."""
    result = subprocess.run(
        bnbench_run(args), cwd=cwd, env=cluster.env, capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, f"exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def start(cluster: Cluster, args: list[str], cwd: Path) -> subprocess.Popen:
    """`bnbench run -m ARGS` in the background, in its own process group."""
    return subprocess.Popen(
        bnbench_run(args),
        cwd=cwd,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(child: subprocess.Popen, timeout: float = 400) -> tuple[str, str]:
    stdout, stderr = child.communicate(timeout=timeout)
    assert child.returncode == 0, f"exited {child.returncode}:\n{stdout}\n{stderr}"
    return stdout, stderr


def wait_for(condition, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert child.poll() is None, f"exited early:\n{child.communicate()}"
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def summaries(sweep: Path) -> dict[str, dict]:
    """run id -> summary.json, for the runs that have one."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("runs/*/summary.json")}


def jobs(sweep: Path) -> list[str]:
    """The SLURM job ids submitted for the sweep (submitit's folders), oldest first."""
    return sorted((d.name for d in (sweep / ".submitit").iterdir() if d.name.isdigit()), key=int)


def task_logs(sweep: Path, job: str = "*") -> str:
    """Everything the job's tasks printed (all attempts: submitit appends). An array's tasks
    write to .submitit/JOB_TASK/, a single job to .submitit/JOB/."""
    logs = [*sweep.glob(f".submitit/{job}/*_log.*"), *sweep.glob(f".submitit/{job}_*/*_log.*")]
    return "".join(p.read_text() for p in sorted(set(logs)))


def trained(text: str) -> Counter:
    """run id -> how many times its first epoch was trained, from the progress lines."""
    return Counter(run for run, epoch in EPOCH_LINE.findall(text) if epoch == "1")


def same_metrics(a: Path, b: Path) -> None:
    """Identical metrics.csv (wall times aside) and steps.csv, bit for bit."""
    ours, theirs = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    columns = [c for c in ours.columns if c != "epoch_time_s"]
    pd.testing.assert_frame_equal(ours[columns], theirs[columns], check_exact=True)
    assert (a / "steps.csv").read_text() == (b / "steps.csv").read_text()


# --- (a) the array, (b) threads --------------------------------------------------------------


@pytest.fixture(scope="module")
def array_sweep(cluster, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """4 runs through one job array, as the issue's user ran them."""
    root = tmp_path_factory.mktemp("array")
    args = [*TINY, "train.epochs=1", *slurm(cpus=1), f"results_dir={root}", "sweep=array"]
    result = run(cluster, [*args, "model.norm=batch,none", "seed=0,1"], cwd=root)
    return root / "array", result


def test_a_sweep_runs_as_one_job_array_and_trains_each_run_once(array_sweep):
    sweep, result = array_sweep
    done = summaries(sweep)
    assert len(done) == 4 and {s["status"] for s in done.values()} == {"completed"}
    for run_id in done:
        assert re.search(rf"{run_id} .* completed ", result.stdout)  # the comparison table
    (job,) = jobs(sweep)  # one sbatch for the sweep
    assert {s["slurm_job_id"] for s in done.values()} == {job}  # the array's id...
    assert sorted(s["slurm_array_task_id"] for s in done.values()) == ["0", "1", "2", "3"]
    assert trained(task_logs(sweep)) == Counter(dict.fromkeys(done, 1))
    assert not EPOCH_LINE.search(result.stdout + result.stderr)  # none trained by the submitter
    assert not list(sweep.glob("runs/*/claim.json"))


def test_the_threads_of_a_task_follow_cpus_per_task(cluster, array_sweep, tmp_path):
    sweep, _ = array_sweep
    assert {s["threads"] for s in summaries(sweep).values()} == {1}  # cpus_per_task=1
    if cluster.cpus() < 2:
        pytest.skip("the node has 1 CPU: cpus_per_task=2 cannot be allocated")
    args = [*TINY, "train.epochs=1", *slurm(cpus=2), f"results_dir={tmp_path}", "sweep=threads"]
    run(cluster, args, cwd=tmp_path)
    (summary,) = summaries(tmp_path / "threads").values()
    assert summary["status"] == "completed" and summary["threads"] == 2


def test_no_warning_per_poll_on_a_cluster_without_accounting(array_sweep):
    _, result = array_sweep
    assert "Bypassing sacct error" not in result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("accounting storage is disabled") <= 1


def test_claims_run_sends_every_claims_runs_as_one_job_array_then_judges(cluster, tmp_path):
    """`claims run A B ... hydra/launcher=slurm`: one sbatch for both claims' sweeps, each
    run trained once by an array task, then each sweep's report and each claim's verdict."""
    args = ["claims", "run", "test-time-stats", "covariate-shift", "--profile", "quick"]
    args += ["debug=tiny", "seed=0", *slurm(cpus=1), f"results_dir={tmp_path}"]
    result = subprocess.run(
        [sys.executable, "-m", "bnbench.cli", *args],
        cwd=tmp_path,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    done = {
        run: summary
        for sweep in ("claim_test_time_stats", "claim_covariate_shift")
        for run, summary in summaries(tmp_path / sweep).items()
    }
    assert len(done) == 1 + 3 and {s["status"] for s in done.values()} == {"completed"}
    (job,) = jobs(tmp_path / ".launch")  # one sbatch for both claims
    assert {s["slurm_job_id"] for s in done.values()} == {job}
    assert trained(task_logs(tmp_path / ".launch")) == Counter(dict.fromkeys(done, 1))
    assert not EPOCH_LINE.search(result.stdout)  # none trained by the submitter
    assert (tmp_path / "report.html").exists()
    assert (
        len(
            re.findall(
                r"^(SUPPORTED|CONTRADICTED|NO EFFECT|INCONCLUSIVE|PREVIEW)", result.stdout, re.M
            )
        )
        == 2
    )


# --- (c) requeue at the time limit -------------------------------------------------------------

# A run of about this much training (1 CPU, as measured just before) under timeout_min=1: more
# than its first task can do before the time limit (~40 s), less than the first and the
# requeued task do together (~85 s).
REQUEUE_TRAINING_S = 70
# Slurm checks time limits every 30 s and sends USR2 (signal_delay_s=1) at the first check at
# most 31 s before the limit: a task starting d s after a check (1 < d < 30) is signalled 60 - d s
# after it started. Submitting 12 s after a check starts the task ~17 s after it (the launch
# takes ~5 s): ~43 s for the first task; the requeued one starts ~7 s after its check
# (cred_expire=5) and gets ~53 s.
SUBMIT_AFTER_CHECK_S = 12


def epoch_seconds(cluster: Cluster, args: list[str], root: Path) -> float:
    """How long an epoch of ARGS takes on one thread here, now (a 3-epoch run)."""
    root.mkdir()
    run(cluster, [*args, "train.epochs=3", "threads=1", f"results_dir={root}"], cwd=root)
    (metrics,) = root.glob("*/runs/*/metrics.csv")
    return float(pd.read_csv(metrics)["epoch_time_s"].iloc[1:].mean())


def submit_after_a_check(cluster: Cluster) -> None:
    """Sleep until SUBMIT_AFTER_CHECK_S after one of slurmctld's time-limit checks."""
    deadline = time.time() + 35
    while not (checks := cluster.time_limit_checks()) and time.time() < deadline:
        time.sleep(0.5)  # a cluster up for less than 30 s has not checked yet
    if not checks:  # no debug2 log: the first task gets 29-59 s
        return
    since = (datetime.now() - checks[-1]).total_seconds()
    time.sleep((SUBMIT_AFTER_CHECK_S - since) % 30)


def test_a_run_past_its_time_limit_is_requeued_and_resumes_to_the_same_metrics(cluster, tmp_path):
    base = [*LONGER, "sweep=requeue"]
    epochs = max(10, round(REQUEUE_TRAINING_S / epoch_seconds(cluster, base, tmp_path / "calib")))
    args = [*base, f"train.epochs={epochs}"]
    # The uninterrupted run, here, meanwhile (its own core): what the requeued one must match.
    here = [*args, "threads=1", f"results_dir={tmp_path / 'reference'}"]
    reference = start(cluster, here, tmp_path)
    submit_after_a_check(cluster)
    limited = [*slurm(cpus=1, timeout_min=1), "hydra.launcher.signal_delay_s=1"]
    limited += ["hydra.launcher.max_num_timeout=1", "train.checkpoint=true"]
    command = [*args, *limited, f"results_dir={tmp_path / 'slurm'}"]
    began = time.time()
    array = start(cluster, command, tmp_path)
    stdout, stderr = array.communicate(timeout=400)
    wall = time.time() - began

    sweep = tmp_path / "slurm" / "requeue"
    logs = task_logs(sweep)
    (run_dir,) = (sweep / "runs").iterdir()
    timing = f"{epochs} epochs, {wall:.0f} s in all; the tasks' logs:\n{logs[-3000:]}"
    assert "DUE TO JOB REQUEUE" in logs, f"not requeued: faster than measured? {timing}"
    assert "this job is timed-out" in logs  # submitit's USR2 handler, which requeued it
    assert re.search(rf"\[{run_dir.name}\] resuming after epoch \d+", logs), timing
    reruns = 0
    while array.returncode != 0:
        # Much slower than measured (a busy machine): the requeued task timed out too, and
        # submitit requeues once. The run is left unfinished; the same command resumes it.
        assert "timed-out too many times" in task_logs(sweep), f"{stdout}\n{stderr}\n{timing}"
        assert reruns < 3, f"unfinished after {reruns} reruns: {timing}"
        reruns += 1
        array = start(cluster, command, tmp_path)
        stdout, stderr = array.communicate(timeout=400)
    if reruns:
        note = f"the requeued task timed out too ({epochs} epochs); {reruns} rerun(s) finished it"
        warnings.warn(note, stacklevel=1)
    else:
        assert logs.count("Starting with JobEnvironment") == 2  # the task, requeued once
    finish(reference)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed_after_epoch"] >= 1
    uninterrupted = tmp_path / "reference" / "requeue" / "runs" / run_dir.name
    expected = json.loads((uninterrupted / "summary.json").read_text())
    assert summary["final"] == expected["final"]
    same_metrics(run_dir, uninterrupted)
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "claim.json").exists()
    assert re.search(rf"{run_dir.name} .* completed ", stdout)  # the comparison table


# --- (d) scancel, (e) a local sweep beside the array -----------------------------------------


def test_scancel_leaves_runs_unfinished_and_the_same_command_finishes_them(cluster, tmp_path):
    args = [*LONGER, "train.epochs=8", *slurm(), f"results_dir={tmp_path}", "sweep=cancel"]
    args += ["model.norm=batch,none", "seed=0,1"]
    sweep = tmp_path / "cancel"
    child = start(cluster, args, tmp_path)
    wait_for(lambda: any(sweep.glob("runs/*/metrics.csv")), child)  # the tasks are training
    (job,) = jobs(sweep)
    cluster.command("scancel", job)
    deadline = time.time() + 60
    while cluster.active(job):
        assert time.time() < deadline, f"job {job} still active 60 s after scancel"
        time.sleep(0.2)

    statuses = {run_id: s["status"] for run_id, s in summaries(sweep).items()}
    assert "interrupted" in statuses.values()  # the tasks that were training, by their SIGTERM
    assert set(statuses.values()) == {"interrupted"}  # nothing finished; the rest never began
    assert not list(sweep.glob("runs/*/claim.json"))  # released: a rerun takes them at once
    # Polled with squeue where sacct does not answer, the cancelled tasks are seen to end:
    # the submitting command stops by itself, with an error.
    child.wait(timeout=90)
    assert child.returncode != 0

    result = run(cluster, args, cwd=tmp_path)  # the same command again
    done = summaries(sweep)
    assert len(done) == 4 and {s["status"] for s in done.values()} == {"completed"}
    _, again = jobs(sweep)
    assert {s["slurm_job_id"] for s in done.values()} == {again}
    assert trained(task_logs(sweep, again)) == Counter(dict.fromkeys(done, 1))
    for run_id in done:
        assert run_id in result.stdout


def test_a_local_sweep_and_the_array_share_the_runs_each_trained_once(cluster, tmp_path):
    args = [*LONGER, "train.epochs=6", f"results_dir={tmp_path}", "sweep=shared"]
    args += ["model.norm=batch,none", "seed=0,1"]
    sweep = tmp_path / "shared"
    array = start(cluster, [*args, *slurm()], tmp_path)
    wait_for(lambda: any(sweep.glob("runs/*/claim.json")), array)  # a task has claimed a run
    local = start(cluster, [*args, "threads=1"], tmp_path)  # the basic launcher, here
    local_out, local_err = local.communicate(timeout=400)
    finish(array)
    # The local sweep exits 0 only when every run is done: if it ended while the array still
    # held a run, it says so, names the holder, and exits 1; the same command then finds all
    # done and trains nothing.
    if local.returncode != 0:
        assert local.returncode == 1 and "not finished" in local_err, local_err
        rerun = run(cluster, [*args, "threads=1"], cwd=tmp_path)
        assert not trained(rerun.stdout)

    done = summaries(sweep)
    assert len(done) == 4 and {s["status"] for s in done.values()} == {"completed"}
    by_array = {run_id for run_id, s in done.items() if s.get("slurm_job_id")}
    assert by_array and by_array != set(done)  # both did some of the work
    assert set(trained(local_out)) == set(done) - by_array
    assert trained(local_out + task_logs(sweep)) == Counter(dict.fromkeys(done, 1))
    assert not list(sweep.glob("runs/*/claim.json"))
