"""Every row of the refused-input catalogue (docs/reliability.md) through the real command:
a one-line message, a non-zero exit, nothing trained."""

from __future__ import annotations

import os
import re
import shlex
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import TINY, bnbench

REFUSED_INPUT_DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def read_refusals() -> list[tuple[str, str]]:
    """(command, message) for each row of the "Refused input" table in docs/reliability.md."""
    section = REFUSED_INPUT_DOC.read_text().split("### Refused input", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(bnbench [^`]+)` \| `([^`]+)` \|$", section, re.MULTILINE)
    return [(command, message.replace(r"\|", "|")) for command, message in rows]


REFUSALS = read_refusals()


def test_the_catalogue_lists_every_kind_of_refusal():
    commands = " ".join(command for command, _ in REFUSALS)
    for needle in ["optim.lr=0", "batch_size=0", "dropout=1", "norm=layer", "init=", "imagenet"]:
        assert needle in commands
    for needle in ["ghost", "groups", "nrom", "batch,none", "DIR", "results_dir", "claims"]:
        assert needle in commands
    # issue 16: paths out of results_dir, values that cannot train, unwritable reports
    for needle in ["sweep=/", "sweep=..", "lr=inf", "lr=1e308", "gamma=-1", "diverge_factor"]:
        assert needle in commands
    for needle in ["seed=12345678901234567890", "report /sys"]:
        assert needle in commands
    # issue 32: overrides that name no setting, contradictions, unbounded plans, launchers
    for needle in ["++model.extra", "~seed", "optim.name=sgd", "range(0,3,0)", "n_jobs=0"]:
        assert needle in commands
    for needle in ["test_batch_sizes", "synthetic_image_size", "threads=", "split_seed", "café"]:
        assert needle in commands


def damaged_dataset(directory: Path, train_images: bytes) -> Path:
    """The four Fashion-MNIST IDX names; the training images hold the given bytes."""
    directory.mkdir()
    for name in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (directory / name).write_bytes(b"")
    (directory / "train-images-idx3-ubyte").write_bytes(train_images)
    return directory


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple[str, subprocess.CompletedProcess, Path]]:
    """Every catalogue command run through the real CLI, one per core at a time (the rows are
    independent, and each costs a Python start-up): command -> (message, result, cwd)."""
    root = tmp_path_factory.mktemp("refused")
    header = struct.pack(">HBB3I", 0, 8, 3, 60000, 28, 28)  # IDX: 60000 images of 28x28
    places = {
        "TRUNCATED_DIR": damaged_dataset(root / "truncated", header + bytes(100)),
        "CORRUPT_DIR": damaged_dataset(root / "corrupt", b"<!DOCTYPE html>" + b" " * 500),
    }

    def refuse(row: int, command: str, message: str):
        for name, path in places.items():
            command, message = command.replace(name, str(path)), message.replace(name, str(path))
        cwd = root / f"row{row}"
        cwd.mkdir()
        return message, bnbench(*shlex.split(command)[1:], cwd=cwd, check=False), cwd

    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        futures = {cmd: pool.submit(refuse, i, cmd, msg) for i, (cmd, msg) in enumerate(REFUSALS)}
    return {command: future.result() for command, future in futures.items()}


@pytest.mark.parametrize("command", [command for command, _ in REFUSALS])
def test_refused_input(command, refused):
    message, result, cwd = refused[command]
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]  # Python warnings may come before it
    pattern = ".*".join(re.escape(part) for part in message.split("…"))
    assert re.fullmatch(pattern, line), f"{line!r} does not match {message!r}"
    assert list(cwd.iterdir()) == []  # nothing trained, nothing written: no results dir


# --- refusals that need a file, a link or a long path set up first -------------------------


def test_a_results_dir_longer_than_the_file_system_takes_is_refused(tmp_path):
    result = bnbench("run", f"results_dir={tmp_path}/{'x' * 200 * 30}", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("bnbench: invalid results_dir (a path of ")
    assert result.stderr.strip().endswith("a name may have at most 255 bytes")


def test_invalid_yaml_in_a_users_experiment_is_one_line(tmp_path):
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "bad.yaml").write_text("a: [1,\n")
    args = ["run", "--config-dir", str(tmp_path / "mine"), "experiment=bad"]
    result = bnbench(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("bnbench: while parsing a flow node")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "bad.yaml" in result.stderr


def test_a_sweep_symlinked_out_of_results_dir_is_refused_and_not_written_through(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results" / "evil").symlink_to(tmp_path / "elsewhere")
    args = ["run", *TINY, f"results_dir={tmp_path / 'results'}", "sweep=evil"]
    result = bnbench(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "bnbench: invalid sweep='evil': " in result.stderr
    assert "is a symlink out of" in result.stderr
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_amp_on_a_machine_without_cuda_is_refused_under_device_auto_too(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: amp trains")
    result = bnbench(
        "run", *TINY, "train.amp=true", f"results_dir={tmp_path}", cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    message = "invalid train.amp=True: no CUDA device on this machine, and amp trains on CUDA only"
    assert result.stderr.strip() == f"bnbench: {message}"
    assert not list(tmp_path.glob("**/summary.json"))


def test_every_test_file_the_reliability_page_cites_exists():
    cited = set(re.findall(r"`(tests/[\w/]+\.py)`", REFUSED_INPUT_DOC.read_text()))
    root = REFUSED_INPUT_DOC.parents[1]
    assert cited and [c for c in sorted(cited) if not (root / c).is_file()] == []
