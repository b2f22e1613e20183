"""The `bnbench` command: the app, its `run` command (plan, check, hand to Hydra) and the job
each Hydra launcher runs. `data`, `report` and `bench` are in bnbench.cli_tools, `claims` in
bnbench.cli_claims; both are added here."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import time
from pathlib import Path

import hydra
import typer
from omegaconf import DictConfig

from bnbench import paths
from bnbench.cli_claims import claims_app
from bnbench.cli_plan import plan_table, print_configs, print_next, warn_other_settings
from bnbench.cli_tools import tools_app
from bnbench.config import ConfigError, register_configs, to_config
from bnbench.plan import CONF_DIR, PlannedRun, config_groups, expand
from bnbench.store import FINISHED, FULL, disk_full, read_summary, run_dir
from bnbench.terminal import console, err_console, fail

app = typer.Typer(
    help=(
        "Put the popular claims about batch normalization on trial.\n\n"
        "Examples:\n\n"
        "  bnbench run            # BN vs no-BN once each, ~1.5 min on 2 cores\n\n"
        "  bnbench run -m model.norm=batch,none optim.lr=0.01,0.1 seed=0,1\n\n"
        "  bnbench run experiment=smoke -m model.norm=batch,none\n\n"
        "  bnbench report results/default\n\n"
        "  bnbench claims show higher-lr\n\n"
        "  bnbench data fashion_mnist"
    ),
    no_args_is_help=True,
    add_completion=False,
)
DEFAULT_COMPARISON = ["model.norm=batch,none"]

app.add_typer(tools_app)  # data, report, bench: commands of this app, listed before claims
app.add_typer(claims_app, name="claims")

# The keys most runs set, for `bnbench run --help` (every key: docs/configuration.md).
COMMON_KEYS = (
    "model.norm=batch|none|group|noisy_batch, model.placement=pre|post, optim.lr=0.01, "
    "optim.name=sgd|adam, train.batch_size=128, train.epochs=4, dataset.train_subset=10000, "
    "seed=0, sweep=NAME (results/NAME), results_dir=DIR, threads=N, device=auto|cpu|cuda"
)


def run_help() -> str:
    groups = "\n\n".join(f"  {g}={' | '.join(o)}" for g, o in config_groups().items())
    return (
        "Train one run, or a sweep with -m. Arguments are Hydra overrides "
        "(key=value, key=a,b,c to sweep, experiment=NAME, hydra/launcher=joblib to run "
        "in parallel on all cores). With no arguments: BN and no-BN once each on "
        "Fashion-MNIST, then a comparison table. Finished runs are skipped, so running "
        "the same command again resumes an interrupted sweep.\n\n"
        f"Config groups (GROUP=OPTION):\n\n{groups}\n\n"
        f"Most used keys: {COMMON_KEYS}.\n\n"
        "Examples:\n\n"
        "  bnbench run -m model.norm=batch,none optim.lr=0.01,0.1 seed=0,1\n\n"
        "  bnbench run -m hydra/launcher=joblib model.norm=batch,none seed=0,1,2\n\n"
        "  bnbench run --dry-run -m model.norm=batch,none train.batch_size=16,128\n\n"
        "  bnbench run --cfg job optim.lr=0.1   # the resolved config, nothing trained"
    )


def show_version(value: bool) -> None:
    if value:
        from bnbench import __version__

        console.print(f"bnbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Print the version."
    ),
) -> None:
    pass


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help=run_help(),
)
def run(
    ctx: typer.Context,
    multirun: bool = typer.Option(False, "--multirun", "-m", help="Sweep over comma lists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the planned runs; train nothing."),
    cfg: str = typer.Option(
        None,
        "--cfg",
        "-c",
        help="job: print each run's resolved config and train nothing (Hydra's).",
    ),
    show_config: bool = typer.Option(False, "--show-config", help="The same as --cfg job."),
    config_dir: str = typer.Option(
        None,
        "--config-dir",
        "-cd",
        help="Your own config directory, searched beside the shipped one "
        "(DIR/experiment/NAME.yaml -> experiment=NAME).",
    ),
) -> None:
    set_config_dir(config_dir)
    overrides = list(ctx.args)
    if not overrides:
        overrides, multirun = DEFAULT_COMPARISON, True
    try:
        plan = expand(overrides, multirun, progress=planning_progress())
    except ConfigError as error:
        fail(str(error))
    if show_config or cfg is not None:
        return print_configs(plan, cfg or "job")
    refuse_missing_cuda(plan, overrides)
    todo = [p for p in plan if not p.done]
    console.print(
        f"{len(plan)} run(s) planned in {run_dir(plan[0].config).parent}: "
        f"{len(plan) - len(todo)} done, {len(todo)} to train"
    )
    warn_other_settings(plan)
    if dry_run:
        console.print(plan_table(plan, with_results=False))
        return
    if multirun and todo:
        record_plan(plan, overrides)
    if todo:
        from bnbench.store import check_writable, sweep_dir

        for first in {sweep_dir(p.config): p.config for p in todo}.values():
            try:
                check_writable(sweep_dir(first))
            except OSError as error:
                reason = error.strerror or str(error)
                fail(f"invalid results_dir={first.results_dir!r}: not writable ({reason})")
        from bnbench.machine import available_cores
        from bnbench.runtime import sigterm_raises  # torch loads here

        if "hydra/launcher=submitit_local" in overrides and todo[0].config.threads is None:
            # submitit_local starts every job at once: share the cores instead of oversubscribing
            overrides = [*overrides, f"threads={max(1, available_cores() // len(todo))}"]
        try:
            with sigterm_raises():  # SIGTERM between runs stops as cleanly as during one
                check_data(todo[0])
                launch(overrides, multirun)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM; the run in flight is marked interrupted
            # A second Ctrl-C while exiting would end the process by SIGINT (exit -2).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            fail(f"interrupted; to resume, run the same command again: {this_command()}", 130)
        except SweepStopped as stop:
            fail(
                f"{stop}; the sweep stopped: finished runs are kept, the run in flight is "
                "unfinished; free some space and run the same command again",
                code=1,
            )
    console.print(plan_table(plan, with_results=True))
    statuses = {p.run_id: (read_summary(run_dir(p.config)) or {}).get("status") for p in plan}
    failed = [run_id for run_id, status in statuses.items() if status == "failed"]
    interrupted = [run_id for run_id, status in statuses.items() if status == "interrupted"]
    print_next(plan)
    if failed:
        fail(f"{len(failed)} run(s) failed: {', '.join(failed)} (see their summary.json)", code=1)
    if interrupted:  # e.g. out of SLURM requeues at the time limit: resumable, but not done
        fail(
            f"{len(interrupted)} run(s) unfinished (interrupted): {', '.join(interrupted)}; "
            f"to resume, run the same command again: {this_command()}",
            code=1,
        )


def this_command() -> str:
    """The command line as the user typed it, to run again."""
    return shlex.join(["bnbench", *sys.argv[1:]])


def set_config_dir(directory: str | None) -> None:
    try:
        paths.use_config_dir(directory)
    except ValueError as error:
        fail(str(error))


def planning_progress():
    """progress(done, total) for expand: a line on stderr each second once it takes over one."""
    started = last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 1.0 and done < total:
            last = now
            err_console.print(
                f"planning: {done} of {total} runs composed and checked ({now - started:.0f} s)",
                markup=False,
                highlight=False,
            )

    return progress


def refuse_missing_cuda(plan: list[PlannedRun], overrides: list[str]) -> None:
    """device=cuda on a machine without a GPU fails in every run: refuse it up front. Not
    for the SLURM launcher, whose jobs run on other nodes than the one that plans them."""
    if not any(p.config.device == "cuda" for p in plan):
        return
    if any(o.startswith("hydra/launcher=") and "slurm" in o for o in overrides):
        return
    import torch

    if not torch.cuda.is_available():
        fail("invalid device='cuda': no CUDA device on this machine; allowed here: auto | cpu")


class SweepStopped(BaseException):
    """Ends the sweep from inside a Hydra job; a BaseException, so that Hydra, which records
    a job's Exception and goes on, lets it through (as it does KeyboardInterrupt)."""


