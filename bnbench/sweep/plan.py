"""Expand command-line overrides into the runs they mean, validate all of them, mark the done ones.

The expansion is Hydra's own (its override parser, with the config loader that `glob()` and
group sweeps need, and BasicSweeper.split_arguments over the experiment's
`hydra.sweeper.params` plus the command line), so the plan lists exactly the jobs that the
launcher will start; every job is composed and checked before any of them trains. A sweeper
that picks its trials while it trains (Optuna's) cannot be planned: `expand` says so with
NotPlannable, after checking the settings every trial shares.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bnbench.config import paths
from bnbench.config.identity import as_tree, flatten, run_id
from bnbench.config.schema import Config, ConfigError, register_configs, to_config
from bnbench.config.validation import validate
from bnbench.store.files import FINISHED, run_path, run_status, sweep_dir
from bnbench.sweep.overrides import (
    check_group_names,
    check_keys,
    check_launcher,
    check_size,
    one_line,
    parse,
    with_suggestion,
)

CONF_DIR = str(paths.CONF_DIR)  # Hydra wants a string


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# Where each run's files go is results_dir/sweep/runs/<run_id>; Hydra's own output keys would
# only move multirun.yaml.
PLACEMENT_KEYS = {"hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir"}


class NotPlannable(Exception):
    """The configured sweeper chooses its trials as results come in: no plan to list."""

    def __init__(self, sweeper: str, config: Config) -> None:
        super().__init__(
            f"hydra/sweeper={sweeper} chooses each trial from the results before it, so its "
            "trials cannot be planned ahead; the settings they share are valid, and each "
            "trial is checked as it starts"
        )
        self.sweeper, self.config = sweeper, config


@dataclass
class PlannedRun:
    overrides: list[str]  # the job's own overrides, as the launcher will receive them
    config: Config
    run_id: str
    status: str  # new | running | failed | completed | diverged

    @property
    def done(self) -> bool:
        return self.status in FINISHED


def expand(
    overrides: list[str],
    multirun: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[PlannedRun]:
    """The runs `bnbench run OVERRIDES [-m]` would launch; raises ConfigError on bad input.
    progress(done, total) is called after each job is composed and checked."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        # glob() and group sweeps list a group's options through the config loader
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().hydra.config_loader)
        parsed = parse(parser, overrides)
        _refuse_placement(parsed)
        check_keys(parsed)
        sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
        if sweeps and not multirun:
            raise ConfigError(
                f"invalid {sweeps[0]}: a sweep over several values needs -m (multirun)"
            )
        jobs = [overrides]
        if multirun:
            jobs = _sweep_jobs(parser, parsed)
        plan, composed = [], {}
        for done, job in enumerate(jobs, 1):
            cfg = _compose_job(job, composed)
            check_group_names(job, cfg)
            validate(cfg)
            rid = run_id(cfg)
            plan.append(PlannedRun(list(job), cfg, rid, run_status(run_path(sweep_dir(cfg), rid))))
            if progress is not None:
                progress(done, len(jobs))
    GlobalHydra.instance().clear()
    return plan


def _refuse_placement(parsed: list) -> None:
    for override in parsed:
        if override.key_or_group in PLACEMENT_KEYS:
            raise ConfigError(
                f"invalid {override.input_line}: bnbench writes every run file under "
                "results_dir/sweep; set results_dir=DIR (and sweep=NAME) instead"
            )


def _sweep_jobs(parser: OverridesParser, parsed: list) -> list[list[str]]:
    """The jobs of a multirun, as the configured sweeper would launch them: the experiment's
    `hydra.sweeper.params` first, then the command line. Raises NotPlannable for a sweeper
    other than the basic one, ConfigError for a sweep the basic sweeper cannot expand."""
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    hydra_node = compose_overrides(fixed, hydra=True).hydra
    check_launcher(hydra_node.launcher)
    if hydra_node.sweeper._target_ != BASIC_SWEEPER:
        base = _typed(compose_overrides(fixed))
        validate(base)
        raise NotPlannable(hydra_node.runtime.choices["hydra/sweeper"], base)
    params = hydra_node.sweeper.params or {}
    lines = parse(parser, [f"{key}={value}" for key, value in params.items()]) + parsed
    for override in lines:
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise ConfigError(
                f"invalid {override.input_line}: the basic sweeper lists values, and an "
                "interval is a range to sample; add hydra/sweeper=optuna "
                "(pip install 'bnbench[optuna]')"
            )
    check_size(lines)
    return BasicSweeper.split_arguments(lines, None)[0]


