"""Shell completion (`bnbench --install-completion`): typer completes commands and options;
these complete the arguments it cannot know: run's overrides (as Hydra completes them:
groups, options, keys) and claim names."""

from __future__ import annotations

import typer


def complete_claim(incomplete: str) -> list[str]:
    """The claim names (the shipped claims.yaml's) that start with what is typed."""
    from bnbench.claims.registry import ClaimFileError, load_claims

    try:
        return [name for name in load_claims() if name.startswith(incomplete)]
    except ClaimFileError:
        return []


def complete_override(ctx: typer.Context, incomplete: str) -> list[str]:
    """Hydra's completion of an override (groups, options, keys), given the ones before it."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.plugins.completion_plugin import DefaultCompletionPlugin

    from bnbench.config.schema import register_configs
    from bnbench.sweep.plan import CONF_DIR

    before = [o for o in (ctx.params.get("overrides") or []) if o != incomplete]
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        plugin = DefaultCompletionPlugin(GlobalHydra.instance().hydra.config_loader)
        words = plugin._query("config", " ".join([*before, incomplete]))
    GlobalHydra.instance().clear()
    return words
