"""`bnbench claims`: the claims on trial, their protocols, their sweeps and their verdicts."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
from rich.table import Table

from bnbench.terminal import console, fail

PROFILES = ("quick", "full")

claims_app = typer.Typer(
    help=(
        "The ten claims about batch norm: list them, show one, run their sweeps, judge them.\n\n"
        "Examples:\n\n"
        "  bnbench claims list\n\n"
        "  bnbench claims show higher-lr\n\n"
        "  bnbench claims run --all --profile quick\n\n"
        "  bnbench claims verdict higher-lr results/quick"
    ),
    no_args_is_help=True,
)


CONFIG_DIR = typer.Option(
    None, "--config-dir", "-cd", help="Your config directory: its claims.yaml adds claims."
)


def _use_config_dir(directory: str | None) -> None:
    from bnbench.paths import use_config_dir

    try:
        use_config_dir(directory)
    except ValueError as error:
        fail(str(error))


def _claims() -> dict:
    from bnbench.claims import ClaimFileError, load_claims

    try:
        return load_claims()
    except ClaimFileError as error:
        fail(str(error))


def _claim(name: str):
    claims = _claims()
    if name not in claims:
        fail(f"unknown claim {name!r}; known: {', '.join(claims)}")
    return claims[name]


@claims_app.command("list", help="Every claim: number, name, the sentence, its primary measure.")
def claims_list(config_dir: str = CONFIG_DIR) -> None:
    from bnbench.claims import claim_origins
    from bnbench.paths import CLAIMS_FILE

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
def claims_show(name: str, config_dir: str = CONFIG_DIR) -> None:
    _use_config_dir(config_dir)
    claim = _claim(name)
    p = claim.primary
    rows = [
        ("claim", f"{claim.number}. {claim.name}"),
        ("text", claim.text),
        ("source", f"../shared/seeds/{claim.source}.txt"),
        ("sweep", f"experiment/{claim.experiment}.yaml in the config search path"),
        *[("+ cells", f"experiment/{e}.yaml (not under quick)") for e in claim.extra_cells],
        ("primary", f"{p.label}: {_arms(p)}; claimed {p.direction}, delta {p.delta:g} {p.unit}"),
        ("why", claim.why),
        *[("secondary", f"{m.label} [{m.unit}]") for m in claim.secondary],
        ("anchor", claim.anchor),
        ("reproduce", f"bnbench claims run {claim.name} --profile full  (or quick)"),
    ]
    for label, value in rows:
        console.print(f"[bold]{label:>9}[/bold]  {value}", highlight=False)


def _arms(measure) -> str:
    def text(arm: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in arm.items())

    return f"{text(measure.treatment)} - {text(measure.control)}"


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
    name: str,
    results_dir: str = typer.Argument("results/full", help="results root holding claim_* sweeps"),
    config_dir: str = CONFIG_DIR,
) -> None:
    from bnbench.claims import verdict
    from bnbench.verdicts import primary_row, secondary_rows

    _use_config_dir(config_dir)
    claim = _claim(name)
    if not Path(results_dir).is_dir():
        fail(f"no results directory at {results_dir}", code=1)
    result = verdict(claim.name, results_dir)
    console.print(result.sentence, markup=False, highlight=False)
    if result.status == "incomplete":
        raise typer.Exit(3)
    table = Table(title=f"claim {claim.number}: {claim.name} ({result.profile} profile)")
    columns = ["measure", "effect [95% CI]", "n", "p", "p (Holm)", "delta", "outcome"]
    for column in columns:
        table.add_column(column)
    table.add_row(*primary_row(result))
    for row in secondary_rows(result):
        table.add_row(*row)
    console.print(table)


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
        "  bnbench claims run higher-lr placement --profile full --jobs 2\n\n"
        "  bnbench claims run --all --profile full hydra/launcher=slurm"
    ),
)
def claims_run(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="claim names (or --all)"),
    all_claims: bool = typer.Option(False, "--all", help="every claim"),
    profile: str = typer.Option("full", help="quick | full"),
    jobs: int = typer.Option(None, min=1, help="worker processes (default: every core)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count the runs; train nothing"),
    config_dir: str = CONFIG_DIR,
) -> None:
    from bnbench.config import ConfigError
    from bnbench.sweeps import (
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
    overrides = [w for w in overrides if w not in launcher]
    try:
        sweeps = plan_claims([claims[n] for n in chosen], profile, overrides)
    except ConfigError as error:
        fail(str(error))
    for sweep in sweeps:
        console.print(
            f"{sweep.directory}: {len(sweep.plan)} runs, {len(sweep.todo)} to train",
            highlight=False,
        )
    if dry_run:
        return
    record_claim_plans(sweeps, profile, overrides)
    from bnbench.runtime import sigterm_raises

    try:
        with sigterm_raises():  # kill or scancel stop the pool as Ctrl-C does
            if launcher:
                launch_claims(sweeps, launcher)
            else:
                train_claims(sweeps, jobs, log=lambda line: console.print(line, highlight=False))
    except KeyboardInterrupt:
        fail("interrupted; to resume, run the same command again", code=130)
    report_and_judge(sweeps, [claims[n] for n in chosen], console)