def record_plan(plan: list[PlannedRun], overrides: list[str]) -> None:
    """The sweep's plan.json: the planned run ids, so a verdict or report reads the sweep as
    launched without Hydra. One per sweep directory the plan writes into."""
    from bnbench.planfile import record_plans
    from bnbench.store import sweep_dir

    profile = next((o.split("=", 1)[1] for o in overrides if o.startswith("profile=")), None)
    with contextlib.suppress(OSError):  # an unwritable directory is refused just below
        record_plans(((sweep_dir(p.config), p.run_id) for p in plan), profile, overrides)


def check_data(first: PlannedRun) -> None:
    """Fail before launching when the dataset cannot be loaded (every run would fail)."""
    from bnbench.data import DatasetNotFound, load_splits

    try:
        load_splits(first.config.dataset, first.config.seed)
    except DatasetNotFound as error:
        fail(str(error))


def launch(overrides: list[str], multirun: bool) -> None:
    """Hand the overrides to Hydra, which runs each job through its launcher."""
    register_configs()
    if any(o.startswith("hydra/launcher=") and "slurm" in o for o in overrides):
        from bnbench.slurm import poll_without_accounting

        poll_without_accounting()  # no sacct warning per poll where accounting is off
    saved_argv = sys.argv
    search = paths.searchpath_overrides()  # the user's --config-dir, for every job
    sys.argv = ["bnbench", *overrides, *search, *(["--multirun"] if multirun else [])]
    try:
        hydra_job()
    finally:
        sys.argv = saved_argv


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def hydra_job(cfg: DictConfig) -> str:
    from bnbench.runner import execute  # torch loads only when something trains

    config = to_config(cfg)
    try:
        status = execute(config, parallel_jobs())
        sweep_line(config)
        return status
    except OSError as error:  # a full disk: every later run would fail the same way
        if error.errno not in FULL:
            raise
        where = error.filename or to_config(cfg).results_dir
        raise SweepStopped(disk_full(Path(where)).strerror) from None


