"""Expand command-line overrides into the runs they mean, validate all of them, mark the done ones.

The expansion is Hydra's own (BasicSweeper.split_arguments over the experiment's
`hydra.sweeper.params` plus the command line), so the plan lists exactly the jobs that
the launcher will start; every job is composed and checked before any of them trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from bnbench.config import Config, ConfigError, register_configs, run_id, to_config, validate
from bnbench.store import FINISHED, run_dir, run_status

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@dataclass
class PlannedRun:
    overrides: list[str]  # the job's own overrides, as the launcher will receive them
    config: Config
    run_id: str
    status: str  # new | running | failed | completed | diverged

    @property
    def done(self) -> bool:
        return self.status in FINISHED


def expand(overrides: list[str], multirun: bool = False) -> list[PlannedRun]:
    """The runs `bnbench run OVERRIDES [-m]` would launch; raises ConfigError on bad input."""
    register_configs()
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(one_line(error)) from None
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise ConfigError(f"invalid {sweeps[0]}: a sweep over several values needs -m (multirun)")

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        jobs = [overrides]
        if multirun:
            fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
            params = _compose(fixed, hydra=True).hydra.sweeper.params or {}
            lines = [f"{key}={value}" for key, value in params.items()] + list(overrides)
            jobs = BasicSweeper.split_arguments(parser.parse_overrides(lines), None)[0]
        plan = []
        for job in jobs:
            cfg = _compose(job)
            validate(cfg)
            plan.append(PlannedRun(list(job), cfg, run_id(cfg), run_status(run_dir(cfg))))
    GlobalHydra.instance().clear()
    return plan


def _compose(overrides: list[str], hydra: bool = False):
    try:
        cfg = compose("config", overrides=overrides, return_hydra_config=hydra)
        return cfg if hydra else to_config(cfg)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(one_line(error)) from None


def one_line(error: BaseException) -> str:
    """Hydra and OmegaConf explain over several lines and chained exceptions; keep the lines
    that say what is wrong, joined into one."""
    noise = ("full_key", "object_type", "reference_type", "To append", "Set the environment")
    kept: list[str] = []
    while error is not None and len(kept) < 3:
        for line in str(error).splitlines():
            line = line.strip().removeprefix("In 'config': ").rstrip(".")
            if line.startswith("Config search path"):
                break
            if line and not line.startswith(noise) and "$VALUE" not in line and line not in kept:
                kept.append(line)
        error = error.__cause__ or error.__context__
    text = ": ".join(kept)
    # "Available options in 'dataset':: cifar10: fashion_mnist" -> "...: cifar10, fashion_mnist"
    head, sep, options = text.partition("Available options in ")
    if sep:
        group, _, names = options.partition(":: ")
        text = f"{head}available options in {group}: {names.replace(': ', ', ')}"
    return re.sub(r"\s+", " ", text)
