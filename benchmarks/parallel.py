"""Parallel sweep speed-up: the same 8 runs sequentially (1 process x all threads) and with
Hydra's joblib launcher (one worker per core x 1 thread), timed end to end.

    python -m benchmarks.parallel [--runs-dir DIR]

Each sweep writes to its own fresh results directory, so nothing is skipped as done.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bnbench.train import available_cores

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
    parser.add_argument("--out", default="results/bench/parallel.json")
    args = parser.parse_args()
    cores = available_cores()
    with tempfile.TemporaryDirectory() as tmp:
        sequential = timed_sweep(Path(tmp) / "seq", [f"threads={cores}"])  # basic launcher
        parallel = timed_sweep(Path(tmp) / "par", ["hydra/launcher=joblib"])
    result = {
        "runs": 8,
        "cores": cores,
        "sequential_s": sequential,
        "parallel_s": parallel,
        "parallel_over_sequential": parallel / sequential,
        "command": " ".join(RUNS),
    }
    print(
        f"8 runs: sequential ({cores} threads) {sequential:.1f} s, joblib ({cores} workers x "
        f"1 thread) {parallel:.1f} s: {parallel / sequential:.2f}x the sequential time"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
