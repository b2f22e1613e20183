"""Runs with different settings are never pooled (issue 15, item 1): `bnbench run` warns before
adding runs with other fixed settings to a directory, and the report shows each setting apart."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, bnbench

from bnbench.store.planfile import read_plan


def test_runs_with_other_settings_are_flagged_and_reported_apart(tmp_path: Path) -> None:
    common = ["run", "-m", *TINY, "threads=1", "seed=0", f"results_dir={tmp_path}"]
    first = bnbench(*common, "model.norm=batch,none", cwd=tmp_path)
    assert "warning" not in first.stderr
    second = bnbench(*common, "model.norm=batch,none", "dataset.train_subset=128", cwd=tmp_path)
    assert "already holds runs with other settings (dataset.train_subset=256 there, 128 here)" in (
        second.stderr
    )
    assert "sweep=NAME" in second.stderr

    assert len(read_plan(tmp_path / "default").run_ids) == 4  # both launches are the sweep's

    report = bnbench("report", str(tmp_path / "default"), cwd=tmp_path)
    headline = report.stdout.split("open:", 1)[1]
    assert "training images" in headline.splitlines()[1]  # a column (in words), not pooled
    rows = [line for line in headline.splitlines() if line.startswith(("BN (", "no norm"))]
    assert len(rows) == 4 and all(" 1 " in row for row in rows)  # one run per norm and setting
