"""Every Hydra app flag under `bnbench run` works as in a Hydra app or is refused in one line
that names it (issue 29, item 2); the Optuna sweeper tunes through bnbench's runner (item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY, bnbench

from bnbench.sweep.plan import expand


def test_info_and_hydra_help_are_hydras_own(tmp_path: Path) -> None:
    out = bnbench("run", "--info", "defaults", *TINY, cwd=tmp_path).stdout
    assert "Defaults List" in out and "dataset/synthetic" in out
    out = bnbench("run", "--hydra-help", cwd=tmp_path).stdout
    assert "Hydra (1." in out and "--cfg,-c" in out


def test_cfg_hydra_with_package_and_resolve(tmp_path: Path) -> None:
    args = ["--cfg", "hydra", "-p", "hydra.sweep", "--resolve", *TINY, f"results_dir={tmp_path}"]
    out = bnbench("run", *args, cwd=tmp_path).stdout
    assert out.startswith("# @package hydra.sweep")
    assert yaml.safe_load(out)["dir"] == f"{tmp_path}/default"
    out = bnbench("run", "--cfg", "all", "-m", *TINY, "seed=0,1", cwd=tmp_path).stdout
    assert out.count("# run ") == 2 and out.count("\nhydra:\n") == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["-cn", "mine"], "--config-name is not supported by bnbench run: "),
        (["--config-path", "conf"], "--config-path is not supported by bnbench run: "),
        (["-sc"], "--shell-completion is not supported by bnbench run: "),
        (["--cfg", "nope"], "invalid --cfg='nope': allowed: job | hydra | all"),
        (["hydra.sweep.dir=elsewhere"], "invalid hydra.sweep.dir=elsewhere: "),
        (["hydra.run.dir=elsewhere"], "invalid hydra.run.dir=elsewhere: "),
    ],
)
def test_refused_flags_say_so_in_one_line(tmp_path: Path, args, message) -> None:
    result = bnbench("run", *args, *TINY, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"bnbench: {message}")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_unknown_flag_is_no_such_option(tmp_path: Path) -> None:
    result = bnbench("run", "--experimental-rerun", "x", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "No such option: --experimental-rerun" in result.stderr
    assert "Lexer" not in result.stderr and "Traceback" not in result.stderr


OPTUNA = [
    "-m",
    *TINY,
    "threads=1",
    "hydra/sweeper=optuna",
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.n_jobs=1",
    "hydra.sweeper.direction=maximize",
    "hydra.sweeper.sampler.seed=0",
]


def summaries(sweep: Path) -> dict[str, float]:
    """Each run's summary.json and when it was written."""
    return {p.parent.name: p.stat().st_mtime_ns for p in sweep.glob("runs/*/summary.json")}


def test_optuna_tunes_through_the_runner_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = [*OPTUNA, "optim.lr=tag(log, interval(1e-3, 1))", f"results_dir={tmp_path}"]
    dry = bnbench("run", "--dry-run", *args, cwd=tmp_path).stdout
    assert dry.strip() == dry.strip().splitlines()[0]  # one line
    assert "cannot be planned ahead" in dry and not (tmp_path / "default").exists()

    first = bnbench("run", *args, cwd=tmp_path)
    written = summaries(tmp_path / "default")
    assert len(written) == 3
    best = yaml.safe_load((tmp_path / "default" / "optimization_results.yaml").read_text())
    lr = best["best_params"]["optim.lr"]
    assert f"best trial: optim.lr={lr} (val_acc={best['best_value']:.4g})" in first.stdout
    # every trial is a run under its own run id, holding the value the sweeper was told
    (rid,) = [p.run_id for p in expand([*TINY, f"optim.lr={lr}"])]
    summary = json.loads((tmp_path / "default" / "runs" / rid / "summary.json").read_text())
    assert summary["final"]["val_acc"] == pytest.approx(best["best_value"])

    again = bnbench("run", *args, cwd=tmp_path)  # the same seeded trials: all done already
    assert summaries(tmp_path / "default") == written
    assert f"best trial: optim.lr={lr} " in again.stdout


def test_a_diverged_trial_scores_the_worst_value(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = [*OPTUNA, "optim.lr=interval(300, 1000)", f"results_dir={tmp_path}"]
    out = bnbench("run", *args, cwd=tmp_path).stdout
    best = yaml.safe_load((tmp_path / "default" / "optimization_results.yaml").read_text())
    assert best["best_value"] == float("-inf") and "(val_acc=-inf)" in out


def test_h_is_run_help(tmp_path: Path) -> None:
    out = bnbench("run", "-h", cwd=tmp_path).stdout
    assert "Train one run, or a sweep with -m" in out and "--hydra-help" in out
