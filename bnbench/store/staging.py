"""A set of files written together (a report: its CSVs, figures and pages), built in a hidden
directory inside where they go, `.report-HOST-PID-RANDOM.partial`, and renamed into place
only once every file is written: a full disk or a kill mid-way never leaves half a set
beside the old one. The next process to stage into that directory removes what a dead one
left."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bnbench.store.files import FULL, DiskFull, disk_full
from bnbench.store.hold import holder_alive

STAGE_PREFIX = ".report-"
STAGE_SUFFIX = ".partial"
# A partial set from another host (a shared filesystem) this old belongs to a lost process;
# on this host its pid says so at once.
STAGE_STALE_S = 3600.0


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A fresh directory to write the set into; when the block ends without error, every
    file in it moves to the same place under target (subdirectories merged into target's),
    else nothing moves. Either way the directory is gone after the block."""
    target.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(target)
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage = target / f"{STAGE_PREFIX}{name}{STAGE_SUFFIX}"
    try:
        try:
            stage.mkdir()
        except OSError as error:
            raise disk_full(stage) if error.errno in FULL else error from None
        yield stage
        publish(stage, target)
    except DiskFull as error:  # name the file where it goes, not its partial directory
        if error.filename and Path(error.filename).is_relative_to(stage):
            raise disk_full(target / Path(error.filename).relative_to(stage)) from None
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, target: Path) -> None:
    """Rename each file of stage into target, those in subdirectories (figures) first, so the
    pages that link them come last. Renames take no space: a full disk stops nothing here."""
    files = [p for p in stage.rglob("*") if not p.is_dir()]
    for path in sorted(files, key=lambda p: (-len(p.relative_to(stage).parts), str(p))):
        destination = target / path.relative_to(stage)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)


def remove_stale_stages(target: Path) -> None:
    """Delete the partial sets in target whose process died (killed, or stopped by a full
    disk before its cleanup); another live process's set is left to it."""
    for stage in target.glob(f"{STAGE_PREFIX}*{STAGE_SUFFIX}"):
        with contextlib.suppress(OSError):  # gone already, or another user's
            if stage_is_stale(stage):
                shutil.rmtree(stage)


def stage_is_stale(stage: Path) -> bool:
    """True when the process that named the stage is gone (this host), or it is older than
    STAGE_STALE_S (another host, where only its age can tell)."""
    named = stage.name[len(STAGE_PREFIX) : -len(STAGE_SUFFIX)]  # HOST-PID-RANDOM
    host, _, pid = named.rpartition("-")[0].rpartition("-")
    if not pid.isdigit():
        return True  # not a name this module makes: a stage cut off mid-name, or garbage
    if host == socket.gethostname():
        return not holder_alive({"host": host, "pid": int(pid)})
    return time.time() - stage.lstat().st_mtime > STAGE_STALE_S
