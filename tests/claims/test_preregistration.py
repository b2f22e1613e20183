"""The pre-registration lock and what kind a verdict is: the hash covers the claim's entry
and its plan but not the seeds; the lock refuses a silent overwrite and keeps what --replace
supersedes; a verdict is confirmatory only on runs planned under the locked hash, started
after the lock, on the locked seeds, and says why not otherwise. Through the real command:
lock, run the confirmatory profile, judge; --seeds plans exactly the seeds given."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from bnbench.claims.preregistration import (
    CONFIRMATORY,
    EXPLORATORY,
    Lock,
    LockFile,
    add_locks,
    entry_digest,
    lock_text,
    parse_seeds,
    protocol_digest,
    read_lock,
    seed_range,
    verdict_kind,
    write_lock,
)
from bnbench.claims.registry import load_claims
from bnbench.claims.verdict import verdict
from bnbench.store.summary import git_commit
from tests.conftest import TINY, bnbench

CLAIM = load_claims()["test-time-stats"]
LOCKED_ON = "2026-12-04T12:00:00+00:00"


def lock_of(claim=CLAIM, seeds=(100, 101, 102), protocol="p" * 16) -> Lock:
    return Lock(protocol, entry_digest(claim), list(seeds), "confirmatory", LOCKED_ON, "abc")


def runs_of(seeds=(100, 101, 102), recorded="p" * 16, started="2026-12-04T13:00:00+00:00"):
    rows = [
        {
            "run_id": f"r{seed}",
            "seed": seed,
            "protocols": json.dumps([f"test-time-stats:{recorded}"]),
            "started_at": started,
        }
        for seed in seeds
    ]
    return pd.DataFrame(rows)


def planned(runs: pd.DataFrame, protocol="p" * 16) -> dict:
    return {"hash": protocol, "run_ids": list(runs["run_id"])}


def test_the_protocol_hash_covers_the_entry_and_the_plan_but_not_the_seed():
    plan = [{"optim.lr": 0.1, "seed": 0}, {"optim.lr": 0.3, "seed": 0}]
    same = protocol_digest(CLAIM, [{**s, "seed": 100} for s in plan])
    assert protocol_digest(CLAIM, plan) == same  # other seeds: the same protocol
    assert protocol_digest(CLAIM, plan[:1]) != same  # a cell fewer: another protocol
    assert protocol_digest(replace(CLAIM, why="edited"), plan) != same  # an edited entry


def test_a_verdict_is_confirmatory_only_on_the_locked_protocol_seeds_and_time():
    runs = runs_of()
    kind = verdict_kind(CLAIM, lock_of(), planned(runs), runs)
    assert (kind.kind, kind.reasons) == (CONFIRMATORY, ())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("no lock", "not pre-registered"),
        ("entry edited", "its protocol changed after the lock of 2026-12-04"),
        ("plan changed", "its sweep was planned under protocol qqqqqqqqqqqqqqqq"),
        ("older runs", "3 runs were trained under another protocol"),
        ("early runs", "3 runs started before the lock of 2026-12-04"),
        ("development seeds", "seeds 0-2 are development seeds"),
        ("other seeds", "seeds 200-202 are not the locked seeds (a replication)"),
        ("fewer seeds", "the locked seeds 103-104 have no runs"),
        ("quick profile", "run with the quick profile; the lock is for the confirmatory profile"),
    ],
)
def test_anything_else_is_exploratory_with_the_reason_in_words(change, reason):
    claim, lock, runs, profile = CLAIM, lock_of(), runs_of(), "confirmatory"
    plan = planned(runs)
    if change == "no lock":
        lock = None
    elif change == "entry edited":
        claim = replace(CLAIM, why=CLAIM.why + " edited")
    elif change == "plan changed":
        plan = planned(runs, protocol="q" * 16)
    elif change == "older runs":
        runs = runs_of(recorded="o" * 16)
    elif change == "early runs":
        runs = runs_of(started="2026-12-04T11:59:59+00:00")
    elif change == "development seeds":
        runs = runs_of(seeds=(0, 1, 2))
        plan = planned(runs)
    elif change == "other seeds":
        runs = runs_of(seeds=(200, 201, 202))
        plan = planned(runs)
    elif change == "fewer seeds":
        lock = lock_of(seeds=(100, 101, 102, 103, 104))
    elif change == "quick profile":
        profile = "quick"
    kind = verdict_kind(claim, lock, plan, runs, profile)
    assert kind.kind == EXPLORATORY
    assert any(r.startswith(reason) for r in kind.reasons), kind.reasons


def test_a_run_without_a_recorded_start_counts_as_started_before_the_lock():
    runs = runs_of().assign(started_at=None)
    kind = verdict_kind(CLAIM, lock_of(), planned(runs), runs)
    assert kind.reasons == ("3 runs started before the lock of 2026-12-04",)


def test_the_lock_refuses_a_silent_overwrite_and_keeps_what_replace_supersedes(tmp_path):
    path = tmp_path / "preregistration.yaml"
    lock = LockFile({}, [])
    assert add_locks(lock, {"test-time-stats": lock_of()}, replace=False) == []
    write_lock(lock, path)
    again = read_lock(path)
    assert again.claims["test-time-stats"] == lock_of()
    newer = replace(lock_of(), protocol="n" * 16, date="2026-12-05T00:00:00+00:00")
    assert add_locks(again, {"test-time-stats": newer}, replace=False) == ["test-time-stats"]
    assert again.claims["test-time-stats"] == lock_of()  # refused: nothing changed
    assert add_locks(again, {"test-time-stats": newer}, replace=True) == []
    write_lock(again, path)
    final = read_lock(path)
    assert final.claims["test-time-stats"].protocol == "n" * 16
    (old,) = final.history
    assert old["claim"] == "test-time-stats" and old["protocol"] == "p" * 16
    assert old["replaced"] == "2026-12-05T00:00:00+00:00"
    assert path.read_text().startswith("# The pre-registration lock")  # human-readable


def test_seeds_are_parsed_as_ranges_and_lists_and_refused_in_one_line():
    assert parse_seeds("100-103") == [100, 101, 102, 103]
    assert parse_seeds("3,5,8-9") == [3, 5, 8, 9]
    assert seed_range([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    for bad in ("x", "5-2", "-1", "4"):
        with pytest.raises(ValueError, match="invalid --seeds"):
            parse_seeds(bad)


def test_seeds_option_plans_exactly_those_seeds(tmp_path):
    result = bnbench(
        "claims", "run", "test-time-stats", "--profile", "confirmatory", "--seeds", "7-9",
        "--dry-run", *TINY, f"results_dir={tmp_path}", cwd=tmp_path,
    )  # fmt: skip
    assert "3 runs on seeds 7-9, 3 to train" in result.stdout
    bad = bnbench("claims", "run", "test-time-stats", "--seeds", "9-7", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "invalid --seeds='9-7'" in bad.stderr + bad.stdout


def test_a_relock_on_fresh_seeds_is_what_the_confirmatory_profile_then_runs(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    where = ["--config-dir", str(config)]
    lock = ["claims", "preregister", "test-time-stats", *where, *TINY]
    bnbench(*lock, "--seeds", "110-112", cwd=tmp_path)
    locked = read_lock(config / "preregistration.yaml").claims["test-time-stats"]
    assert locked.seeds == [110, 111, 112] and locked.overrides == TINY  # seeds apart
    run = ["claims", "run", "test-time-stats", "--profile", "confirmatory", "--dry-run"]
    planned = bnbench(*run, *where, *TINY, cwd=tmp_path)
    assert "3 runs on seeds 110-112" in planned.stdout
    # a replication names its own seeds; another profile keeps its own
    other = bnbench(*run, "--seeds", "7-8", *where, *TINY, cwd=tmp_path)
    assert "2 runs on seeds 7-8" in other.stdout
    quick = bnbench(*run[:3], "--profile", "quick", "--dry-run", *where, *TINY, cwd=tmp_path)
    assert "runs on seeds 0-2" in quick.stdout


@pytest.mark.slow
def test_lock_then_confirm_then_edit_through_the_real_commands(tmp_path):
    config, root = tmp_path / "config", tmp_path / "results"
    config.mkdir()
    where = ["--config-dir", str(config)]
    # lock, and refuse to lock again without --replace
    bnbench("claims", "preregister", "test-time-stats", *where, *TINY, cwd=tmp_path)
    lock = read_lock(config / "preregistration.yaml").claims["test-time-stats"]
    assert lock.seeds == list(range(100, 110)) and lock.profile == "confirmatory"
    assert lock.overrides == TINY
    again = bnbench(
        "claims", "preregister", "test-time-stats", *where, *TINY, cwd=tmp_path, check=False
    )
    assert again.returncode == 2 and "already pre-registered: test-time-stats" in again.stderr
    # --check plans again and compares: the same overrides, the same protocol; others differ
    check = ["claims", "preregister", "test-time-stats", "--check", *where]
    bnbench(*check, *TINY, cwd=tmp_path)
    differs = bnbench(*check, cwd=tmp_path, check=False)
    assert differs.returncode == 1 and "differ from the lock" in differs.stderr
    # the confirmatory runs, planned under the lock, then judged: confirmatory
    run = ["claims", "run", "test-time-stats", "--profile", "confirmatory", *where, *TINY]
    bnbench(*run, f"results_dir={root}", cwd=tmp_path)
    said = bnbench("claims", "verdict", "test-time-stats", str(root), *where, cwd=tmp_path)
    assert "Confirmatory (seeds 100-109)." in " ".join(said.stdout.split())
    plan = json.loads((root / "claim_test_time_stats" / "plan.json").read_text())
    assert plan["protocols"]["test-time-stats"]["hash"] == lock.protocol
    # the claim's entry edited after the lock: the same runs are exploratory, and say why
    claim = load_claims()["test-time-stats"]
    edited = replace(claim, primary=replace(claim.primary, delta=2.0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BNBENCH_CONFIG_DIR", str(config))
        result = verdict(edited, root)
    assert result.kind.kind == EXPLORATORY
    assert result.kind.reasons == ("its protocol changed after the lock of " + lock.date[:10],)
    # a replacement lock supersedes the first: runs planned under the old hash read as such
    bnbench("claims", "preregister", "test-time-stats", "--replace", *where, cwd=tmp_path)
    stale = bnbench("claims", "verdict", "test-time-stats", str(root), *where, cwd=tmp_path)
    assert "planned under protocol" in " ".join(stale.stdout.split())


def test_a_field_added_later_at_its_default_leaves_a_locked_entry_as_it_was():
    from dataclasses import dataclass, field

    from bnbench.claims.preregistration import entry

    @dataclass(frozen=True)
    class Before:
        text: str
        cells: tuple = ()

    @dataclass(frozen=True)
    class After:  # a field added later, with a default
        text: str
        cells: tuple = ()
        weights: dict = field(default_factory=dict)

    assert entry(Before("a", ("x",))) == entry(After("a", ("x",))) == {"text": "a", "cells": ["x"]}
    assert entry(After("a", weights={"x": 1})) != entry(Before("a"))


def test_a_verdict_reads_only_its_own_plans_runs_not_an_earlier_protocols(tmp_path):
    # Two launches into one sweep under different protocols: plan.json lists both launches'
    # runs, and the verdict judges the latest protocol's runs alone (an earlier protocol's
    # runs would change which LR is best and what is averaged).
    root = tmp_path / "results"
    run = ["claims", "run", "test-time-stats", *TINY, f"results_dir={root}", "--seeds", "0-2"]
    bnbench(*run, "optim.weight_decay=0.001", cwd=tmp_path)
    bnbench(*run, cwd=tmp_path)
    plan = json.loads((root / "claim_test_time_stats" / "plan.json").read_text())
    own = plan["protocols"]["test-time-stats"]["run_ids"]
    assert len(plan["run_ids"]) == 2 * len(own)  # both launches are listed
    result = verdict("test-time-stats", root)
    assert result.n_planned == len(own) == 3
    assert result.status != "incomplete"


def test_claims_show_says_when_the_locks_commit_is_not_in_the_history():
    """A lock whose commit git does not hold cannot be shown by git to precede its runs."""
    head = git_commit()
    if head is None:
        pytest.skip("not running from a git checkout")
    lock = lock_of()
    assert "not in this checkout's git history" in lock_text(replace(lock, commit="0" * 40))
    assert "not in this checkout's git history" not in lock_text(replace(lock, commit=head))
