"""The job each Hydra launcher runs, one per planned run (`hydra_job`), and `launch`, which
hands a sweep's overrides to Hydra: the basic launcher in this process, joblib's workers, or
submitit's SLURM array tasks. After each run a sweep shows its progress: a bar that stays
above the run's bar on a terminal, a line otherwise (bnbench.sweep.progress)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bnbench.config import paths
from bnbench.config.identity import run_id
from bnbench.config.machine import available_cores
from bnbench.config.schema import Config, ConfigError, register_configs, to_config
from bnbench.config.validation import validate
from bnbench.store.files import (
    FINISHED,
    FULL,
    SUMMARY_FILE,
    DiskFull,
    atomic_file,
    disk_full,
    read_summary,
    recorded_seconds,
    run_dir,
    run_path,
    run_status,
    sweep_dir,
)
from bnbench.store.planfile import PLAN_FILE, read_plan
from bnbench.sweep.plan import CONF_DIR, PlannedRun
from bnbench.sweep.pool import die_with_parent, estimated_cost
from bnbench.sweep.progress import SweepProgress, planned_cost, sweep_name

MULTIRUN_FILE = "multirun.yaml"  # Hydra's record of a sweep's config, in hydra.sweep.dir
LAUNCHER_PID = "BNBENCH_LAUNCHER_PID"  # the environment variable naming the launching process
# The sweep launched from this process (the basic launcher runs its jobs here); a launcher
# that runs jobs in other processes finds None there and prints sweep_line instead.
_SWEEP: SweepProgress | None = None


class SweepStopped(BaseException):
    """Ends the sweep from inside a Hydra job; a BaseException, so that Hydra, which records
    a job's Exception and goes on, lets it through (as it does KeyboardInterrupt)."""


def launch(overrides: list[str], multirun: bool, plan: list[PlannedRun] | None = None) -> None:
    """Hand the overrides to Hydra, which runs each job through its launcher; with the plan
    of a sweep, its progress is shown from the planned cost of each run."""
    global _SWEEP
    register_configs()
    if any(o.startswith("hydra/launcher=") and "slurm" in o for o in overrides):
        from bnbench.sweep.slurm import poll_without_accounting  # submitit: an extra

        poll_without_accounting()  # no sacct warning per poll where accounting is off
    if plan and len(plan) > 1:
        planned = [planned_cost(p.config, estimated_cost(p.config), p.done) for p in plan]
        _SWEEP = SweepProgress(sweep_name([p.config.sweep for p in plan]), planned)
    hydra_command([*(["--multirun"] if multirun else []), *overrides])


def hydra_command(args: list[str]) -> None:
    """Hydra's own command line on `args` (its flags first, then overrides): a run, a
    multirun, or what --info, --hydra-help and --cfg print. The user's --config-dir joins
    every job's overrides."""
    global _SWEEP
    register_configs()
    os.environ[LAUNCHER_PID] = str(os.getpid())  # a job in another process dies with this one
    saved_argv = sys.argv
    sys.argv = ["bnbench", *args, *paths.searchpath_overrides()]
    try:
        with multirun_file_whole():
            hydra_job()
    finally:
        sys.argv = saved_argv
        if _SWEEP is not None:
            _SWEEP.close()
        _SWEEP = None


