"""A run's claim.json: one process trains a run at a time, even across sweeps and hosts.

A process claims a run by creating runs/<id>/claim.json with O_CREAT | O_EXCL, which only
one creator can win. It touches the file's mtime while it trains (the heartbeat) and
deletes it when the run ends. A claim left by a process that died is taken over: at once
when its pid is gone from this host, else once its heartbeat is older than STALE_AFTER_S.
Takeovers hold claim.json.takeover (also created exclusively), so two processes that find
the same stale claim cannot both remove it and then each remove the other's new claim.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bnbench.store import CLAIM_FILE, FULL, disk_full

HEARTBEAT_S = 30.0  # a training process touches its claim at least this often
STALE_AFTER_S = 600.0  # a claim untouched this long belongs to a lost process (or a hung one)
TAKEOVER_STALE_S = 60.0  # a takeover takes milliseconds; an older lock's process died in it


class ClaimLost(Exception):
    """Another process took this run's claim over (ours looked stale); it trains the run now."""


@dataclass
class RunHold:
    """This process's hold on one run directory."""

    path: Path
    token: str  # tells our claim.json from a newer one (inode numbers are reused at once)
    started_at: str
    last_beat: float  # time.monotonic() of the last heartbeat

    def beat(self, force: bool = False) -> None:
        """Touch the claim when HEARTBEAT_S has passed; raise ClaimLost if it is no longer ours."""
        now = time.monotonic()
        if not force and now - self.last_beat < HEARTBEAT_S:
            return
        self.last_beat = now
        if not self.held():
            raise ClaimLost(f"{self.path} was taken over by another process")
        os.utime(self.path)

    def held(self) -> bool:
        return read_claim(self.path.parent).get("token") == self.token

    def release(self) -> None:
        if self.held():
            self.path.unlink(missing_ok=True)


def claim_run(directory: Path) -> RunHold | None:
    """Claim the run for this process; None while another live process holds it (or is
    taking over its stale claim). Of several processes that find the same stale claim,
    exactly one gets the run."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CLAIM_FILE
    for _ in range(5):  # each retry follows a lost race; five in a row means a busy run
        claim = _create_claim(path)
        if claim is not None:
            return claim
        holder = _holder(path)
        if holder is None:
            continue  # released between our create and our look: try again
        version, live = holder
        if live or not _remove_stale(path, version):
            return None
    return None


def read_claim(directory: Path) -> dict:
    """Who holds the run (host, pid, started_at, token), or {} when nobody or unreadable."""
    try:
        info = json.loads((directory / CLAIM_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}  # a list or a string is garbage too


def describe_claim(directory: Path) -> str:
    """Who holds the run's claim, in words, for the log of a process that skips the run."""
    info = read_claim(directory)
    if info.get("host") and isinstance(info.get("pid"), int):
        return f"claimed by {info['host']} pid {info['pid']}"
    try:
        mtime = (directory / CLAIM_FILE).stat().st_mtime
    except FileNotFoundError:
        return "claimed by another process, which has just released it"
    # Judged by its age alone (see _holder): stale, and taken over, STALE_AFTER_S after mtime.
    at = datetime.fromtimestamp(mtime + STALE_AFTER_S, timezone.utc).strftime("%H:%M:%S UTC")
    return (
        f"its {CLAIM_FILE} is unreadable (empty or not a claim); it is taken over once "
        f"{STALE_AFTER_S / 60:g} minutes old, at {at}"
    )


def claimed_elsewhere(directory: Path) -> bool:
    """True while another live process holds the run's claim (it is training the run)."""
    holder = _holder(directory / CLAIM_FILE)
    if holder is None or not holder[1]:
        return False
    info = read_claim(directory)
    return not (info.get("host") == socket.gethostname() and info.get("pid") == os.getpid())


def _create_claim(path: Path) -> RunHold | None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    pid = os.getpid()
    info = {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": _process_start(pid),
        "started_at": datetime.now(timezone.utc).isoformat(),
        "token": uuid.uuid4().hex,
    }
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:  # an empty claim would hold the run for STALE_AFTER_S
        path.unlink(missing_ok=True)
        raise disk_full(path) if error.errno in FULL else error from None
    return RunHold(path, info["token"], info["started_at"], time.monotonic())


def _holder(path: Path) -> tuple[tuple, bool] | None:
    """(version, alive) of the current claim, or None when there is none. The version
    (inode, mtime, token) changes when the claim is replaced or its heartbeat beats."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    # An empty or half-written claim is being created right now: judge it by its age alone.
    info = read_claim(path.parent)
    age = time.time() - stat.st_mtime
    version = (stat.st_ino, stat.st_mtime_ns, info.get("token"))
    return version, age < STALE_AFTER_S and _holder_alive(info)


def _holder_alive(info: dict) -> bool:
    """False only when the claim's process is known to be gone: same host, dead pid."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return True  # another machine: only the heartbeat can tell
    pid = info["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    start, recorded = _process_start(pid), info.get("pid_start")
    # A pid with another start time is a new process that reused the number; a zombie is dead.
    return start is None or recorded is None or start == recorded


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), "zombie", or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) "
    return "zombie" if fields[0] == "Z" else fields[19]


def _remove_stale(path: Path, version: tuple) -> bool:
    """Delete the stale claim seen as `version`, holding the takeover lock; False if another
    process holds the lock, i.e. is taking over this claim right now."""
    lock = path.with_name(f"{path.name}.takeover")
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        try:
            if time.time() - os.stat(lock).st_mtime > TAKEOVER_STALE_S:
                lock.unlink()  # its taker died mid-takeover; the next call can take over
        except FileNotFoundError:
            pass
        return False
    try:
        if _holder(path) == (version, False):  # unchanged since we judged it stale
            path.unlink(missing_ok=True)
        return True
    finally:
        lock.unlink(missing_ok=True)
