"""`bnbench replay PATH...`: finished runs trained again by this checkout and compared with
their records (bnbench.train.replay), so a reader can check a committed result without
trusting the commit it says it came from."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import typer

from bnbench.cli.terminal import console, fail
from bnbench.store.files import CONFIG_FILE, is_finished, recorded_seconds
from bnbench.store.reader import find_run_dirs

replay_app = typer.Typer()


@replay_app.command(
    help=(
        "Train finished runs again from their config.yaml, in a scratch directory, with the "
        "thread count each recorded, and say whether every recorded value (metrics, steps, "
        "validations, probes; timings aside) comes out identical. PATH: run directories, "
        "sweeps or a results root. Exit 0 only when every replayed run is identical.\n\n"
        "Example: bnbench replay results/reference --sample 5"
    )
)
def replay(
    paths: list[str] = typer.Argument(..., help="Run directories, sweeps or results roots."),
    sample: int = typer.Option(
        None, "--sample", min=1, help="Replay this many runs drawn at random; default: all."
    ),
    seed: int = typer.Option(0, "--seed", help="The random draw of --sample."),
) -> None:
    from bnbench.train.replay import replay as replay_run

    finished = finished_runs(paths)
    if not finished:
        fail(f"no finished runs under {' '.join(paths)}")
    count = min(sample or len(finished), len(finished))
    chosen = sorted(random.Random(seed).sample(finished, count))
    recorded_s = sum(recorded_seconds(d) or 0.0 for d in chosen)
    console.print(
        f"replaying {len(chosen)} of {len(finished)} finished run(s); they trained in "
        f"{recorded_s / 60:.1f} min when recorded"
    )
    identical = 0
    with tempfile.TemporaryDirectory(prefix="bnbench-replay-") as scratch:
        for directory in chosen:
            result = replay_run(directory, Path(scratch))
            identical += result.identical
            console.print(verdict_line(result), markup=False, highlight=False)
    console.print(f"{identical} of {len(chosen)} replayed run(s) identical")
    if identical < len(chosen):
        raise typer.Exit(1)


def finished_runs(paths: list[str]) -> list[Path]:
    """Finished run directories under PATHS, each once (a path may be a run directory)."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            fail(f"no such path: {path}")
        found |= {path} if (path / CONFIG_FILE).exists() else set(find_run_dirs(path))
    return sorted(d for d in found if is_finished(d))


def verdict_line(result) -> str:
    name = f"{result.original.parent.parent.name}/{result.original.name}"
    rows = ", ".join(f"{file} {n} rows" for file, n in result.compared.items())
    caveats = f" [{'; '.join(result.caveats)}]" if result.caveats else ""
    if result.identical:
        return f"{name}: identical ({rows}){caveats}"
    return f"{name}: {result.status}, DIFFERENT: {'; '.join(result.differences)}{caveats}"
