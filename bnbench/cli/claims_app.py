"""`bnbench claims`: the claims on trial, their protocols, their sweeps and their verdicts."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
from rich.table import Table

from bnbench.analysis.formats import quantity
from bnbench.cli.completion import complete_claim
from bnbench.cli.terminal import (
    console,
    fail,
    fail_unless_finished,
    ignore_stop_signals,
    this_command,
)
from bnbench.config.paths import CLAIMS_FILE, use_config_dir
from bnbench.config.schema import ConfigError
from bnbench.store.files import run_dir
from bnbench.store.hold import tidy_finished, why_unfinished

PROFILES = ("quick", "full", "confirmatory")
PROFILE_HELP = (
    "quick: 3 seeds on a small subset, a first look (the default) | full: the development "
    "seeds 0-9 | confirmatory: each claim's pre-registered seeds (conf/preregistration.yaml)"
)
# where `claims verdict` looks for a claim's sweep when no results root is given
DEFAULT_ROOTS = ("results/confirmatory", "results/full", "results/quick", "results/reference")

claims_app = typer.Typer(
    help=(
        "The ten claims about batch norm: list them, show one, run their sweeps, judge them.\n\n"
        "Examples:\n\n"
        "  bnbench claims list\n\n"
        "  bnbench claims show higher-lr\n\n"
        "  bnbench claims run --all --profile quick\n\n"
        "  bnbench claims verdict higher-lr results/quick\n\n"
        "  bnbench claims preregister --all"
    ),
    no_args_is_help=True,
)


CLAIM_NAME = typer.Argument(..., help="a claim's name", autocompletion=complete_claim)
CONFIG_DIR = typer.Option(
    None, "--config-dir", "-cd", help="Your config directory: its claims.yaml adds claims."
)


def _use_config_dir(directory: str | None) -> None:
    try:
        use_config_dir(directory)
    except ValueError as error:
        fail(str(error))


def _claims() -> dict:
    from bnbench.claims.registry import ClaimFileError, load_claims

    try:
        return load_claims()
    except ClaimFileError as error:
        fail(str(error))


def _claim(name: str):
    from bnbench.claims.registry import ClaimFileError, UnknownClaim, get_claim

    try:
        return get_claim(name)
    except (ClaimFileError, UnknownClaim) as error:
        fail(str(error))


@claims_app.command("list", help="Every claim: number, name, the sentence, its primary measure.")
def claims_list(config_dir: str = CONFIG_DIR) -> None:
    from bnbench.claims.registry import claim_origins

    _use_config_dir(config_dir)
    claims = _claims()
    origins = claim_origins()
    table = Table("#", "name", "claim (article)", "primary measure", "from")
    for claim in claims.values():
        origin = origins[claim.name]
        table.add_row(
            str(claim.number),
            claim.name,
            f"{claim.text} ({claim.source})",
            f"{claim.primary.label} [{claim.primary.unit}]",
            "shipped" if origin == CLAIMS_FILE else _short(origin),
        )
    console.print(table)


def _short(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


@claims_app.command("show", help="A claim's sentence, source, sweep, measures, delta and anchor.")
def claims_show(name: str = CLAIM_NAME, config_dir: str = CONFIG_DIR) -> None:
    from bnbench.claims.registry import article_title

    _use_config_dir(config_dir)
    claim = _claim(name)
    p = claim.primary
    rows = [
        ("claim", f"{claim.number}. {claim.name}"),
        ("text", claim.text),
        ("source", f"{article_title(claim.source)} (docs/articles.md)"),
        ("sweep", f"experiment/{claim.experiment}.yaml in the config search path"),
        *[("+ cells", f"experiment/{e}.yaml (not under quick)") for e in claim.extra_cells],
        (
            "primary",
            f"{p.label}: {_arms(p)}; claimed {p.direction}, delta {quantity(p.delta, p.unit)}",
        ),
        ("why", claim.why),
        *[("secondary", f"{m.label} [{m.unit}]") for m in claim.secondary],
        ("anchor", claim.anchor),
        ("locked", _lock_text(claim.name)),
        ("reproduce", f"bnbench claims run {claim.name} --profile confirmatory  (or quick)"),
    ]
    for label, value in rows:
        console.print(f"[bold]{label:>9}[/bold]  {value}", highlight=False)


def _arms(measure) -> str:
    def text(arm: dict | list) -> str:
        if isinstance(arm, list):
            return " or ".join(f"({text(part)})" for part in arm)
        return ", ".join(f"{k}={v}" for k, v in arm.items())

    return f"{text(measure.treatment)} - {text(measure.control)}"


def _lock_text(name: str) -> str:
    from bnbench.claims.preregistration import LockFileError, lock_text, locked_claims

    try:
        return lock_text(locked_claims().get(name))
    except LockFileError as error:
        fail(str(error))


@claims_app.command(
    "verdict",
    help=(
        "The claim's verdict from its sweep under RESULTS_DIR (a results root such as "
        "results/full): the primary measure's effect with its 95% CI, n, exact p and delta, "
        "the outcome (supported / contradicted / no effect / inconclusive, or incomplete), "
        "then the secondary cells with Holm-adjusted p. Needs only the run files and the "
        "sweep's plan.json. Exit code 3 when the sweep is incomplete."
    ),
)
def claims_verdict(
    name: str = CLAIM_NAME,
    results_dir: str = typer.Argument(
        None,
        help="results root holding claim_* sweeps (default: the first of "
        + ", ".join(DEFAULT_ROOTS)
        + " that holds this claim's sweep)",
        show_default=False,
    ),
    as_json: bool = typer.Option(
        False, "--json", help="the verdict as JSON rows (as verdicts.csv)"
    ),
    config_dir: str = CONFIG_DIR,
) -> None:
    from bnbench.claims.display import HEADER, primary_row, secondary_rows
    from bnbench.claims.verdict import verdict
    from bnbench.claims.verdict_table import verdict_json

    _use_config_dir(config_dir)
    claim = _claim(name)
    results_dir = results_dir or _root_holding(claim)
    if not Path(results_dir).is_dir():
        fail(f"no results directory at {results_dir}", code=1)
    result = verdict(claim.name, results_dir)
    if as_json:
        print(verdict_json(result))
        raise typer.Exit(3 if result.status == "incomplete" else 0)
    console.print(result.sentence, markup=False, highlight=False)
    if result.status == "incomplete":
        raise typer.Exit(3)
    title = (
        f"claim {claim.number}: {claim.name} ({result.profile} profile, {result.kind.kind}; "
        f"runs in {Path(results_dir) / claim.experiment})"
    )
    table = Table(title=title)
    for column in HEADER:  # as the reports head it
        table.add_column(column)
    table.add_row(*primary_row(result))
    for row in secondary_rows(result):
        table.add_row(*row)
    console.print(table)


def _root_holding(claim) -> str:
    """The first default results root with the claim's sweep; else a clear failure."""
    for root in DEFAULT_ROOTS:
        if (Path(root) / claim.experiment).is_dir():
            return root
    fail(
        f"no sweep of claim {claim.name!r} under {', '.join(DEFAULT_ROOTS)}; run "
        f"`bnbench claims run {claim.name} --profile quick` first, or name the results root",
        code=1,
    )


