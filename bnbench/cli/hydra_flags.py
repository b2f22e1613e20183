"""Hydra's app flags under `bnbench run`: --info and --hydra-help go to Hydra's own command
line, --cfg job|hydra|all (with --resolve and --package) prints as Hydra prints; the ones that would
take a run's files or config out of bnbench's hands are refused in one line that says what
to use instead."""

from __future__ import annotations

from bnbench.cli.terminal import console, fail
from bnbench.config.schema import register_configs
from bnbench.sweep.job import hydra_command
from bnbench.sweep.plan import CONF_DIR, PlannedRun, compose_overrides

CFG_PARTS = ("job", "hydra", "all")
# --info's optional argument, as Hydra spells it; `bnbench run --info` alone shows all.
INFO_TOPICS = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")

REFUSED = {
    "--config-name": "bnbench composes its own conf/config.yaml; put your file in DIR/experiment/"
    "NAME.yaml and pass --config-dir DIR experiment=NAME",
    "--config-path": "use --config-dir DIR, searched beside the shipped conf/",
    "--shell-completion": "bnbench completes commands, options and run's overrides itself: "
    "bnbench --install-completion",
}


def refuse_flags(config_name: str | None, config_path: str | None, shell: bool) -> None:
    for flag, given in [
        ("--config-name", config_name),
        ("--config-path", config_path),
        ("--shell-completion", shell),
    ]:
        if given:
            fail(f"{flag} is not supported by bnbench run: {REFUSED[flag]}")


def info_topic(overrides: list[str]) -> tuple[str, list[str]]:
    """--info's topic, when the first argument names one, and the overrides after it."""
    if overrides and overrides[0] in INFO_TOPICS:
        return overrides[0], overrides[1:]
    return "all", overrides


def check_cfg(part: str | None) -> None:
    if part is not None and part not in CFG_PARTS:
        fail(f"invalid --cfg={part!r}: allowed: {' | '.join(CFG_PARTS)}")


def show_info(topic: str, plan: list[PlannedRun]) -> None:
    """Hydra's --info, on the first planned run (Hydra composes one config, not a sweep)."""
    hydra_command(["--info", topic, *plan[0].overrides])


def show_cfg(part: str, resolve: bool, package: str | None, plan: list[PlannedRun]) -> None:
    """--cfg job|hydra|all (with --resolve and --package) as Hydra prints it, once per planned
    run. Resolved against the whole config, so that hydra.sweep.dir's ${results_dir} resolves
    (Hydra's own --cfg hydra --resolve cannot)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for planned in plan:
            cfg = compose_overrides(planned.overrides, hydra=True)
            HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the hydra node
            tree = OmegaConf.to_container(cfg, resolve=resolve)  # resolved as a whole
            if part != "all":
                tree = {k: v for k, v in tree.items() if (k == "hydra") == (part == "hydra")}
            header = f"# run {planned.run_id}\n" if len(plan) > 1 else ""
            if package:
                header += f"# @package {package}\n"
                tree = OmegaConf.select(OmegaConf.create(tree), package)
            text = (
                OmegaConf.to_yaml(tree)
                if OmegaConf.is_config(tree) or isinstance(tree, dict)
                else f"{tree}\n"
            )
            console.print(header + text, markup=False, highlight=False, end="")
    GlobalHydra.instance().clear()
