"""`bnbench replay`: a finished run trained again from its config.yaml gives the same records,
and a record that was edited after training is named, with exit 1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import TINY, bnbench

from bnbench.store.files import STEPS_FILE
from bnbench.store.reader import find_run_dirs


def test_a_run_replays_identically_and_an_edited_record_is_named(tmp_path: Path) -> None:
    bnbench("run", *TINY, "threads=1", "train.epochs=2", f"results_dir={tmp_path}", cwd=tmp_path)
    [run] = find_run_dirs(tmp_path)
    out = bnbench("replay", str(tmp_path), cwd=tmp_path).stdout
    assert f"default/{run.name}: identical (metrics.csv 2 rows" in out
    assert out.strip().endswith("1 of 1 replayed run(s) identical")
    assert find_run_dirs(tmp_path) == [run]  # the replay trained elsewhere, not beside it

    steps = pd.read_csv(run / STEPS_FILE)
    steps.loc[1, "train_loss"] += 1e-6  # a value nudged after training
    steps.to_csv(run / STEPS_FILE, index=False)
    result = bnbench("replay", str(run), cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert f"{run.name}: completed, DIFFERENT: steps.csv: row 2 train_loss" in result.stdout
    assert "(1 values differ)" in result.stdout


def test_replay_refuses_a_path_without_finished_runs(tmp_path: Path) -> None:
    result = bnbench("replay", str(tmp_path / "nowhere"), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "no such path" in result.stderr
    result = bnbench("replay", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "no finished runs under" in result.stderr