@claims_app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help=(
        "Train the sweeps of several claims through one pool of workers (torch loaded once "
        "per worker, the longest runs first, no idle worker at each sweep's end), then report "
        "each sweep and print each claim's verdict. Finished runs are skipped, so the same "
        "command resumes. Extra arguments are Hydra overrides for every sweep; with "
        "hydra/launcher=slurm every claim's runs go to the cluster as one job array.\n\n"
        "Examples:\n\n"
        "  bnbench claims run --all --profile quick\n\n"
        "  bnbench claims run higher-lr placement --profile confirmatory --jobs 2\n\n"
        "  bnbench claims run placement --profile confirmatory --seeds 200-209\n\n"
        "  bnbench claims run --all --profile confirmatory hydra/launcher=slurm"
    ),
)
def claims_run(
    ctx: typer.Context,
    names: list[str] = typer.Argument(
        None, help="claim names (or --all)", autocompletion=complete_claim
    ),
    all_claims: bool = typer.Option(False, "--all", help="every claim"),
    profile: str = typer.Option("quick", help=PROFILE_HELP),
    seeds: str = typer.Option(
        None, help="seeds of your own instead of the profile's: A-B or A,B,C (a replication)"
    ),
    jobs: int = typer.Option(None, min=1, help="worker processes (default: every core)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count the runs; train nothing"),
    config_dir: str = CONFIG_DIR,
) -> None:
    from bnbench.claims.preregistration import LockFileError, locked_claims, seed_range
    from bnbench.sweep.claim_sweeps import (
        launch_claims,
        plan_claims,
        record_claim_plans,
        report_and_judge,
        train_claims,
    )

    _use_config_dir(config_dir)
    claims = _claims()
    # typer hands `key=value` words to NAMES: they are the sweeps' Hydra overrides
    words = [*(names or []), *ctx.args]
    names, overrides = [w for w in words if "=" not in w], [w for w in words if "=" in w]
    if profile not in PROFILES:
        fail(f"invalid --profile={profile!r}: allowed: {' | '.join(PROFILES)}")
    chosen = list(claims) if all_claims else list(names or [])
    if not chosen:
        fail("name one or more claims, or --all (see `bnbench claims list`)")
    for name in chosen:
        _claim(name)
    # A Hydra launcher (hydra/launcher=slurm and its hydra.launcher.* settings) takes every
    # claim's runs in one batch; the other overrides go to each run.
    launcher = [w for w in overrides if w.startswith(("hydra/launcher=", "hydra.launcher."))]
    overrides = [w for w in overrides if w not in launcher] + _seeds_override(seeds)
    try:
        # the confirmatory profile runs each claim on the seeds its lock names
        locks = locked_claims()
        sweeps = plan_claims([claims[n] for n in chosen], profile, overrides, locks)
    except (ConfigError, LockFileError) as error:
        fail(str(error))

    total = sum(len(s.todo) for s in sweeps)
    console.print(f"profile {profile}: {total} runs to train", highlight=False)
    for sweep in sweeps:
        seeds = {p.config.seed for p in sweep.plan}
        on = f"seed{'s' if len(seeds) > 1 else ''} {seed_range(seeds)}"
        console.print(
            f"{sweep.directory}: {len(sweep.plan)} runs on {on}, {len(sweep.todo)} to train",
            highlight=False,
        )
    if dry_run:
        return
    record_claim_plans(sweeps, profile, overrides)
    for done in (p for sweep in sweeps for p in sweep.plan if p.done):
        tidy_finished(run_dir(done.config))  # a kill right after its summary left its checkpoint
    from bnbench.train.runtime import sigterm_raises

    try:
        with sigterm_raises():  # kill or scancel stop the pool as Ctrl-C does
            if launcher:
                launch_claims(sweeps, launcher)
            else:
                train_claims(sweeps, jobs, log=lambda line: console.print(line, highlight=False))
    except KeyboardInterrupt:
        ignore_stop_signals()
        fail(f"interrupted; to resume, run the same command again: {this_command()}", code=130)
    report_and_judge(sweeps, [claims[n] for n in chosen], console)
    fail_unless_finished(
        {p.run_id: why_unfinished(run_dir(p.config)) for s in sweeps for p in s.plan}
    )


def _seeds_override(seeds: str | None) -> list[str]:
    """--seeds A-B or A,B,C as the sweep's seed override; a bad value fails in one line."""
    if seeds is None:
        return []
    from bnbench.claims.preregistration import parse_seeds
    from bnbench.sweep.overrides import seed_override

    try:
        return [seed_override(parse_seeds(seeds))]
    except ValueError as error:
        fail(str(error))
