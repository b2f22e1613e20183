"""A sweep's plan.json: merged, never overwritten, by every launch into the sweep (at once
too); a malformed one is ignored with a warning naming it; a killed writer's temporary file
is removed by the next writer."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from bnbench.store.planfile import PLAN_FILE, Plan, read_plan, write_plan


def test_two_launches_into_one_sweep_are_both_listed_and_other_keys_kept(tmp_path):
    write_plan(tmp_path, Plan("quick", ["a=1"], ["r1", "r2"]))
    data = json.loads((tmp_path / PLAN_FILE).read_text())
    data["protocols"] = {"claim-a": {"hash": "h", "run_ids": ["r1"]}}  # as claims run writes
    data["other"] = "kept"  # a key another writer adds
    (tmp_path / PLAN_FILE).write_text(json.dumps(data))
    write_plan(tmp_path, Plan("full", ["b=2"], ["r2", "r3"]))
    protocols = {"claim-a": {"hash": "h", "run_ids": ["r1"]}}
    assert read_plan(tmp_path) == Plan("full", ["b=2"], ["r1", "r2", "r3"], protocols)
    assert json.loads((tmp_path / PLAN_FILE).read_text())["other"] == "kept"


def _launch(directory, barrier, index) -> None:
    barrier.wait()
    for n in range(20):
        write_plan(directory, Plan(None, [], [f"p{index}-{n}"]))


def test_launches_writing_at_once_are_all_listed(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    children = [context.Process(target=_launch, args=(tmp_path, barrier, i)) for i in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    listed = read_plan(tmp_path).run_ids
    assert sorted(listed) == sorted(f"p{i}-{n}" for i in range(4) for n in range(20))
    assert [p.name for p in tmp_path.iterdir()] == [PLAN_FILE]


@pytest.mark.parametrize(
    "content",
    [
        '{"profile": null, "overrides": [], "run_ids": [1, 2]}',
        '{"profile": null, "run_ids": {}}',
        "[]",
        '{"profile": 3, "overrides": [], "run_ids": []}',
    ],
)
def test_a_malformed_plan_is_ignored_naming_it_and_merged_over(tmp_path, content):
    (tmp_path / PLAN_FILE).write_text(content)
    with pytest.warns(
        UserWarning, match=f"ignoring unreadable {tmp_path / PLAN_FILE} \\(malformed: "
    ):
        assert read_plan(tmp_path) is None
    write_plan(tmp_path, Plan(None, [], ["r1"]))
    assert read_plan(tmp_path) == Plan(None, [], ["r1"])


def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer(tmp_path):
    old, fresh = tmp_path / ".plan.json.dead.tmp", tmp_path / ".plan.json.live.tmp"
    old.write_text("{")
    fresh.write_text("{")
    os.utime(old, (time.time() - 120, time.time() - 120))
    write_plan(tmp_path, Plan(None, [], ["r1"]))
    assert not old.exists() and fresh.exists()  # a live writer's file is left alone
