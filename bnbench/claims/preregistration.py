"""The pre-registration lock (conf/preregistration.yaml) and what kind a verdict is.

A claim's protocol is its conf/claims.yaml entry plus the resolved plan of its sweep under a
profile: every planned run's settings but the seed (its main experiment and its own extra
cells). `bnbench claims preregister` writes the protocol's hash, the confirmatory seeds, the
profile, the date and the git commit into the lock file, which is then committed. A verdict
is *confirmatory* only when the claim's entry is unchanged since the lock and every run it
reads was planned under the locked hash, started after the lock, on the locked seeds;
anything else is *exploratory*, with the reasons in words.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from bnbench.config.paths import CONF_DIR, user_config_dirs
from bnbench.store.summary import in_history

LOCK_NAME = "preregistration.yaml"
LOCK_FILE = CONF_DIR / LOCK_NAME  # the shipped claims' lock; a --config-dir holds its own
DEVELOPMENT_SEEDS = range(0, 10)  # the full profile's seeds: every protocol was developed on them
CONFIRMATORY, EXPLORATORY = "confirmatory", "exploratory"
HEADER = """\
# The pre-registration lock, written by `bnbench claims preregister` and committed before
# the confirmatory runs. Per claim: the hash of its protocol (its conf/claims.yaml entry and
# its sweep's resolved plan, every run's settings but the seed), the hash of the entry alone,
# the confirmatory seeds, the profile, when it was locked and at which commit. A verdict is
# confirmatory only on runs planned under that hash, started after `date`, on these seeds
# (docs/claims.md). `history` keeps every entry that --replace superseded, with its date.
"""


@dataclass(frozen=True)
class Lock:
    protocol: str  # sha256 of the entry and the plan's settings
    entry: str  # sha256 of the claims.yaml entry alone
    seeds: list[int]
    profile: str
    date: str  # ISO 8601, UTC, seconds
    commit: str | None  # the checkout's HEAD when the lock was written
    overrides: list[str] = field(default_factory=list)  # Hydra overrides the plan was made with


def digest(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


SHORT = 16  # hex digits of a hash kept: enough to tell protocols apart, short enough to read


def entry_digest(claim) -> str:
    """The hash of a claim's conf/claims.yaml entry as parsed (every field, `why` included)."""
    return digest(entry(claim))[:SHORT]


def protocol_digest(claim, settings: Iterable[dict]) -> str:
    """The hash of a claim's protocol: its entry and its plan's distinct run settings (as the
    run id reads them), each without the seed (the seeds are locked beside it, so a
    replication on other seeds runs the same protocol)."""
    plan = {json.dumps(without_seed(s), sort_keys=True, default=str) for s in settings}
    return digest({"claim": entry(claim), "plan": sorted(plan)})[:SHORT]


def entry(claim) -> dict:
    """The claim's fields, less those at their defaults: a field added to Claim or Measure
    later (at a default) leaves every locked entry's hash as it was."""
    return {k: v for k, v in _declared(claim).items() if v is not None}


def _declared(node):
    """asdict without the fields that hold their dataclass default."""
    if not is_dataclass(node):
        return node
    out = {}
    for f in fields(node):
        value = getattr(node, f.name)
        default = f.default if f.default is not MISSING else MISSING
        if f.default_factory is not MISSING:
            default = f.default_factory()
        if value == default:
            continue
        if isinstance(value, tuple):
            out[f.name] = [_declared(v) for v in value]
        else:
            out[f.name] = _declared(value)
    return out


def without_seed(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != "seed"}


class LockFileError(ValueError):
    """conf/preregistration.yaml cannot be read as a lock file."""


@dataclass
class LockFile:
    claims: dict[str, Lock]
    history: list[dict]  # superseded entries: {claim, replaced, ...the Lock's fields}


def lock_path() -> Path:
    """Where `claims preregister` writes: the last --config-dir given, else conf/ (shipped)."""
    dirs = user_config_dirs()
    return dirs[-1] / LOCK_NAME if dirs else LOCK_FILE


def locked_claims() -> dict[str, Lock]:
    """Every lock in force: the shipped file's, then each config directory's (later wins)."""
    locks: dict[str, Lock] = {}
    for path in [LOCK_FILE, *(d / LOCK_NAME for d in user_config_dirs())]:
        locks |= read_lock(path).claims
    return locks


def read_lock(path: Path = LOCK_FILE) -> LockFile:
    """The lock file (empty when there is none); LockFileError naming the file otherwise."""
    if not path.exists():
        return LockFile({}, [])
    try:
        data = yaml.safe_load(path.read_text()) or {}
        claims = {name: Lock(**fields) for name, fields in (data.get("claims") or {}).items()}
        history = list(data.get("history") or [])
    except (OSError, yaml.YAMLError, TypeError, AttributeError) as error:
        raise LockFileError(f"cannot read the lock file {path}: {error}") from None
    return LockFile(claims, history)


