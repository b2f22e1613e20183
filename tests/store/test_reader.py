"""The readers skip what is not one of this results directory's own runs: a run whose name
is not its config's id (a copy, an edited file), and a symlink out of the directory."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
from conftest import tiny_config

from bnbench.store.files import run_dir
from bnbench.store.hold import take_hold
from bnbench.store.reader import SkippedRunWarning, scan


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from bnbench.train.runner import execute

    results = tmp_path_factory.mktemp("reader")
    cfg = tiny_config(results)
    assert execute(cfg) == "completed"
    return run_dir(cfg)


def _scan(root):
    with pytest.warns(SkippedRunWarning) as caught:
        runs, skipped = scan(root)
    return runs, skipped, [str(w.message) for w in caught]


def test_a_copy_under_another_run_id_is_skipped_as_foreign(finished, tmp_path):
    sweep = tmp_path / "s" / "runs"
    shutil.copytree(finished, sweep / finished.name)
    copy = shutil.copytree(finished, sweep / "0123456789ab")
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps(summary | {"run_id": copy.name}))
    runs, skipped, warned = _scan(tmp_path)
    assert [r.directory.name for r in runs] == [finished.name]
    assert skipped == [(copy, f"foreign: its config.yaml is run {finished.name}, not {copy.name}")]
    assert warned == [f"skipping run {copy}: {skipped[0][1]}"]


def test_a_summary_naming_another_run_is_skipped_as_foreign(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "s" / "runs" / finished.name)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(summary | {"run_id": "0123456789ab"}))
    runs, skipped, _ = _scan(tmp_path)
    assert runs == [] and skipped == [(run, "foreign: its summary.json is run '0123456789ab'")]


def test_a_run_symlinked_from_outside_the_results_is_not_followed(finished, tmp_path):
    (tmp_path / "root" / "s" / "runs").mkdir(parents=True)
    link = tmp_path / "root" / "s" / "runs" / finished.name
    link.symlink_to(finished)
    runs, skipped, _ = _scan(tmp_path / "root")
    assert runs == [] and skipped == [(link, f"a symlink out of {tmp_path / 'root'}, not followed")]


def test_a_run_a_live_process_trains_is_still_training_not_killed(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "s" / "runs" / finished.name)
    (run / "summary.json").unlink()  # as while it trains: no summary yet
    hold = take_hold(run)  # this process, alive: the sweep's trainer
    try:
        _, skipped, _ = _scan(tmp_path)
    finally:
        hold.release()
    assert skipped == [(run, f"still training (held by {held_by_this_process()})")]
    _, skipped, _ = _scan(tmp_path)  # its process gone: unfinished
    assert skipped == [(run, "no summary.json (unfinished or killed run)")]


def held_by_this_process() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"
