"""Planning goes through Hydra's own override parser and sweeper (issue 29, item 1): every
sweep syntax a Hydra app takes plans the runs Hydra would launch, and what the basic sweeper
cannot list is refused in one line."""

from __future__ import annotations

import pytest
from conftest import TINY

from bnbench.config.schema import ConfigError
from bnbench.sweep.plan import NotPlannable, expand


def planned(*overrides: str) -> list[tuple]:
    plan = expand([*TINY, *overrides], multirun=True)
    return [(p.config.optim.name, p.config.optim.lr, p.config.seed) for p in plan]


def test_a_group_sweep_by_glob_lists_every_option_of_the_group() -> None:
    assert [name for name, _, _ in planned("optim=glob(*)")] == ["adam", "sgd"]
    assert [name for name, _, _ in planned("optim=glob(*,exclude=adam)")] == ["sgd"]


@pytest.mark.parametrize(
    "override, seeds",
    [
        ("seed=range(0,3)", [0, 1, 2]),
        ("seed=sort(3,1,2)", [1, 2, 3]),
        ("seed=choice(4,5)", [4, 5]),
        ("seed=tag(seeds, range(1,3))", [1, 2]),
    ],
)
def test_hydra_sweep_functions_plan_what_they_mean(override: str, seeds: list[int]) -> None:
    assert [seed for _, _, seed in planned(override)] == seeds


def test_an_interval_needs_a_sampling_sweeper() -> None:
    with pytest.raises(ConfigError, match=r"optim.lr=interval\(0.01,0.1\).*hydra/sweeper=optuna"):
        planned("optim.lr=interval(0.01,0.1)")


@pytest.mark.parametrize("key", ["hydra.sweep.dir", "hydra.run.dir", "hydra.sweep.subdir"])
def test_hydra_output_dirs_are_refused_naming_results_dir(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"invalid {key}=elsewhere: .*results_dir=DIR"):
        planned(f"{key}=elsewhere")


def test_a_sampling_sweeper_is_not_plannable_but_its_shared_settings_are_checked() -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    with pytest.raises(NotPlannable, match="hydra/sweeper=optuna chooses each trial"):
        planned("hydra/sweeper=optuna", "optim.lr=interval(0.01,0.1)")
    with pytest.raises(ConfigError, match="train.epochs"):
        planned("hydra/sweeper=optuna", "optim.lr=interval(0.01,0.1)", "train.epochs=0")


def test_the_objective_is_checked_and_stays_out_of_the_run_id() -> None:
    with pytest.raises(ConfigError, match=r"invalid objective='test_acc': allowed: val_acc \|"):
        planned("objective=test_acc")
    plain = expand(TINY)[0].run_id
    for setting in ["objective=val_loss", "logger=tensorboard", "dataset.augment=false"]:
        assert expand([*TINY, setting])[0].run_id == plain
    assert expand([*TINY, "dataset.augment=true"])[0].run_id != plain