@contextmanager
def multirun_file_whole() -> Iterator[None]:
    """Hydra's sweepers save multirun.yaml with OmegaConf.save straight into place, so a full
    disk left an empty file and a traceback. While Hydra runs, that one file is written whole
    (atomic_file), and a full disk stops the sweep in one line (SweepStopped passes Hydra)."""
    original = OmegaConf.__dict__["save"]  # the staticmethod itself, to put back as it was

    def save(config, f, resolve: bool = False) -> None:
        if not isinstance(f, (str, Path)) or Path(f).name != MULTIRUN_FILE:
            return original.__func__(config, f, resolve)
        try:
            with atomic_file(Path(f)) as out:
                original.__func__(config, out, resolve)
        except DiskFull as error:
            raise SweepStopped(error.strerror) from None

    OmegaConf.save = staticmethod(save)
    try:
        yield
    finally:
        OmegaConf.save = original


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def hydra_job(cfg: DictConfig) -> float | str:
    """Train (or skip) the run; return its objective to a sweeper that tunes (one with a
    `direction`, Optuna's), else its status."""
    from bnbench.train.runner import execute  # torch loads only when something trains

    config = to_config(cfg)
    worker = os.environ.get(LAUNCHER_PID, str(os.getpid())) != str(os.getpid())
    parent = die_with_parent() if worker else None  # joblib's: no orphan trains on unwatched
    try:
        validate(config)  # planned runs were checked; a sampling sweeper's trials were not
    except ConfigError as error:
        print(f"trial refused: {error}", file=sys.stderr, flush=True)
        raise
    try:
        status = execute(config, parallel_jobs())
        if _SWEEP is not None:
            show(_SWEEP.finished(run_id(config), status, recorded_seconds(run_dir(config))))
        else:
            sweep_line(config)
    except KeyboardInterrupt:
        if parent is not None and os.getppid() != parent:  # its launcher died: nobody waits
            os._exit(143)  # the run is recorded interrupted; the worker's pool would idle on
        raise
    except OSError as error:  # a full disk: every later run would fail the same way
        if error.errno not in FULL:
            raise
        where = error.filename or config.results_dir
        raise SweepStopped(disk_full(Path(where)).strerror) from None
    direction = HydraConfig.get().sweeper.get("direction")
    return status if direction is None else objective_value(config, status, direction)


def objective_value(config: Config, status: str, direction) -> float:
    """The run's `objective` from its summary.json (trained now or earlier); a diverged run
    scores the worst value for the sweeper's direction. A run that failed, or that another
    process trains, has no value: the sweeper records the trial as failed."""
    summary = read_summary(run_dir(config)) or {}
    if summary.get("status") == "diverged":
        # "maximize", Direction.maximize or [maximize], as the sweeper's config holds it
        return -math.inf if "max" in str(direction).lower() else math.inf
    if summary.get("status") != "completed":
        raise RuntimeError(f"run {run_id(config)} has no {config.objective}: {status}")
    value = summary.get(config.objective)
    if value is None:
        value = (summary.get("final") or {}).get(config.objective)
    return float(value)


def show(line: str) -> None:
    """A sweep's line: printed where no bar shows it (output that is not a terminal). A plain
    print, not the CLI's rich console: a launcher may pickle the job with what it reaches,
    and the console holds a lock that does not pickle."""
    if _SWEEP is None or _SWEEP.task is None:
        print(line, flush=True)


def sweep_line(cfg) -> None:
    """After each run of a sweep run by other processes (joblib, submitit): runs finished of
    those planned, failed, elapsed and ETA, from the run files alone. plan.json is written
    when the sweep is launched, so its age is the elapsed time, and only runs whose summary
    is younger were trained since: the ETA is their mean time per run, times the runs left."""
    sweep = sweep_dir(cfg)
    plan = read_plan(sweep)
    if plan is None or len(plan.run_ids) < 2:
        return
    launched = (sweep / PLAN_FILE).stat().st_mtime
    paths = [run_path(sweep, r) for r in plan.run_ids]
    statuses = [run_status(p) for p in paths]
    done = sum(s in FINISHED for s in statuses)
    failed = statuses.count("failed")
    trained = sum(
        s in FINISHED and trained_since(p, launched) for s, p in zip(statuses, paths, strict=True)
    )
    elapsed = time.time() - launched
    eta = f"ETA {elapsed / trained * (len(statuses) - done) / 60:.1f} min" if trained else "ETA ?"
    print(
        f"[sweep {sweep.name}] {done}/{len(statuses)} runs finished, {failed} failed, "
        f"{elapsed / 60:.1f} min elapsed, {eta}",
        flush=True,
    )


def trained_since(run: Path, launched: float) -> bool:
    try:
        return (run / SUMMARY_FILE).stat().st_mtime >= launched
    except OSError:
        return False


def parallel_jobs() -> int:
    """How many runs share this machine now (joblib's n_jobs; 1 for the basic launcher)."""
    n_jobs = HydraConfig.get().launcher.get("n_jobs", 1) or 1
    cores = available_cores()
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
