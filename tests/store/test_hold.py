"""A run's hold (claim.json): the heartbeat, one winner among processes racing to take over
a stale hold, and the holder in words when claim.json is unreadable."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest
from conftest import dead_pid, plant_claim

from bnbench.store.files import HOLD_FILE
from bnbench.store.hold import HoldLost, describe_holder, take_hold


def test_the_heartbeat_touches_the_claim_and_notices_a_takeover(tmp_path):
    claim = take_hold(tmp_path)
    old = time.time() - 100
    os.utime(claim.path, (old, old))
    claim.beat()  # too soon after the last one: nothing to do
    assert claim.path.stat().st_mtime == old
    claim.beat(force=True)
    assert claim.path.stat().st_mtime > old
    claim.path.unlink()
    plant_claim(tmp_path, host="elsewhere", pid=1)  # another process took the run over
    with pytest.raises(HoldLost):
        claim.beat(force=True)
    claim.release()
    assert (tmp_path / HOLD_FILE).exists()  # not ours to delete


def _try_claim(directory: Path, barrier, wins) -> None:
    barrier.wait()  # all at once, to make the race as close as it gets
    wins.put(take_hold(directory) is not None)
    barrier.wait()  # the winner stays alive (its claim live) until every taker has tried


def test_of_several_processes_taking_over_one_stale_claim_exactly_one_wins(tmp_path):
    plant_claim(tmp_path, host=socket.gethostname(), pid=dead_pid())
    context = multiprocessing.get_context("fork")  # the children touch files only, no torch
    takers = 6
    barrier, wins = context.Barrier(takers), context.Queue()
    children = [
        context.Process(target=_try_claim, args=(tmp_path, barrier, wins)) for _ in range(takers)
    ]
    for child in children:
        child.start()
    results = [wins.get(timeout=30) for _ in children]
    for child in children:
        child.join()
    assert sum(results) == 1
    assert [p.name for p in tmp_path.iterdir()] == [HOLD_FILE]  # no takeover lock left


@pytest.mark.parametrize("content", ["", "garbage", "[1]", '{"host": "h"}'])
def test_an_unreadable_claim_is_taken_over_at_once(tmp_path, content):
    (tmp_path / HOLD_FILE).write_text(content)  # fresh: no waiting out its age
    hold = take_hold(tmp_path)
    assert hold is not None and hold.held()
    assert sorted(p.name for p in tmp_path.iterdir()) == [HOLD_FILE]


def test_a_claim_that_is_a_directory_is_moved_aside_and_taken_over(tmp_path):
    (tmp_path / HOLD_FILE).mkdir()
    with pytest.warns(UserWarning, match="is a directory, not a file"):
        hold = take_hold(tmp_path)
    assert hold is not None and hold.held()


def test_a_takeover_lock_left_by_a_dead_taker_is_removed_at_once(tmp_path):
    plant_claim(tmp_path, host=socket.gethostname(), pid=dead_pid())
    lock = tmp_path / f"{HOLD_FILE}.takeover"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid()}))
    hold = take_hold(tmp_path)
    assert hold is not None and hold.held()
    assert not lock.exists()


def test_a_live_takers_lock_and_a_live_hold_are_respected(tmp_path):
    plant_claim(tmp_path, host=socket.gethostname(), pid=dead_pid())
    lock = tmp_path / f"{HOLD_FILE}.takeover"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    assert take_hold(tmp_path) is None  # a live process is taking it over right now
    lock.unlink()
    plant_claim(tmp_path, host=socket.gethostname(), pid=os.getpid())
    assert take_hold(tmp_path) is None
    assert describe_holder(tmp_path) == f"claimed by {socket.gethostname()} pid {os.getpid()}"


def test_a_hold_is_never_seen_empty_and_leaves_no_temporary_file(tmp_path):
    hold = take_hold(tmp_path)
    assert json.loads(hold.path.read_text())["token"] == hold.token
    assert [p.name for p in tmp_path.iterdir()] == [HOLD_FILE]
    hold.release()
    assert list(tmp_path.iterdir()) == []
