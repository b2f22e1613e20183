"""`bnbench data`, `bnbench report` and `bnbench bench`: the commands that train no sweep.

They check a dataset, rebuild reports from the run files, and time the training loop;
bnbench.cli.main adds them beside `run` and `claims`.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from bnbench.cli.terminal import console, err_console, fail
from bnbench.config.schema import DATASETS, DEVICES, NORMS, DatasetConfig
from bnbench.store.files import DiskFull, check_writable

tools_app = typer.Typer()


@tools_app.command(
    help=(
        "Make sure a dataset is available and say where it was found, or exactly how to "
        "get it. DATASET: fashion_mnist (default), mnist, cifar10, synthetic.\n\n"
        "Example: bnbench data fashion_mnist --data-dir ~/datasets"
    )
)
def data(
    dataset: str = typer.Argument("fashion_mnist"),
    data_dir: str = typer.Option(None, "--data-dir", help="Directory searched first."),
) -> None:
    from bnbench.train.data import DatasetNotFound, load_splits

    if dataset not in DATASETS:
        fail(f"invalid dataset={dataset!r}: allowed: {' | '.join(DATASETS)}")
    cfg = DatasetConfig(name=dataset, data_dir=data_dir, val_size=0)
    try:
        splits = load_splits(cfg)
    except DatasetNotFound as error:
        fail(str(error), code=1)
    shape = "x".join(str(s) for s in splits.train_x.shape[1:])
    console.print(
        f"{dataset}: found in {splits.source}; {len(splits.train_y)} train + "
        f"{len(splits.test_y)} test images of {shape}, {splits.num_classes} classes"
    )


@tools_app.command(
    help=(
        "Rebuild runs.csv, curves.csv, every figure, REPORT.md and report.html from the run "
        "files alone (no training). RESULTS_DIR: a sweep directory (results/default), a "
        "results root holding several sweeps, or a copy brought back from a cluster.\n\n"
        "Example: bnbench report results/default\n\n"
        "Example: bnbench report /read-only/results --out reports/cluster"
    )
)
def report(
    results_dir: str = typer.Argument("results/default"),
    out: str = typer.Option(
        None, "--out", help="Write everything here instead of into RESULTS_DIR (read-only results)."
    ),
) -> None:
    import warnings

    from bnbench.report.build import build_report
    from bnbench.report.result import NoRunsError, headline_text
    from bnbench.store.reader import SkippedRunWarning

    check_report_target(results_dir, out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", SkippedRunWarning)  # listed below, once each
        try:
            began = time.monotonic()

            def told(line: str) -> None:  # a results root: one line per sweep, on stderr
                elapsed = time.monotonic() - began
                err_console.print(f"report {line} ({elapsed:.0f} s)", markup=False, highlight=False)

            result = build_report(results_dir, out, log=told)
        except NoRunsError as error:
            fail(str(error), code=1)
        except DiskFull as error:  # written whole or not at all: the old report stands
            fail(
                f"{error.strerror}; the report was not updated: free some space and run "
                "the same command again",
                code=1,
            )
        except OSError as error:  # a sweep dir without write access
            fail(f"cannot write {error.filename}: {error.strerror or error}", code=1)
    lines = [f"skipped {run}: {reason}" for run, reason in result.skipped] + result.warnings
    lines += [str(w.message) for w in caught]  # e.g. an unreadable plan.json, named in it
    for line in dict.fromkeys(lines):
        err_console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"read {result.n_runs} run(s), skipped {len(result.skipped)}; "
        f"{len(result.figures) // 2} figure(s)\n{figure_lines(result.figures)}"
        f"report: {result.report_md}\n"
        f"        {result.report_html}\nopen:   {Path(result.report_html).resolve().as_uri()}",
        markup=False,
        highlight=False,
    )
    console.print(headline_text(result), markup=False, highlight=False)


def figure_lines(figures: list[Path]) -> str:
    """Where the figures are: one line per directory, naming its figures."""
    by_directory: dict[Path, list[str]] = {}
    for png in (Path(f) for f in figures if Path(f).suffix == ".png"):
        by_directory.setdefault(png.parent, []).append(png.stem)
    return "".join(f"figures: {d}/ ({', '.join(names)})\n" for d, names in by_directory.items())


def check_report_target(results_dir: str, out: str | None) -> None:
    """Refuse a report that could not be written, before reading any run."""
    from bnbench.analysis.tables import output_dir

    if not Path(results_dir).is_dir():
        return  # build_report says the directory is missing
    target = Path(out) if out is not None else output_dir(results_dir)
    try:
        check_writable(target)
    except OSError as error:
        key, hint = ("--out", "") if out is not None else ("results_dir", "; use --out DIR")
        fail(f"invalid {key}={str(target)!r}: not writable ({error.strerror or error}){hint}")


@tools_app.command(
    help=(
        "Training throughput of bnbench's loop against, in the same interleaved rounds, "
        "(a) the strongest plain PyTorch loop (in-memory tensors, index slices of a "
        "permutation, channels_last), (b) the tutorial loop (torchvision Dataset + "
        "DataLoader) and (c) the limit: an fp32 GEMM timed in each round and the model's "
        "FLOPs per image. Same model, optimizer and batch size; at 1 thread and every core. "
        "Prints the ratios per round, their median and range; writes bench.csv (one row per "
        "loop and round) and bench.json.\n\n"
        "--sweep instead times claims' full-profile sweeps (claim 9's by default; --claim, "
        "--seeds) the old way (a process per step, every epoch evaluated on everything) and "
        "the new (bnbench claims run), and says where the workers' time went: train steps, "
        "evaluation, probes, set-up, outside runs (every run on --device); writes "
        "bench_sweep.csv and .json.\n\n"
        "Example: bnbench bench --norm batch --rounds 7\n\n"
        "Example: bnbench bench --batch-size 2 --widths 16,32,64 --threads 1 --fused-optimizer"
    )
)
def bench(
    batch_size: int = typer.Option(128, min=1),
    device: str = typer.Option("cpu", help="cpu | cuda | auto"),
    threads: list[int] = typer.Option(
        None, min=1, help="torch threads (repeat; default: 1 and every core)"
    ),
    norm: list[str] = typer.Option(["batch", "none"], help="repeat to bench several norms"),
    widths: str = typer.Option("32,64,128", help="channels per stage, e.g. 16,32,64"),
    channels_last: bool = typer.Option(True, help="bnbench's loop in channels_last"),
    fused_optimizer: bool = typer.Option(
        False, "--fused-optimizer", help="bnbench's loop with train.fused_optimizer"
    ),
    compile: bool = typer.Option(False, "--compile", help="bnbench's loop with train.compile"),
    rounds: int = typer.Option(5, min=1),
    steps: int = typer.Option(30, min=1, help="training steps per timed measurement"),
    quick: bool = typer.Option(False, "--quick", help="2 rounds of 2 steps, 1 thread: a check"),
    data_dir: str = typer.Option(
        None, "--data-dir", help="where Fashion-MNIST is looked for first"
    ),
    out: str = typer.Option("results/bench", help="directory for bench.csv and bench.json"),
    sweep: bool = typer.Option(
        False, "--sweep", help="where a claim sweep's time goes, the old way and the new"
    ),
    seeds: int = typer.Option(1, min=1, help="--sweep: seeds of the mini-sweep"),
    claim: list[str] = typer.Option(
        ["placement"], help="--sweep: a claim whose full-profile sweep it times (repeat; all)"
    ),
) -> None:
    from bnbench.bench import loops
    from bnbench.bench.throughput import run_bench, table

    if device not in DEVICES:
        fail(f"invalid --device={device!r}: allowed: {' | '.join(DEVICES)}")
    if sweep:
        return sweep_bench(claim, seeds, out, device)

    for value in norm:
        if value not in NORMS:
            fail(f"invalid --norm={value!r}: allowed: {' | '.join(NORMS)}")
    try:
        width_list = [int(w) for w in widths.split(",")]
    except ValueError:
        width_list = []
    if not width_list or min(width_list) < 1:
        fail(f"invalid --widths={widths!r}: positive integers separated by commas")
    opts = loops.BenchOptions(
        batch_size=batch_size,
        device=device,
        threads=threads or None,
        norms=norm,
        widths=width_list,
        channels_last=channels_last,
        fused_optimizer=fused_optimizer,
        compile=compile,
        rounds=rounds,
        steps=steps,
        out_dir=out,
        data_dir=data_dir,
    )
    opts = loops.quick(opts) if quick else opts
    summary = run_bench(opts, log=_plain_line)
    columns, rows = table(summary)
    shown = Table(title=f"bnbench bench: {summary['device']}")
    for column in columns:
        shown.add_column(column, justify="right")
    for row in rows:
        shown.add_row(*row)
    console.print(shown)
    told = f"median [min-max] over {opts.rounds} rounds; wrote {out}/bench.json"
    console.print(told, markup=False)


def sweep_bench(names: list[str], seeds: int, out: str, device: str) -> None:
    """`bnbench bench --sweep`: the table of where the mini-sweep's time goes."""
    from bnbench.bench.sweep import run_sweep_bench
    from bnbench.claims.registry import ClaimFileError, UnknownClaim, get_claim, load_claims

    try:
        if "all" in names:
            claims = list(load_claims().values())
        else:
            claims = [get_claim(name) for name in dict.fromkeys(names)]
    except (ClaimFileError, UnknownClaim) as error:
        fail(str(error))
    try:
        result = run_sweep_bench(claims, seeds, out, log=_plain_line, device=device)
    except RuntimeError as error:
        fail(f"bench --sweep stopped: {error}")
    table = Table(title="bnbench bench --sweep: share of the workers' time (wall x workers)")
    for column in ["", "runs", "wall s", "runs/h", "train", "eval", "probes", "setup", "outside"]:
        table.add_column(column, justify="right")
    for way in ("old", "new"):
        r, f = result[way], result[way]["fractions"]
        table.add_row(
            way,
            str(r["runs"]),
            f"{r['wall_s']:.0f}",
            f"{r['runs_per_hour']:.0f}",
            *(f"{f[k]:.0%}" for k in ("train", "eval", "probes", "setup", "outside")),
        )
    console.print(table)
    console.print(f"new / old wall time: {result['new_over_old_wall']:.2f}x; wrote {out}/")


def _plain_line(line: str) -> None:
    console.print(line, markup=False)