def sweep_line(cfg) -> None:
    """After each run of a sweep: runs finished of those planned, failed, elapsed and ETA
    (from the sweep's plan.json, written when the sweep was launched; its age is the
    sweep's elapsed time). Works under every launcher: it reads the run files."""
    from bnbench.planfile import PLAN_FILE, read_plan
    from bnbench.store import run_path, run_status, sweep_dir

    sweep = sweep_dir(cfg)
    plan = read_plan(sweep)
    if plan is None or len(plan.run_ids) < 2:
        return
    statuses = [run_status(run_path(sweep, r)) for r in plan.run_ids]
    done = sum(s in FINISHED for s in statuses)
    failed = statuses.count("failed")
    elapsed = time.time() - (sweep / PLAN_FILE).stat().st_mtime
    eta = f"ETA {elapsed / done * (len(statuses) - done) / 60:.1f} min" if done else "ETA ?"
    # plain print: launchers (joblib, submitit) pickle this function by value, and the rich
    # console holds a lock that does not pickle
    print(
        f"[sweep {sweep.name}] {done}/{len(statuses)} runs finished, {failed} failed, "
        f"{elapsed / 60:.1f} min elapsed, {eta}",
        flush=True,
    )


def parallel_jobs() -> int:
    """How many runs share this machine now (joblib's n_jobs; 1 for the basic launcher)."""
    from hydra.core.hydra_config import HydraConfig

    from bnbench.machine import available_cores

    n_jobs = HydraConfig.get().launcher.get("n_jobs", 1) or 1
    cores = available_cores()
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores


if __name__ == "__main__":
    app()
