"""`bnbench bench --sweep`: where a claim sweep's wall time goes, the old way and the new.

The mini-sweep is claim 9's (3 placement arms x 2 activations x 4 LRs = 24 runs per seed) at
the full profile's data size, run twice in fresh directories, one after the other:

    old   what `make claim-placement` ran before `claims run`: `bnbench run -m` (Hydra's
          joblib launcher) with the test set evaluated every epoch and validation on all
          5 000 images, then `bnbench report` and `bnbench claims verdict`, each its own
          process;
    new   `bnbench claims run` (one pool of warm workers; the report and verdict in the same
          process), validation where the claim's config says, the test set at the last epoch.

From each run's summary.json (`timing`: setup, train steps, evaluation, probes) and the
sweep's wall time: seconds and fractions of the workers' time (wall x workers), the rest
being outside runs (process start, Hydra, launcher, idle workers), and runs per hour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bnbench.machine import available_cores
from bnbench.store import RUNS_DIR, SUMMARY_FILE, write_atomic, write_csv

PARTS = ("setup_s", "train_s", "eval_s", "probes_s")
SWEEP = "claim_placement"
OLD_EVAL = ["train.test_every_epoch=true", "train.val_subset=null", "train.val_every_epochs=1"]


def commands(root: Path, seeds: int) -> dict[str, list[list[str]]]:
    """Each way's commands, run one after the other."""
    seed = f"seed={','.join(str(s) for s in range(seeds))}"
    cli = [sys.executable, "-m", "bnbench.cli"]
    common = ["profile=full", seed, "progress=false"]
    old, new = root / "old", root / "new"
    return {
        "old": [
            [
                *cli,
                "run",
                "-m",
                "experiment=claim_placement",
                *common,
                *OLD_EVAL,
                f"results_dir={old}",
            ],
            [*cli, "report", str(old / SWEEP)],
            [*cli, "claims", "verdict", "placement", str(old)],
        ],
        "new": [
            [
                *cli,
                "claims",
                "run",
                "placement",
                "--profile",
                "full",
                *common,
                f"results_dir={new}",
            ],
        ],
    }


def breakdown(sweep: Path, wall: float, workers: int) -> dict:
    """Seconds and fractions of the workers' time per part, from the runs' summaries."""
    parts = dict.fromkeys(PARTS, 0.0)
    runs = 0
    for path in sweep.glob(f"{RUNS_DIR}/*/{SUMMARY_FILE}"):
        timing = json.loads(path.read_text()).get("timing") or {}
        runs += 1
        for key in PARTS:
            parts[key] += timing.get(key, 0.0)
    budget = wall * workers
    parts["outside_s"] = max(0.0, budget - sum(parts.values()))
    fractions = {k.removesuffix("_s"): v / budget for k, v in parts.items()}
    return {
        "runs": runs,
        "wall_s": wall,
        "workers": workers,
        "runs_per_hour": 3600 * runs / wall,
        "seconds": parts,
        "fractions": fractions,
    }


def run_sweep_bench(seeds: int, out_dir: str, log=print) -> dict:
    workers = available_cores()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bnbench-sweep-") as tmp:
        for name, way in commands(Path(tmp), seeds).items():
            start = time.perf_counter()
            for command in way:
                log(f"{name}: {' '.join(command[2:])}")
                subprocess.run(command, check=True, capture_output=True, text=True)
            wall = time.perf_counter() - start
            results[name] = breakdown(Path(tmp) / name / SWEEP, wall, workers)
            log(f"{name}: {results[name]['runs']} runs in {wall:.0f} s")
    results["new_over_old_wall"] = results["new"]["wall_s"] / results["old"]["wall_s"]
    out = Path(out_dir)
    write_atomic(out / "bench_sweep.json", json.dumps(results, indent=2) + "\n")
    rows = [
        {
            "way": way,
            "part": part.removesuffix("_s"),
            "seconds": seconds,
            "fraction": results[way]["fractions"][part.removesuffix("_s")],
        }
        for way in ("old", "new")
        for part, seconds in results[way]["seconds"].items()
    ]
    write_csv(out / "bench_sweep.csv", ["way", "part", "seconds", "fraction"], rows)
    return results