def write_lock(lock: LockFile, path: Path = LOCK_FILE) -> None:
    data = {
        "claims": {name: asdict(entry) for name, entry in sorted(lock.claims.items())},
        "history": lock.history,
    }
    text = HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def add_locks(lock: LockFile, new: dict[str, Lock], replace: bool) -> list[str]:
    """Enter the new locks; the names already locked are refused (returned) unless `replace`,
    which moves each old entry into the history with the date it was replaced."""
    refused = [name for name in new if name in lock.claims and not replace]
    if refused:
        return refused
    for name, entry in new.items():
        if name in lock.claims:
            old = asdict(lock.claims[name])
            lock.history.append({"claim": name, "replaced": entry.date, **old})
        lock.claims[name] = entry
    return []


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def lock_sweeps(
    sweeps, claims: dict, profile: str, commit: str | None, overrides: list[str]
) -> dict[str, Lock]:
    """A lock for each of `claims` from its planned sweep (bnbench.sweep.claim_sweeps): the
    protocol hash its plan was made under, its entry's hash, the seeds its runs use."""
    date, locks = now(), {}
    for sweep in sweeps:
        seed_of = {p.run_id: p.config.seed for p in sweep.plan}
        for name, record in sweep.protocols.items():
            if name in claims:
                seeds = sorted({seed_of[r] for r in record["run_ids"]})
                entry = entry_digest(claims[name])
                lock = Lock(record["hash"], entry, seeds, profile, date, commit, list(overrides))
                locks[name] = lock
    return locks


def lock_text(lock: Lock | None) -> str:
    """A lock in one line, for `claims show`."""
    if lock is None:
        return "not pre-registered (bnbench claims preregister NAME)"
    # a lock whose commit the history lacks cannot be shown by git to precede its runs
    missing = lock.commit is not None and in_history(lock.commit) is False
    note = " (not in this checkout's git history)" if missing else ""
    return (
        f"{lock.date} at commit {str(lock.commit)[:10]}{note}: protocol {lock.protocol}, "
        f"{lock.profile} profile, seeds {seed_range(lock.seeds)}"
    )


def parse_seeds(text: str) -> list[int]:
    """'100-109' or '3,5,8' (or both, comma-separated) -> the seeds; ValueError in one line."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if first < 0 or last < first:
                raise ValueError
            seeds += range(first, last + 1)
    except ValueError:
        raise ValueError(f"invalid --seeds={text!r}: expected A-B or A,B,C (seeds >= 0)") from None
    if len(seeds) < 2:
        raise ValueError(f"invalid --seeds={text!r}: a paired test needs at least 2 seeds")
    return sorted(set(seeds))


# --- what kind a verdict is ----------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    kind: str  # confirmatory | exploratory
    reasons: tuple[str, ...] = ()  # why it is exploratory, in words

    def __str__(self) -> str:
        return self.kind if not self.reasons else f"{self.kind}: {'; '.join(self.reasons)}"


def verdict_kind(
    claim, lock: Lock | None, planned: dict | None, runs: pd.DataFrame, profile: str | None = None
) -> Kind:
    """Confirmatory only when the claim's entry is the locked one, its sweep was planned under
    the locked hash, and every run of its plan was trained under that hash, started after the
    lock, on the locked seeds (and on all of them). `planned`: the plan file's record for the
    claim ({"hash", "run_ids"}); `runs`: the sweep's runs table (run_id, seed, protocols,
    started_at); `profile`: the profile the sweep was planned with."""
    if lock is None:
        return Kind(EXPLORATORY, ("not pre-registered (no entry in conf/preregistration.yaml)",))
    locked_on = lock.date[:10]
    if entry_digest(claim) != lock.entry:
        return Kind(EXPLORATORY, (f"its protocol changed after the lock of {locked_on}",))
    if planned is None:
        return Kind(EXPLORATORY, ("its sweep's plan records no protocol (not `claims run`)",))
    if profile is not None and profile != lock.profile:
        reason = f"run with the {profile} profile; the lock is for the {lock.profile} profile"
        return Kind(EXPLORATORY, (reason,))
    if planned["hash"] != lock.protocol:
        reason = f"its sweep was planned under protocol {planned['hash']}, not the locked one"
        return Kind(EXPLORATORY, (reason,))
    mine = runs[runs["run_id"].isin(set(planned["run_ids"]))]
    reasons = []
    record = f"{claim.name}:{lock.protocol}"
    recorded = mine["protocols"] if "protocols" in mine else pd.Series([None] * len(mine))
    other = [record not in recorded_protocols(value) for value in recorded]
    if any(other):
        reasons.append(f"{sum(other)} runs were trained under another protocol")
    started = pd.to_datetime(
        mine["started_at"] if "started_at" in mine else pd.Series(None, index=mine.index),
        utc=True,
        errors="coerce",
    )
    early = int((~(started >= pd.Timestamp(lock.date))).sum())  # an unknown start counts too
    if early:
        reasons.append(f"{early} runs started before the lock of {locked_on}")
    seeds = set(mine["seed"].astype(int))
    outside = sorted(seeds - set(lock.seeds))
    if outside:
        development = all(s in DEVELOPMENT_SEEDS for s in outside)
        what = "development seeds" if development else "not the locked seeds (a replication)"
        reasons.append(f"seeds {seed_range(outside)} are {what}")
    missing = sorted(set(lock.seeds) - seeds)
    if missing and not outside:
        reasons.append(f"the locked seeds {seed_range(missing)} have no runs")
    return Kind(EXPLORATORY if reasons else CONFIRMATORY, tuple(reasons))


def recorded_protocols(value) -> list[str]:
    """A run's `protocols` as a runs table holds it: a tuple of "claim:hash" (load_runs), its
    JSON text (runs.csv), or missing."""
    try:
        recorded = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return []
    return [v for v in recorded if isinstance(v, str)] if isinstance(recorded, list | tuple) else []


def seed_range(seeds: Iterable[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    seeds, parts = sorted(seeds), []
    for seed in seeds:
        if parts and seed == parts[-1][1] + 1:
            parts[-1][1] = seed
        else:
            parts.append([seed, seed])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in parts)
