"""`bnbench bench`: bnbench's training loop against the strongest plain loop, the tutorial
DataLoader loop and the limit, in the same interleaved rounds, at 1 thread and every core.

Each round times every loop (bnbench.bench.loops) once, in an order that rotates round by
round, and an fp32 GEMM (bnbench.bench.limit), so the machine's drift hits all alike; the
ratios are taken round by round: to the plain loop, to the tutorial loop, and bnbench's
GFLOP/s (the model's FLOPs per image times images/s) as a fraction of the same round's GEMM.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import torch

from bnbench.bench.limit import gemm_gflops, training_flops
from bnbench.bench.loops import (
    BNBENCH,
    DEFAULT,
    PLAIN,
    TUTORIAL,
    BenchOptions,
    bench_config,
    make_loops,
    warm_up,
)
from bnbench.config.machine import available_cores
from bnbench.config.schema import Config
from bnbench.store.files import write_atomic, write_csv
from bnbench.train.model import build_model
from bnbench.train.runtime import device_name, setup_runtime

REFERENCES = (DEFAULT, PLAIN, TUTORIAL)  # what bnbench's loop is divided by, where present


def thread_counts(opts: BenchOptions) -> list[int]:
    """1 thread (as each sweep worker runs) and every core, or the counts asked for."""
    return list(dict.fromkeys(opts.threads or [1, available_cores()]))


def run_bench(opts: BenchOptions, log=print) -> dict:
    """Time every loop round by round; write bench.csv and bench.json; return the summary."""
    rows, settings = [], []
    for threads in thread_counts(opts):
        # The runner's own process settings (threads, denormals, allocator), for every loop.
        device = setup_runtime(Config(device=opts.device, threads=threads))
        for norm in opts.norms:
            setting_rows, setting = bench_setting(opts, norm, threads, device, log)
            rows += setting_rows
            settings.append(setting)
    summary = {
        "options": dataclasses.asdict(opts),
        "device": device_name(device),
        "torch": torch.__version__,
        "settings": settings,
    }
    write_outputs(Path(opts.out_dir), rows, summary)
    return summary


def bench_setting(opts: BenchOptions, norm: str, threads: int, device: torch.device, log):
    """The rounds at one thread count and norm: their rows and their summary."""
    loops = make_loops(opts, norm, device)
    flops = training_flops(fresh_model(opts, norm, device), opts.batch_size, device)
    warm_up_s = {loop.name: warm_up(loop) for loop in loops}
    rows = []
    for round_ in range(1, opts.rounds + 1):
        gemm = gemm_gflops(device)
        shift = (round_ - 1) % len(loops)  # each loop goes first in turn
        measured = {loop.name: loop.time_steps() for loop in loops[shift:] + loops[:shift]}
        round_rows = [
            round_row(threads, norm, round_, loop.name, measured, flops, gemm) for loop in loops
        ]
        log(round_line(round_rows[0]))
        rows += round_rows
    return rows, summarize_setting(rows, threads, norm, flops, warm_up_s, opts.batch_size)


def fresh_model(opts: BenchOptions, norm: str, device: torch.device) -> torch.nn.Module:
    """The benched CNN, built apart: counting its FLOPs moves BN's running statistics."""
    cfg = bench_config(opts, norm, switches=False)
    return build_model(cfg.model, 1, 10, cfg.seed).to(device)


def round_row(threads, norm, round_, name, measured: dict, flops: float, gemm: float) -> dict:
    """One loop's measurement in one round, with its ratios to the round's references."""
    images_per_s = measured[name]
    gflops = images_per_s * flops / 1e9
    row = {"threads": threads, "norm": norm, "round": round_, "loop": name}
    row |= {"images_per_s": images_per_s, "gflops": gflops, "gemm_gflops": gemm}
    row["fraction_of_gemm"] = gflops / gemm
    for reference in REFERENCES:
        if reference in measured:
            row[f"ratio_to_{reference}"] = images_per_s / measured[reference]
    return row


