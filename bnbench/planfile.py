"""A sweep's plan file, plan.json beside its runs/: which runs it was launched with.

Written when a sweep is launched (`bnbench run -m`, `bnbench claims run`), read when it is
judged or reported, so that neither needs Hydra, the config files or torch: a sweep copied
from a cluster is judged from its run files and this file alone.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bnbench.store import FINISHED, run_path, run_status, write_json

PLAN_FILE = "plan.json"


@dataclass
class Plan:
    profile: str | None  # quick | full, or None for a sweep run without a profile
    overrides: list[str]  # the command line's overrides (where it ran left out)
    run_ids: list[str]  # every planned run, in launch order

    def finished(self, sweep: Path) -> list[str]:
        """The planned runs that are finished (completed or diverged) in sweep."""
        return [r for r in self.run_ids if run_status(run_path(sweep, r)) in FINISHED]


def write_plan(sweep: Path, plan: Plan) -> None:
    write_json(Path(sweep) / PLAN_FILE, asdict(plan))


def record_plans(runs: Iterable[tuple[Path, str]], profile: str | None, overrides) -> None:
    """One plan.json per sweep directory that the (sweep dir, run id) pairs fall in, with the
    launch's overrides minus where it ran (the results may move)."""
    kept = [o for o in overrides if not o.startswith(("results_dir=", "hydra"))]
    by_sweep: dict[Path, list[str]] = {}
    for sweep, run_id in runs:
        by_sweep.setdefault(Path(sweep), []).append(run_id)
    for sweep, run_ids in by_sweep.items():
        write_plan(sweep, Plan(profile, kept, run_ids))


def read_plan(sweep: Path) -> Plan | None:
    """The sweep's plan, or None when it has none; an unreadable one is named in a warning."""
    path = Path(sweep) / PLAN_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return Plan(data["profile"], list(data["overrides"]), list(data["run_ids"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        warnings.warn(f"ignoring unreadable {path} ({error.__class__.__name__})", stacklevel=2)
        return None
