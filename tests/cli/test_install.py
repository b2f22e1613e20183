"""The built wheel works without the checkout: installed into a target directory and run from
an empty directory (issue 18)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pip(*args: str, cwd: Path) -> str:
    """pip's output (stdout and stderr) of a successful call."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout + done.stderr


def build_and_install(tmp_path: Path) -> Path:
    """The wheel built from a copy of the sources (no build/ left in the checkout), installed
    into a target directory; returns that directory."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("bnbench", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    built = pip(
        "wheel", "--no-deps", "--no-build-isolation", ".", "-w", str(tmp_path / "dist"), cwd=source
    )
    # every directory the wheel carries is listed in pyproject's packages (conf's groups too)
    assert "absent from the `packages` configuration" not in built, built
    (wheel,) = (tmp_path / "dist").glob("bnbench-*.whl")
    with zipfile.ZipFile(wheel) as archive:  # the licence travels with the wheel
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA")))
        assert b"License-Expression: MIT" in metadata
        assert any(n.endswith("licenses/LICENSE") for n in archive.namelist())
    target = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(target), str(wheel), cwd=tmp_path)
    return target


@pytest.mark.slow
def test_the_installed_wheel_runs_from_an_empty_directory(tmp_path: Path) -> None:
    target = build_and_install(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1", "COLUMNS": "300"}

    def cli(*args: str) -> str:
        cmd = [sys.executable, "-m", "bnbench.cli", *args]
        done = subprocess.run(cmd, cwd=empty, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import bnbench.config.paths as p; print(p.__file__, p.CONF_DIR)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    paths_py = target / "bnbench" / "config" / "paths.py"
    assert where.split() == [str(paths_py), str(target / "bnbench" / "conf")]

    cli("run", "debug=tiny", "threads=1", "sweep=one")
    assert "results/one/report.html" in cli("report", "results/one")
    assert "placement" in cli("claims", "list")
    mine = empty / "mine" / "experiment"
    mine.mkdir(parents=True)
    (mine / "my_sweep.yaml").write_text("# @package _global_\nsweep: my_sweep\n")
    cli("run", "-cd", str(empty / "mine"), "experiment=my_sweep", "debug=tiny", "threads=1")
    assert list((empty / "results" / "my_sweep" / "runs").glob("*/summary.json"))
