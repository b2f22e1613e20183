"""A run's id: stable for every run recorded so far, blind to settings its norm does not read."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bnbench.config.identity import flatten, run_id, run_id_of
from bnbench.store.files import CONFIG_FILE, RUNS_DIR
from bnbench.sweep.plan import expand

RESULTS = Path(__file__).resolve().parents[2] / "results"  # reference and development


def test_the_default_run_keeps_its_id():
    from bnbench.config.schema import Config

    assert run_id(Config()) == "53a00a3c3f33"


def test_every_committed_run_is_named_by_the_id_of_its_config():
    configs = sorted(RESULTS.glob(f"**/{RUNS_DIR}/*/{CONFIG_FILE}"))
    assert len(configs) > 100
    wrong = [
        c.parent.name
        for c in configs
        if run_id_of(flatten(yaml.safe_load(c.read_text()))) != c.parent.name
    ]
    assert wrong == []


def _id(*overrides: str) -> str:
    return expand(["debug=tiny", *overrides])[0].run_id


@pytest.mark.parametrize(
    ("setting", "norm"),
    [
        ("model.ghost_batch_size=16", "none"),
        ("model.ghost_batch_size=16", "noisy_batch"),
        ("model.groups=4", "batch"),
        ("model.noise_std=0.1", "batch"),
        ("model.affine=false", "none"),
        ("model.bn_momentum=0.5", "group"),
    ],
)
def test_a_setting_its_norm_does_not_read_leaves_the_run_id_alone(setting, norm):
    assert _id(f"model.norm={norm}", setting) == _id(f"model.norm={norm}")


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.norm=batch", "model.ghost_batch_size=16"],
        ["model.norm=group", "model.groups=4"],
        ["model.norm=noisy_batch", "model.noise_std=0.1"],
        ["model.norm=none", "model.head_norm=true", "model.bn_momentum=0.5"],
    ],
)
def test_a_setting_its_norm_reads_is_another_run(overrides):
    without = [o for o in overrides if not o.startswith(("model.ghost", "model.groups"))]
    without = [o for o in without if not o.startswith(("model.noise", "model.bn_momentum"))]
    assert _id(*overrides) != _id(*without)
