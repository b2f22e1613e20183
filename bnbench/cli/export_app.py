"""`bnbench export tensorboard|mlflow RESULTS_DIR`: runs made earlier, in a dashboard's
format, through the writers `logger=` uses while training (bnbench.train.loggers)."""

from __future__ import annotations

from pathlib import Path

import typer

from bnbench.cli.terminal import console, err_console, fail
from bnbench.config.schema import LOGGERS

export_app = typer.Typer()
DASHBOARDS = tuple(kind for kind in LOGGERS if kind != "none")


@export_app.command(
    help=(
        "Runs made earlier, in a dashboard's format (what logger= writes while training).\n\n"
        "The finished runs under RESULTS_DIR (a sweep directory or a results root): "
        "TensorBoard event files in each run directory's tensorboard/, or one MLflow run per "
        "run (experiment = its sweep) in RESULTS_ROOT/mlflow.db or --tracking-uri. Exporting "
        "again replaces what an earlier export wrote.\n\n"
        "Example: bnbench export tensorboard results/default && "
        "tensorboard --logdir results/default\n\n"
        "Example: bnbench export mlflow results && "
        "mlflow ui --backend-store-uri sqlite:///results/mlflow.db"
    )
)
def export(
    dashboard: str = typer.Argument(
        ..., help="tensorboard | mlflow", autocompletion=lambda: list(DASHBOARDS)
    ),
    results_dir: str = typer.Argument("results"),
    tracking_uri: str = typer.Option(
        None, "--tracking-uri", help="mlflow: the tracking store (sqlite:///F.db, http://HOST)."
    ),
) -> None:
    from bnbench.store.reader import CorruptRun, find_run_dirs, read_run
    from bnbench.train.loggers import export_run, missing_package

    if dashboard not in DASHBOARDS:
        fail(f"invalid DASHBOARD={dashboard!r}: allowed: {' | '.join(DASHBOARDS)}")
    if missing_package(dashboard):
        fail(missing_package(dashboard))
    directories = find_run_dirs(results_dir) if Path(results_dir).is_dir() else []
    if not directories:
        fail(f"invalid RESULTS_DIR={results_dir!r}: no run directories (runs/<run_id>/) in it")
    exported = 0
    for directory in directories:
        try:
            read_run(directory)  # finished, and its files agree with each other
            export_run(dashboard, directory, tracking_uri)
            exported += 1
        except CorruptRun as why:
            err_console.print(f"warning: skipped {directory}: {why}", markup=False)
    console.print(
        f"exported {exported} of {len(directories)} run(s) from {results_dir} to {dashboard}",
        markup=False,
        highlight=False,
    )
