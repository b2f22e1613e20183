"""A sweep's plan file, plan.json beside its runs/: which runs it was launched with.

Written when a sweep is launched (`bnbench run -m`, `bnbench claims run`), read when it is
judged or reported, so that neither needs Hydra, the config files or torch: a sweep copied
from a cluster is judged from its run files and this file alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bnbench.store.files import (
    FINISHED,
    TEMP_STALE_S,
    remove_partial_writes,
    run_path,
    run_status,
    write_json,
)

PLAN_FILE = "plan.json"


@dataclass
class Plan:
    profile: str | None  # quick | full, or None for a sweep run without a profile
    overrides: list[str]  # the command line's overrides (where it ran left out)
    run_ids: list[str]  # every planned run, in launch order
    # per claim judged on the sweep: the hash of the protocol it was planned under and the
    # runs of the claim's own plan ({claim: {"hash": ..., "run_ids": [...]}}); claims run only
    protocols: dict = field(default_factory=dict)

    def finished(self, sweep: Path) -> list[str]:
        """The planned runs that are finished (completed or diverged) in sweep."""
        return [r for r in self.run_ids if run_status(run_path(sweep, r)) in FINISHED]


def write_plan(sweep: Path, plan: Plan) -> None:
    """Merge the plan into the sweep's plan.json: the run ids of every launch into the sweep,
    the latest launch's profile and overrides, and any other key a writer added kept. Two
    launches writing at once take turns (a lock on the sweep directory), so both are listed."""
    sweep = Path(sweep)
    sweep.mkdir(parents=True, exist_ok=True)
    with _locked(sweep):
        remove_partial_writes(sweep, TEMP_STALE_S)  # a killed writer's temporary file
        write_json(sweep / PLAN_FILE, _merged(_raw(sweep / PLAN_FILE), asdict(plan)))


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory itself (no lock file to leave behind); where the
    file system has no flock, unlocked."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _merged(old: dict, new: dict) -> dict:
    """new over old; mappings (one entry per claim, say) merged key by key, run ids joined."""
    merged = {**old, **new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            merged[key] = {**old[key], **value}
    kept = old["run_ids"] if _valid(old) else []
    merged["run_ids"] = list(dict.fromkeys([*kept, *new["run_ids"]]))
    return merged


def _raw(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_plans(
    runs: Iterable[tuple[Path, str]], profile: str | None, overrides, protocols=None
) -> None:
    """One plan.json per sweep directory that the (sweep dir, run id) pairs fall in, with the
    launch's overrides minus where it ran (the results may move), and the claims' protocols
    ({sweep dir: {claim: {"hash", "run_ids"}}})."""
    kept = [o for o in overrides if not o.startswith(("results_dir=", "hydra"))]
    by_sweep: dict[Path, list[str]] = {}
    for sweep, run_id in runs:
        by_sweep.setdefault(Path(sweep), []).append(run_id)
    for sweep, run_ids in by_sweep.items():
        write_plan(sweep, Plan(profile, kept, run_ids, (protocols or {}).get(sweep, {})))


def read_plan(sweep: Path) -> Plan | None:
    """The sweep's plan, or None when it has none; an unreadable one is named in a warning."""
    path = Path(sweep) / PLAN_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring unreadable {path} ({error.__class__.__name__})", stacklevel=2)
        return None
    if not _valid(data):
        warnings.warn(f"ignoring unreadable {path} (malformed: {SCHEMA})", stacklevel=2)
        return None
    protocols = data.get("protocols")
    protocols = protocols if isinstance(protocols, dict) else {}  # written by claims run only
    return Plan(data["profile"], data["overrides"], data["run_ids"], protocols)


SCHEMA = "a JSON object with profile (a string or null), overrides and run_ids (lists of strings)"


def _valid(data) -> bool:
    def strings(value) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    return (
        isinstance(data, dict)
        and isinstance(data.get("profile"), (str, type(None)))
        and strings(data.get("overrides"))
        and strings(data.get("run_ids"))
    )
