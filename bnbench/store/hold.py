"""A process's hold on a run, its claim.json: one process trains a run at a time, even
across sweeps and hosts. (A "claim" elsewhere in bnbench is a claim about batch norm.)

A process takes the hold by creating runs/<id>/claim.json exclusively: written whole under a
temporary name, then hard-linked into place, which fails when the name exists (only one
creator wins, on NFS too) and never shows a reader an empty file. It touches the file's
mtime while it trains (the heartbeat) and deletes it when the run ends. A hold is taken
over at once when it is unreadable (empty, garbage, a directory) or its pid is gone from
this host; a hold from another host once its heartbeat is older than STALE_AFTER_S.
Takeovers hold claim.json.takeover (created the same way, naming its process), so two
processes that find the same stale hold cannot both remove it and then each remove the
other's new one; a takeover lock whose process died is removed at once.
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

from bnbench.store.files import (
    CHECKPOINT_FILE,
    FINISHED,
    FULL,
    HOLD_FILE,
    TEMP_SUFFIX,
    UNFINISHED,
    discard,
    disk_full,
    remove_partial_writes,
    run_status,
)

HEARTBEAT_S = 30.0  # a training process touches its hold at least this often
STALE_AFTER_S = 600.0  # a hold untouched this long belongs to a lost process (or a hung one)
TAKEOVER_STALE_S = 60.0  # a takeover takes milliseconds; an older lock's process died in it


class HoldLost(Exception):
    """Another process took this run's hold over (ours looked stale); it trains the run now."""


@dataclass
class RunHold:
    """This process's hold on one run directory."""

    path: Path
    token: str  # tells our claim.json from a newer one (inode numbers are reused at once)
    started_at: str
    last_beat: float  # time.monotonic() of the last heartbeat

    def beat(self, force: bool = False) -> None:
        """Touch the hold when HEARTBEAT_S has passed; raise HoldLost if it is no longer ours."""
        now = time.monotonic()
        if not force and now - self.last_beat < HEARTBEAT_S:
            return
        self.last_beat = now
        if not self.held():
            raise HoldLost(f"{self.path} was taken over by another process")
        os.utime(self.path)

    def held(self) -> bool:
        return read_hold(self.path.parent).get("token") == self.token

    def release(self) -> None:
        if self.held():
            self.path.unlink(missing_ok=True)


