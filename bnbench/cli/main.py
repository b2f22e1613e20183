"""The `bnbench` command: the app and its `run` command (plan, check, hand to Hydra, whose
job is bnbench.sweep.job's). `data`, `report` and `bench` are in bnbench.cli.tools_app,
`claims` in bnbench.cli.claims_app, `export` and `replay` in their own modules; all are added
here."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import typer

from bnbench.cli import preregister  # noqa: F401 (adds `claims preregister` to claims_app)
from bnbench.cli.claims_app import claims_app
from bnbench.cli.completion import complete_override
from bnbench.cli.export_app import export_app
from bnbench.cli.hydra_flags import (
    check_cfg,
    info_topic,
    refuse_flags,
    show_cfg,
    show_info,
)
from bnbench.cli.plan_view import (
    plan_table,
    print_configs,
    print_effects,
    print_next,
    warn_other_settings,
)
from bnbench.cli.replay_app import replay_app
from bnbench.cli.terminal import (
    console,
    err_console,
    fail,
    fail_unless_finished,
    ignore_stop_signals,
    this_command,
)
from bnbench.cli.tools_app import tools_app
from bnbench.config import paths
from bnbench.config.machine import available_cores
from bnbench.config.schema import Config, ConfigError
from bnbench.config.version import __version__
from bnbench.store.files import check_inside, check_writable, run_dir, sweep_dir
from bnbench.store.hold import tidy_finished, why_unfinished
from bnbench.store.planfile import record_plans
from bnbench.sweep.job import SweepStopped, hydra_command, launch
from bnbench.sweep.plan import NotPlannable, PlannedRun, config_groups, expand

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
    context_settings={"help_option_names": ["-h", "--help"]},
)
SWEEPER_RESULTS = "optimization_results.yaml"  # the Optuna sweeper's, in hydra.sweep.dir
DEFAULT_COMPARISON = ["model.norm=batch,none"]

app.add_typer(tools_app)  # data, report, bench: commands of this app, listed before claims
app.add_typer(claims_app, name="claims")
app.add_typer(export_app)  # export: after claims in the command list
app.add_typer(replay_app)  # replay: last, a reader's check of committed runs

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
        console.print(f"bnbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Print the version."
    ),
) -> None:
    pass


@app.command(help=run_help())
def run(
    overrides: list[str] = typer.Argument(
        None,
        metavar="OVERRIDES",
        help="Hydra overrides: key=value, key=a,b,c with -m, GROUP=OPTION.",
        autocompletion=complete_override,
        show_default=False,
    ),
    multirun: bool = typer.Option(False, "--multirun", "-m", help="Sweep over comma lists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the planned runs; train nothing."),
    cfg: str = typer.Option(
        None,
        "--cfg",
        "-c",
        help="job | hydra | all: print each run's config (job: resolved, with its run id) "
        "and train nothing (Hydra's).",
    ),
    resolve: bool = typer.Option(False, "--resolve", help="With --cfg: resolve interpolations."),
    package: str = typer.Option(None, "--package", "-p", help="With --cfg: only this package."),
    info: bool = typer.Option(
        False,
        "--info",
        # no square brackets: the help is rich markup
        help="Hydra's information about the config (all, config, defaults, defaults-tree, "
        "plugins or searchpath as the first argument).",
    ),
    hydra_help: bool = typer.Option(False, "--hydra-help", help="Hydra's own help."),
    show_config: bool = typer.Option(False, "--show-config", help="The same as --cfg job."),
    config_dir: str = typer.Option(
        None,
        "--config-dir",
        "-cd",
        help="Your own config directory, searched beside the shipped one "
        "(DIR/experiment/NAME.yaml -> experiment=NAME).",
    ),
    config_name: str = typer.Option(
        None, "--config-name", "-cn", help="Refused: see --config-dir."
    ),
    config_path: str = typer.Option(None, "--config-path", "-cp", help="Refused: --config-dir."),
    shell_completion: bool = typer.Option(
        False, "--shell-completion", "-sc", help="Refused: bnbench --install-completion."
    ),
) -> None:
    refuse_flags(config_name, config_path, shell_completion)
    check_cfg(cfg)
    set_config_dir(config_dir)
    if hydra_help:
        return hydra_command(["--hydra-help"])
    topic, overrides = info_topic(list(overrides or [])) if info else ("", list(overrides or []))
    if not overrides:
        overrides, multirun = DEFAULT_COMPARISON, True
    try:
        plan = expand(overrides, multirun, progress=planning_progress())
    except NotPlannable as trials:
        return tune(trials, overrides, dry_run or show_config or cfg is not None or info)
    except ConfigError as error:
        fail(str(error))
    if info:
        return show_info(topic, plan)
    if cfg in ("hydra", "all") or (cfg and (resolve or package)):
        return show_cfg(cfg, resolve, package, plan)
    if show_config or cfg is not None:
        return print_configs(plan)
    refuse_missing_cuda(plan, overrides)
    refuse_missing_logger(plan[0].config)
    todo = [p for p in plan if not p.done]
    console.print(
        f"{len(plan)} run(s) planned in {run_dir(plan[0].config).parent}: "
        f"{len(plan) - len(todo)} done, {len(todo)} to train"
    )
    warn_other_settings(plan)
    if dry_run:
        console.print(plan_table(plan, with_results=False))
        return
    if todo:  # before anything is written: a run refused for its data leaves nothing
        check_data(todo[0].config)
    if multirun and todo:
        record_plan(plan, overrides)
    for done in (p for p in plan if p.done):
        tidy_finished(run_dir(done.config))  # a kill right after its summary left its checkpoint
    if todo:
        for first in {sweep_dir(p.config): p.config for p in todo}.values():
            check_target(first)
        if "hydra/launcher=submitit_local" in overrides and todo[0].config.threads is None:
            # submitit_local starts every job at once: share the cores instead of oversubscribing
            overrides = [*overrides, f"threads={max(1, available_cores() // len(todo))}"]
        train(overrides, multirun, plan)
    console.print(plan_table(plan, with_results=True))
    print_effects(plan)
    print_next(plan)
    # Failed, interrupted (e.g. out of SLURM requeues), held by another process: not done.
    fail_unless_finished({p.run_id: why_unfinished(run_dir(p.config)) for p in plan})


def tune(trials: NotPlannable, overrides: list[str], only_show: bool) -> None:
    """A sweeper that picks its trials as it goes (Optuna's): nothing to list ahead, so a
    dry run says so; else check what the trials share, let the sweeper run them, and print
    its best trial."""
    if only_show:
        console.print(str(trials), markup=False, highlight=False, soft_wrap=True)
        return
    refuse_missing_logger(trials.config)
    check_data(trials.config)
    check_target(trials.config)
    train(overrides, True)
    best = best_trial(sweep_dir(trials.config), trials.config.objective)
    if best:
        console.print(best, markup=False, highlight=False)
    console.print(f"next: bnbench report {sweep_dir(trials.config)}", highlight=False)


def best_trial(directory: Path, objective: str) -> str | None:
    """The sweeper's best trial in one line, from the results file it writes."""
    import yaml

    try:
        result = yaml.safe_load((directory / SWEEPER_RESULTS).read_text())
        params = " ".join(f"{k}={v}" for k, v in result["best_params"].items())
        return f"best trial: {params} ({objective}={result['best_value']:.4g}); {directory}"
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def check_target(first: Config) -> None:
    """The sweep directory stays inside results_dir and can be written, or one line."""
    try:
        check_inside(sweep_dir(first), first.results_dir)
    except OSError as error:
        fail(f"invalid sweep={first.sweep!r}: {error.strerror}; it must stay inside")
    try:
        check_writable(sweep_dir(first))
    except OSError as error:
        reason = error.strerror or str(error)
        fail(f"invalid results_dir={first.results_dir!r}: not writable ({reason})")


def train(overrides: list[str], multirun: bool, plan=None) -> None:
    """Hand the sweep to Hydra; Ctrl-C, SIGTERM and a full disk end it in one line."""
    with stops_in_one_line():
        launch(overrides, multirun, plan)


@contextlib.contextmanager
def stops_in_one_line():
    """Ctrl-C, SIGTERM and a full disk inside end the command in one line."""
    from bnbench.train.runtime import sigterm_raises  # torch loads here

    try:
        with sigterm_raises():  # SIGTERM between runs stops as cleanly as during one
            yield
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM; the run in flight is marked interrupted
        ignore_stop_signals()
        fail(f"interrupted; to resume, run the same command again: {this_command()}", 130)
    except SweepStopped as stop:
        fail(
            f"{stop}; the sweep stopped: finished runs are kept, the run in flight is "
            "unfinished; free some space and run the same command again",
            code=1,
        )


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
    """device=cuda, or train.amp on a device that may be the CPU, fails in every run on a
    machine without a GPU: refuse it up front. Not for the SLURM launcher, whose jobs run on
    other nodes than the one that plans them."""
    cuda = any(p.config.device == "cuda" for p in plan)
    amp = any(p.config.train.amp for p in plan)
    if not (cuda or amp) or any(
        o.startswith("hydra/launcher=") and "slurm" in o for o in overrides
    ):
        return
    import torch

    if torch.cuda.is_available():
        return
    if cuda:
        fail("invalid device='cuda': no CUDA device on this machine; allowed here: auto | cpu")
    fail("invalid train.amp=True: no CUDA device on this machine, and amp trains on CUDA only")


def refuse_missing_logger(first: Config) -> None:
    from bnbench.train.loggers import missing_package

    if missing_package(first.logger.name):
        fail(missing_package(first.logger.name))


def record_plan(plan: list[PlannedRun], overrides: list[str]) -> None:
    """The sweep's plan.json: the planned run ids, so a verdict or report reads the sweep as
    launched without Hydra. One per sweep directory the plan writes into."""
    profile = next((o.split("=", 1)[1] for o in overrides if o.startswith("profile=")), None)
    with contextlib.suppress(OSError):  # an unwritable directory is refused just below
        record_plans(((sweep_dir(p.config), p.run_id) for p in plan), profile, overrides)


def check_data(first: Config) -> None:
    """Fail before launching when the dataset cannot be loaded (every run would fail)."""
    from bnbench.train.data import DatasetNotFound, load_splits

    try:
        with stops_in_one_line():  # loading takes seconds: Ctrl-C is one line here too
            load_splits(first.dataset, first.seed)
    except DatasetNotFound as error:
        fail(str(error))
