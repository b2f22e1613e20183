"""What Hydra and typer users expect of the command line (issue 15, items 4 and 6): a version,
the resolved config, the nearest key for a mistyped one, the groups in --help, and where to
look next after `run` and `report`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import TINY, bnbench

from bnbench import __version__


def test_version(tmp_path: Path) -> None:
    assert bnbench("--version", cwd=tmp_path).stdout.strip() == f"bnbench {__version__}"


@pytest.mark.parametrize("flag", [["--cfg", "job"], ["--show-config"]])
def test_cfg_job_prints_the_resolved_config_and_trains_nothing(tmp_path: Path, flag) -> None:
    args = [*flag, *TINY, "optim.lr=0.3", f"results_dir={tmp_path}"]
    out = bnbench("run", *args, cwd=tmp_path).stdout
    header, _, body = out.partition("\n")
    assert header.startswith("# run ")
    config = yaml.safe_load(body)
    assert config["optim"]["lr"] == 0.3 and config["dataset"]["name"] == "synthetic"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "override, nearest",
    [("lr=0.1", "optim.lr"), ("epochs=2", "train.epochs"), ("optim.lrr=0.1", "optim.lr")],
)
def test_an_unknown_key_suggests_the_nearest(tmp_path: Path, override, nearest) -> None:
    result = bnbench("run", "--dry-run", override, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"did you mean {nearest}?")


def test_run_help_lists_groups_options_and_common_keys(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    out = bnbench("run", "--help", cwd=tmp_path).stdout
    for text in [
        "dataset=cifar10 | fashion_mnist",
        "optim=adam | sgd",
        "profile=confirmatory | full | quick",
    ]:
        assert text in out
    assert "experiment=claim_covariate_shift" in out and "optim.lr=" in out
    assert "--config-dir" in out and "--cfg" in out
    # groups the experiments and profiles choose for themselves are not the user's to set
    assert "_arm=" not in out and "profile_experiment=" not in out


def test_run_and_report_say_where_to_look_next(tmp_path: Path) -> None:
    out = bnbench("run", *TINY, "threads=1", f"results_dir={tmp_path}", cwd=tmp_path).stdout
    assert out.strip().splitlines()[-1] == f"next: bnbench report {tmp_path}/default"
    out = bnbench("report", str(tmp_path / "default"), cwd=tmp_path).stdout
    assert f"open:   file://{tmp_path}/default/report.html" in out
