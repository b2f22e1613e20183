"""Hydra's launchers: submitit_local trains a sweep as the basic launcher does, and the
SLURM launcher's config composes (a real cluster: tests/sweep/test_slurm.py)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import TINY, bnbench, configs, same_metrics

from bnbench.store.files import run_dir
from bnbench.store.reader import scan
from bnbench.train.runner import execute


def test_submitit_local_runs_the_sweep_like_the_basic_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    args = [*TINY, "sweep=sub", "model.norm=batch,none"]
    sub = tmp_path / "submitit"
    bnbench("run", "-m", *args, f"results_dir={sub}", "hydra/launcher=submitit_local", cwd=tmp_path)

    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # what bnbench gives each of the 2 runs
    basic = configs([*args, f"results_dir={tmp_path / 'basic'}", f"threads={threads}"])
    assert [execute(cfg) for cfg in basic] == ["completed", "completed"]  # the basic launcher's
    sub_runs = sorted((sub / "sub" / "runs").iterdir())
    assert [r.name for r in sub_runs] == sorted(run_dir(cfg).name for cfg in basic)
    for ours in sub_runs:
        same_metrics(ours, tmp_path / "basic" / "sub" / "runs" / ours.name)
        assert json.loads((ours / "summary.json").read_text())["threads"] == threads
    assert list((sub / "sub" / ".submitit").glob("*/*_log.out"))  # logs beside runs/
    runs, skipped = scan(sub)
    assert len(runs) == 2 and not skipped  # report is not confused by .submitit/


def test_the_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from bnbench.config.schema import register_configs
    from bnbench.sweep.plan import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.array_parallelism) == (4, 8, 64)
    assert launcher.submitit_folder == "results/default/.submitit/%j"  # beside runs/


@pytest.mark.parametrize(
    "bad, message",
    [
        ("optim.lr=0", "bnbench: invalid optim.lr=0.0: must be > 0"),
        ("hydra.launcher.n_jobs=0", "bnbench: invalid hydra.launcher.n_jobs=0: must be a "),
        ("model.nrom=batch", "bnbench: Could not override 'model.nrom': "),
    ],
)
def test_joblib_refusals_stay_one_line_with_hydra_full_error(bad, message, tmp_path, monkeypatch):
    """HYDRA_FULL_ERROR=1 makes Hydra print whole tracebacks: a bad value is refused before
    Hydra runs, so it is still the one line."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    args = ["run", "-m", *TINY, "hydra/launcher=joblib", "seed=0,1", bad, f"results_dir={tmp_path}"]
    result = bnbench(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().startswith(message) and len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