def round_line(row: dict) -> str:
    """bnbench's loop in one round, in words."""
    ratios = ", ".join(
        f"{row[f'ratio_to_{r}']:.2f}x {r}" for r in REFERENCES if f"ratio_to_{r}" in row
    )
    return (
        f"{row['threads']} thread(s), {row['norm']:>5}, round {row['round']}: bnbench "
        f"{row['images_per_s']:6.0f} img/s = {ratios}; {row['fraction_of_gemm']:.0%} of the "
        f"round's GEMM ({row['gemm_gflops']:.0f} GFLOP/s)"
    )


def summarize_setting(rows: list[dict], threads, norm, flops, warm_up_s, batch: int) -> dict:
    """Per-round values, median and range of each loop's images/s and bnbench's ratios."""
    names = list(dict.fromkeys(r["loop"] for r in rows))
    mine = [r for r in rows if r["loop"] == BNBENCH]
    summary = {"threads": threads, "norm": norm, "flops_per_image": flops}
    summary["images_per_s"] = {
        name: spread([r["images_per_s"] for r in rows if r["loop"] == name]) for name in names
    }
    summary["gemm_gflops"] = spread([r["gemm_gflops"] for r in mine])
    summary["bnbench_gflops"] = spread([r["gflops"] for r in mine])
    summary["fraction_of_gemm"] = spread([r["fraction_of_gemm"] for r in mine])
    for key in (k for k in mine[0] if k.startswith("ratio_to_")):
        summary[key] = spread([r[key] for r in mine])
    summary["warm_up_extra_s"] = warm_up_s  # compile time, for bnbench's loop under compile
    summary["compile_s"] = warm_up_s[BNBENCH]
    if DEFAULT in names:
        summary["steps_to_repay"] = steps_to_repay(summary["images_per_s"], warm_up_s, batch)
    return summary


def steps_to_repay(images: dict, warm_up_s: dict, batch: int) -> float | None:
    """Training steps after which the switches' one-off cost (their warm-up beyond the default
    loop's) is paid back by faster steps; None when their steps are not faster."""
    gain = 1 / images[DEFAULT]["median"] - 1 / images[BNBENCH]["median"]  # seconds per image
    if gain <= 0:
        return None
    return max(0.0, warm_up_s[BNBENCH] - warm_up_s[DEFAULT]) / gain / batch


def spread(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "per_round": values,
    }


def write_outputs(directory: Path, rows: list[dict], summary: dict) -> None:
    """bench.csv: one row per loop and round; bench.json: the summary, with those rows."""
    write_csv(directory / "bench.csv", list(rows[0]), rows)
    write_atomic(directory / "bench.json", json.dumps({**summary, "rows": rows}, indent=2) + "\n")


TABLE_COLUMNS = ["threads", "norm", "bnbench img/s", "x plain", "x tutorial", "% of GEMM"]
TABLE_COLUMNS += ["GFLOP/s", "MFLOP/img", "compile s"]
SWITCH_COLUMNS = ["x default", "repaid after steps"]  # with a speed switch on


def table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The summary as the command's table: medians, with [min-max] over the rounds."""
    switched = f"ratio_to_{DEFAULT}" in summary["settings"][0]
    rows = []
    for s in summary["settings"]:
        row = [str(s["threads"]), s["norm"], _range(s["images_per_s"][BNBENCH], "{:.0f}")]
        row += [_range(s[f"ratio_to_{r}"], "{:.2f}x") for r in (PLAIN, TUTORIAL)]
        row += [_range(s["fraction_of_gemm"], "{:.0%}"), f"{s['bnbench_gflops']['median']:.1f}"]
        row += [f"{s['flops_per_image'] / 1e6:.2f}", f"{s['compile_s']:.1f}"]
        if switched:
            repaid = s["steps_to_repay"]
            row += [_range(s[f"ratio_to_{DEFAULT}"], "{:.2f}x")]
            row += ["never" if repaid is None else f"{repaid:.0f}"]
        rows.append(row)
    return TABLE_COLUMNS + (SWITCH_COLUMNS if switched else []), rows


def _range(values: dict, fmt: str) -> str:
    return (
        f"{fmt.format(values['median'])} [{fmt.format(values['min'])}-{fmt.format(values['max'])}]"
    )
