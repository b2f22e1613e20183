"""Parallel sweep speed-up: the same 8 runs sequentially (1 process x all threads) and with
Hydra's joblib launcher (one worker per core x 1 thread), timed end to end.

    python -m bnbench.bench.parallel [--repeats N] [--out FILE]

The two sweeps alternate for N repeats (the order flips each repeat), because a shared
VM's speed drifts by 10% from minute to minute; the figure is the median of the per-repeat
ratios. Each sweep writes to its own fresh results directory, so nothing is skipped as done.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bnbench.config.machine import available_cores

# 8 runs the size of the full claim profile's (5 000 images, half-width CNN, 4 epochs):
# placement {pre, post} x lr {0.01, 0.1} x seed {0, 1}. Much shorter runs gain less, since
# each worker pays torch's import (about 9 s) before its first run.
RUNS = [
    "-m",
    "experiment=claim_placement",
    "dataset.train_subset=5000",
    "model.widths=[16,32,64]",
    "seed=0,1",
]


def timed_sweep(results_dir: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "bnbench.cli", "run", *RUNS, f"results_dir={results_dir}", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results/bench/parallel.json")
    args = parser.parse_args()
    cores = available_cores()
    sweeps = {
        "sequential": [f"threads={cores}"],  # the basic launcher, one process
        "parallel": ["hydra/launcher=joblib"],
    }
    times: dict[str, list[float]] = {name: [] for name in sweeps}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = list(sweeps) if repeat % 2 == 0 else list(sweeps)[::-1]
            for name in order:
                times[name].append(timed_sweep(Path(tmp) / f"{name}{repeat}", sweeps[name]))
            ratio = times["parallel"][-1] / times["sequential"][-1]
            print(
                f"repeat {repeat + 1}: sequential {times['sequential'][-1]:.1f} s, "
                f"joblib {times['parallel'][-1]:.1f} s, {ratio:.2f}x",
                flush=True,
            )
    ratios = [p / s for p, s in zip(times["parallel"], times["sequential"], strict=True)]
    result = {
        "runs": 8,
        "cores": cores,
        "sequential_s": times["sequential"],
        "parallel_s": times["parallel"],
        "ratio_per_repeat": ratios,
        "parallel_over_sequential": statistics.median(ratios),
        "command": " ".join(RUNS),
    }
    print(
        f"8 runs: sequential ({cores} threads) {statistics.median(times['sequential']):.1f} s, "
        f"joblib ({cores} workers x 1 thread) {statistics.median(times['parallel']):.1f} s "
        f"(medians of {args.repeats}); median ratio {result['parallel_over_sequential']:.2f}x"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
