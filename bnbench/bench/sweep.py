"""`bnbench bench --sweep`: where a claim sweep's wall time goes, the old way and the new.

The mini-sweep is one or more claims' full-profile sweeps at the first `seeds` seeds, by
default claim 9's (3 placement arms x 2 activations x 4 LRs = 24 runs per seed, 2 epochs
each), run twice in fresh directories, one after the other:

    old   what `make claim-NAME` ran before `claims run`, every step its own process:
          `bnbench run -m` (Hydra's joblib launcher) for each of the claim's experiment files,
          with the test set evaluated every epoch and validation on all 5 000 images every
          epoch, then `bnbench report` on each sweep and `bnbench claims verdict` for each
          claim (left out for a claim with extra cells, whose sweep one `run -m` does not
          plan whole: the old way is then charged less than it cost);
    new   `bnbench claims run NAME...` (one pool of warm workers; the reports and verdicts in
          the same process), validation where the claim's config says, the test set at the
          last epoch.

From each run's summary.json (`timing`: setup, train steps, evaluation, probes) and the
sweep's wall time: seconds and fractions of the workers' time (wall x workers), the rest
being outside runs (process start, Hydra, launcher, idle workers, reports and verdicts),
and runs per hour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bnbench.claims.registry import Claim
from bnbench.config.machine import available_cores
from bnbench.store.files import RUNS_DIR, SUMMARY_FILE, write_atomic, write_csv

PARTS = ("setup_s", "train_s", "eval_s", "probes_s")
# The old way's evaluation: what every sweep did before the measures said what they read.
OLD_EVAL = ["train.test_every_epoch=true", "train.val_subset=null", "train.val_every_epochs=1"]
CLI = [sys.executable, "-m", "bnbench.cli"]


def commands(
    root: Path, claims: list[Claim], seeds: int, device: str = "auto"
) -> dict[str, list[list[str]]]:
    """Each way's commands, run one after the other; every run trains on `device`."""
    seed = f"seed={','.join(str(s) for s in range(seeds))}"
    common = ["profile=full", seed, "progress=false", f"device={device}"]
    old, new = root / "old", root / "new"
    sweeps = list(dict.fromkeys(c.experiment for c in claims))  # claims 4 and 10 share one
    # extra cells first, then the main experiments; each joins its sweep's plan.json
    experiments = dict.fromkeys([*(e for c in claims for e in c.extra_cells), *sweeps])
    return {
        "old": [
            *(
                [*CLI, "run", "-m", f"experiment={e}", *common, *OLD_EVAL, f"results_dir={old}"]
                for e in experiments
            ),
            *([*CLI, "report", str(old / sweep)] for sweep in sweeps),
            *([*CLI, "claims", "verdict", c.name, str(old)] for c in claims if not c.extra_cells),
        ],
        "new": [
            [
                *CLI,
                "claims",
                "run",
                *(c.name for c in claims),
                "--profile",
                "full",
                *common,
                f"results_dir={new}",
            ],
        ],
    }


def breakdown(root: Path, wall: float, workers: int) -> dict:
    """Seconds and fractions of the workers' time per part, from the summaries of the runs
    in root's sweeps."""
    parts = dict.fromkeys(PARTS, 0.0)
    runs = 0
    for path in root.glob(f"*/{RUNS_DIR}/*/{SUMMARY_FILE}"):
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


def run_sweep_bench(
    claims: list[Claim], seeds: int, out_dir: str, log=print, device: str = "auto"
) -> dict:
    workers = available_cores()
    results = {"claims": [c.name for c in claims], "seeds": seeds, "device": device}
    with tempfile.TemporaryDirectory(prefix="bnbench-sweep-") as tmp:
        for name, way in commands(Path(tmp), claims, seeds, device).items():
            start = time.perf_counter()
            for command in way:
                log(f"{name}: {' '.join(command[2:])}")
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    tail = "\n".join(done.stderr.strip().splitlines()[-5:])
                    raise RuntimeError(f"{' '.join(command[2:])} exited {done.returncode}:\n{tail}")
            wall = time.perf_counter() - start
            results[name] = breakdown(Path(tmp) / name, wall, workers)
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