def _compose_job(job: list[str], composed: dict) -> Config:
    """The job's config. Composing costs ~75 ms, so jobs that differ only in plain values of
    settings (`seed=3`, `optim.lr=0.1`) are composed once: the others are a copy with those
    values set, each converted and checked against the schema by OmegaConf as composing
    does, which is the config (and run id) that composing them gives, since no value of the
    composed config interpolates another (checked)."""
    values = _plain_values(job)
    # The same other overrides and the same keys set: a copy of one such job, values set anew.
    shape = (tuple(o for o in job if o not in values), tuple(k for k, _ in values.values()))
    base = composed.get(shape)
    if base is None:
        raw = compose_overrides(job)
        cfg = _typed(raw)
        if values and not _interpolates(raw):
            composed[shape] = cfg
        return cfg
    cfg = _copy(base)
    try:
        for key, value in values.values():
            section, _, leaf = key.rpartition(".")
            setattr(getattr(cfg, section) if section else cfg, leaf, _converted(key, value))
    except OmegaConfBaseException:  # a bad value: composing it says why, as for any job
        return _typed(compose_overrides(job))
    return cfg


def _plain_values(job: list[str]) -> dict[str, tuple[str, Any]]:
    """{override: (key, value)} for the job's plain `key=value` settings of schema keys."""
    values = {}
    for line in job:
        plain = _plain_value(line)
        if plain is not None:
            values[line] = plain
    return values


# A sweep's jobs share every override but their own values: each distinct line is parsed
# once (parsing was 60% of planning 10,000 seeds). Bounded like a plan (check_size).
@functools.lru_cache(maxsize=1 << 17)
def _plain_value(line: str) -> tuple[str, Any] | None:
    """(key, value) when the override plainly sets a schema key, else None."""
    (o,) = _parser().parse_overrides([line])
    key, value = o.key_or_group, o.value()
    plain = isinstance(value, (str, int, float, bool, list)) or value is None
    if (
        key in SCHEMA_KEYS
        and plain
        and not (o.is_add() or o.is_force_add() or o.is_delete() or o.package)
        and "${" not in o.input_line
    ):
        return key, value
    return None


SCHEMA_KEYS = frozenset(flatten(as_tree(Config())))


@functools.cache
def _schema_node():
    return OmegaConf.structured(Config)


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


def _converted(key: str, value: Any) -> Any:
    """value as composing sets key to it: converted to the field's type, or refused."""
    node = _schema_node()
    OmegaConf.update(node, key, value, merge=False)
    result = OmegaConf.select(node, key)
    return OmegaConf.to_container(result) if OmegaConf.is_config(result) else result


def _copy(cfg: Config) -> Config:
    """A deep copy of a config (sections hold scalars and flat lists); 10x faster than
    copy.deepcopy."""
    twin = copy.copy(cfg)
    for name, section in vars(cfg).items():
        if isinstance(section, list):  # a top-level list (protocols) is the twin's own too
            setattr(twin, name, list(section))
        elif hasattr(section, "__dataclass_fields__"):
            section = copy.copy(section)
            for key, value in vars(section).items():
                if isinstance(value, list):
                    setattr(section, key, list(value))
            setattr(twin, name, section)
    return twin


def _interpolates(cfg) -> bool:
    """Whether any value interpolates another (`${seed}`): then values cannot just be set."""
    return "${" in OmegaConf.to_yaml(cfg, resolve=False)


def compose_overrides(overrides: list[str], hydra: bool = False):
    """The composed DictConfig (with Hydra's own node when hydra=True)."""
    try:
        overrides = [*overrides, *paths.searchpath_overrides()]  # the user's --config-dir
        return compose("config", overrides=overrides, return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
        message = with_suggestion(one_line(error))
        if "Could not find 'hydra/sweeper/optuna'" in message:  # the plugin is an extra
            message += "; pip install 'bnbench[optuna]'"
        raise ConfigError(message) from None


def config_groups() -> dict[str, list[str]]:
    """The config groups (dataset, optim, profile, experiment, ...) and their options, shipped
    and the user's; the groups that experiments and profiles choose for themselves (the arm
    groups, profile_experiment) are left out."""
    groups: dict[str, list[str]] = {}
    for root in [paths.CONF_DIR, *paths.user_config_dirs()]:
        for yaml_file in sorted(root.glob("*/*.yaml")) + sorted(root.glob("hydra/*/*.yaml")):
            group = str(yaml_file.parent.relative_to(root))
            if not group.endswith("_arm") and group != "profile_experiment":
                groups.setdefault(group, []).append(yaml_file.stem)
    groups["hydra/sweeper"] = ["basic", "optuna", *groups.get("hydra/sweeper", [])]
    groups["hydra/launcher"] = [
        "basic",
        "joblib",
        "submitit_local",
        *groups.get("hydra/launcher", []),
    ]
    return {g: sorted(set(options)) for g, options in sorted(groups.items())}


def _typed(cfg) -> Config:
    try:
        return to_config(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(one_line(error)) from None
