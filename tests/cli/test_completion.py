"""Shell completion (issue 29, item 3): typer completes the commands and options, Hydra's own
completion run's overrides (groups, options, keys), and the claims commands claim names;
asked as bash asks an installed `bnbench` (`bnbench --install-completion` sets it up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def complete(line: str, cwd: Path) -> list[str]:
    """What bash completion offers for the word at the end of `line` (after a space: a new one)."""
    words = line.split()
    index = len(words) if line.endswith(" ") else len(words) - 1
    env = {
        **os.environ,
        "_BNBENCH_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(index),
    }
    app = "from bnbench.cli import app; app(prog_name='bnbench')"  # the console script's name
    out = subprocess.run(
        [sys.executable, "-c", app], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    "line, offered",
    [
        ("bnbench ru", ["run"]),
        ("bnbench run --hydra", ["--hydra-help"]),
        ("bnbench run optim.l", ["optim.lr="]),
        ("bnbench run optim=", ["optim=adam", "optim=sgd"]),
        ("bnbench run logger=", ["logger=mlflow", "logger=none", "logger=tensorboard"]),
        ("bnbench export ", ["tensorboard", "mlflow"]),
        ("bnbench claims show higher", ["higher-lr"]),
    ],
)
def test_completion_offers_commands_options_overrides_and_claims(
    tmp_path: Path, line: str, offered: list[str]
) -> None:
    assert sorted(complete(line, tmp_path)) == sorted(offered)


def test_help_tells_how_to_install_completion(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bnbench.cli", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "--install-completion" in out and "--show-completion" in out
