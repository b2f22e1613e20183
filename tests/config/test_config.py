"""Bad input is refused before any training, with one line naming key, value and what is allowed."""

from __future__ import annotations

import pytest
from conftest import TINY, bnbench, tiny_config

from bnbench.config.identity import run_id
from bnbench.config.schema import ConfigError
from bnbench.sweep.plan import expand

REFUSED = [
    (["optim.lr=-0.1"], "optim.lr=-0.1", "> 0"),
    (["optim.lr=0"], "optim.lr=0", "> 0"),
    (["train.batch_size=0"], "train.batch_size=0", "[1, 256]"),
    (["train.batch_size=257"], "train.batch_size=257", "[1, 256]"),
    (["model.dropout=1.0"], "model.dropout=1.0", "[0, 1)"),
    (["model.dropout=-0.2"], "model.dropout=-0.2", "[0, 1)"),
    (["model.head_dropout=1.5"], "model.head_dropout=1.5", "[0, 1)"),
    (["model.norm=layer"], "model.norm='layer'", "none | batch | group | noisy_batch"),
    (["model.init=zeros"], "model.init='zeros'", "torch_default"),
    (["model.activation=swish"], "model.activation='swish'", "relu | sigmoid"),
    (["dataset.name=imagenet"], "dataset.name='imagenet'", "fashion_mnist | mnist"),
    (["model.ghost_batch_size=5"], "model.ghost_batch_size=5", "divide train.batch_size=32"),
    (["model.norm=group", "model.groups=3"], "model.groups=3", "divide every width"),
    (["model.init_scale=0"], "model.init_scale=0", "> 0"),
    (["train.epochs=0"], "train.epochs=0", "must be in [1, 100000]"),
    (["model.placement=middle"], "model.placement='middle'", "pre | post"),
]


@pytest.mark.parametrize("overrides, key_value, allowed", REFUSED)
def test_bad_value_is_refused_naming_key_value_and_allowed(overrides, key_value, allowed):
    with pytest.raises(ConfigError) as info:
        expand([*TINY, *overrides])
    message = str(info.value)
    assert key_value in message and allowed in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.colour=red"], "model.colour"),  # unknown key
        (["optim.lr=fast"], "optim.lr"),  # wrong type
        (["experiment=nope"], "experiment/nope"),  # unknown experiment
        (["model.norm=batch,none"], "needs -m"),  # sweep without multirun
    ],
)
def test_unknown_keys_types_and_groups_get_one_line(overrides, expected):
    with pytest.raises(ConfigError) as info:
        expand([*TINY, *overrides])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_one_bad_value_in_a_sweep_refuses_the_whole_sweep():
    with pytest.raises(ConfigError, match="optim.lr=-1"):
        expand([*TINY, "optim.lr=0.1,-1", "seed=0,1"], multirun=True)


def test_cli_refuses_before_training_with_one_line_and_nonzero_exit(tmp_path):
    out = bnbench("run", *TINY, f"results_dir={tmp_path}", "optim.lr=-1", cwd=tmp_path, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["bnbench: invalid optim.lr=-1.0: must be > 0"]
    assert not (tmp_path / "default").exists()  # nothing trained, nothing written


def test_sweep_expands_to_the_product_and_ids_are_stable(tmp_path):
    plan = expand([*TINY, f"results_dir={tmp_path}", "model.norm=batch,none", "seed=0,1"], True)
    assert [(p.config.model.norm, p.config.seed) for p in plan] == [
        ("batch", 0),
        ("batch", 1),
        ("none", 0),
        ("none", 1),
    ]
    assert len({p.run_id for p in plan}) == 4
    assert all(p.status == "new" for p in plan)


def test_run_id_ignores_where_and_how_but_not_what(tmp_path):
    base = tiny_config(tmp_path)
    assert run_id(base) == run_id(tiny_config(tmp_path / "elsewhere", device="cpu", threads=2))
    assert run_id(base) != run_id(tiny_config(tmp_path, seed=1))
    assert run_id(base) != run_id(tiny_config(tmp_path, optim__lr=0.1))


def test_the_default_run_id_is_pinned():
    """A run id names a directory of results: a refactoring that changes it orphans them."""
    from bnbench.config.identity import run_id
    from bnbench.config.schema import Config

    # 53a00a3c3f33 since 2026-11-23: each seed its own data draw (dataset.split_seed null)
    # and the evaluation keys (train.val_subset, val_every, eval_train)
    assert run_id(Config()) == "53a00a3c3f33"


def test_a_key_added_later_keeps_the_ids_of_runs_made_before_it(tmp_path):
    """model.head_norm came after the reference runs: at its old value it leaves the id as it
    was, set otherwise it makes a new one; a run directory without it reads as the old value."""
    from bnbench.config.identity import ADDED_LATER, identity, run_id, settings
    from bnbench.config.schema import Config
    from bnbench.store.files import write_config
    from bnbench.store.reader import read_config

    cfg = Config()
    assert "model.head_norm" not in identity(cfg) and ADDED_LATER["model.head_norm"] is False
    assert settings(cfg)["model.head_norm"] is False  # what tables show: every key
    cfg.model.head_norm = True
    assert identity(cfg)["model.head_norm"] is True and run_id(cfg) != run_id(Config())

    write_config(tmp_path / "config.yaml", Config())
    text = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(text.replace("  head_norm: false\n", ""))
    assert "head_norm" not in (tmp_path / "config.yaml").read_text()
    assert read_config(tmp_path)["model.head_norm"] is False