def take_hold(directory: Path) -> RunHold | None:
    """Hold the run for this process; None while another live process holds it (or is
    taking over its stale hold). Of several processes that find the same stale hold,
    exactly one gets the run."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / HOLD_FILE
    for _ in range(5):  # each retry follows a lost race; five in a row means a busy run
        hold = _create_hold(path)
        if hold is not None:
            if _lock(path).exists():
                _remove_dead_lock(_lock(path))  # left by a taker killed after its takeover
            return hold
        holder = _holder(path)
        if holder is None:
            continue  # released between our create and our look: try again
        version, live = holder
        if live or not _remove_stale(path, version):
            return None
    return None


def tidy_finished(directory: Path) -> None:
    """Remove what a process killed after writing a finished run's summary left: the
    checkpoint, the hold, temporary files; unless a live process holds the run."""
    leftovers = [directory / CHECKPOINT_FILE, directory / HOLD_FILE, _lock(directory / HOLD_FILE)]
    if not any(p.exists() for p in leftovers) and not any(directory.glob(f".*{TEMP_SUFFIX}")):
        return
    hold = take_hold(directory)
    if hold is None:
        return
    try:
        (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
        remove_partial_writes(directory)
    finally:
        hold.release()


def _lock(path: Path) -> Path:
    """The takeover lock of the hold at path."""
    return path.with_name(f"{path.name}.takeover")


def held_by(directory: Path) -> str | None:
    """Who holds the run while a live process holds it ("HOST pid PID"), else None."""
    holder = _holder(directory / HOLD_FILE)
    if holder is None or not holder[1]:
        return None
    info = read_hold(directory)
    return f"{info.get('host')} pid {info.get('pid')}"


def why_unfinished(directory: Path) -> str | None:
    """None for a finished run; else why it is not finished, in a few words."""
    status = run_status(directory)
    if status in FINISHED:
        return None
    holder = held_by(directory)
    if holder is not None:
        return f"held by {holder}, which is training it"
    if status in UNFINISHED:
        return status
    return "not started" if status == "new" else "unfinished: its process stopped"


def read_hold(directory: Path) -> dict:
    """Who holds the run (host, pid, started_at, token), or {} when nobody or unreadable."""
    try:
        info = json.loads((directory / HOLD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}  # a list or a string is garbage too


def describe_holder(directory: Path) -> str:
    """Who holds the run, in words, for the log of a process that skips the run."""
    info = read_hold(directory)
    if info.get("host") and isinstance(info.get("pid"), int):
        return f"claimed by {info['host']} pid {info['pid']}"
    return "claimed by another process, which has just released it"


def held_elsewhere(directory: Path) -> bool:
    """True while another live process holds the run (it is training the run)."""
    holder = _holder(directory / HOLD_FILE)
    if holder is None or not holder[1]:
        return False
    info = read_hold(directory)
    return not (info.get("host") == socket.gethostname() and info.get("pid") == os.getpid())


def _create_hold(path: Path) -> RunHold | None:
    pid = os.getpid()
    info = {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": _process_start(pid),
        "started_at": datetime.now(timezone.utc).isoformat(),
        "token": uuid.uuid4().hex,
    }
    if not _create_whole(path, info):
        return None
    return RunHold(path, info["token"], info["started_at"], time.monotonic())


def _create_whole(path: Path, info: dict) -> bool:
    """Create path holding info as JSON, whole, unless it exists (then False). Written to a
    temporary name and hard-linked in: link(2) refuses an existing name, as O_EXCL does, and
    the file appears complete, so an empty or half-written hold never exists."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with open(tmp, "x") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
        return True
    except (FileExistsError, FileNotFoundError):  # taken; or our temp file cleaned up meanwhile
        return False
    except OSError as error:
        raise disk_full(path) if error.errno in FULL else error from None
    finally:
        tmp.unlink(missing_ok=True)


def _holder(path: Path) -> tuple[tuple, bool] | None:
    """(version, alive) of the current hold, or None when there is none. The version
    (inode, mtime, token) changes when the hold is replaced or its heartbeat beats."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    info = read_hold(path.parent)
    age = time.time() - stat.st_mtime
    version = (stat.st_ino, stat.st_mtime_ns, info.get("token"))
    return version, age < STALE_AFTER_S and holder_alive(info)


def holder_alive(info: dict) -> bool:
    """False when the holding process is known to be gone: same host and a dead pid, or a
    hold that names no process (unreadable: holds are created whole, so never mid-write)."""
    if not info.get("host") or not isinstance(info.get("pid"), int):
        return False
    if info["host"] != socket.gethostname():
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
    """Delete the stale hold seen as `version`, holding the takeover lock; False if another
    live process holds the lock, i.e. is taking over this hold right now."""
    lock = _lock(path)
    pid = os.getpid()
    me = {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid)}
    if not _create_whole(lock, me):
        return _remove_dead_lock(lock)
    try:
        if _holder(path) == (version, False):  # unchanged since we judged it stale
            discard(path)
        return True
    finally:
        lock.unlink(missing_ok=True)


def _remove_dead_lock(lock: Path) -> bool:
    """Remove a takeover lock whose taker died in it (True: try again), else False."""
    try:
        info = json.loads(lock.read_text())
        age = time.time() - os.stat(lock).st_mtime
    except FileNotFoundError:
        return True  # the takeover just ended
    except (OSError, ValueError):
        info, age = {}, 0.0
    info = info if isinstance(info, dict) else {}
    if holder_alive(info) and age < TAKEOVER_STALE_S:
        return False
    discard(lock)
    return True
