"""The command line's overrides, checked before any job is composed: parsed by Hydra's
grammar, keys known to the schema, sweeps of a bounded size, launcher settings, group names;
and Hydra's and OmegaConf's errors in one line, with the nearest key where one is
mistyped."""

from __future__ import annotations

import math
import re

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, RangeSweep
from hydra.errors import HydraException

from bnbench.config import paths
from bnbench.config.identity import as_tree, flatten
from bnbench.config.schema import Config, ConfigError


def seed_override(seeds) -> str:
    """The sweep over these seeds as one override: [100, 101] -> "seed=100,101"."""
    return f"seed={','.join(str(s) for s in seeds)}"


def with_suggestion(message: str) -> str:
    """An unknown key's error, plus the nearest known key: `lr` -> "did you mean optim.lr?"."""
    match = re.search(r"Could not override '([^']+)'", message)
    nearest = nearest_key(match.group(1)) if match else None
    return f"{message}; did you mean {nearest}?" if nearest else message


def nearest_key(key: str) -> str | None:
    """The config key a mistyped or unqualified one most likely means."""
    import difflib

    keys = list(flatten(as_tree(Config())))
    leaf = key.lstrip("+~").rsplit(".", 1)[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(key.lstrip("+~"), keys, n=1, cutoff=0.75)
    if close:
        return close[0]
    leaves: dict[str, str] = {}
    for k in keys:
        leaves.setdefault(k.rsplit(".", 1)[-1], k)
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.75)
    return leaves[close[0]] if close else None


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


MAX_PLANNED_RUNS = 100_000  # a plan past this is a typo (seed=range(0,100000000)), not a sweep
QUOTE_HINT = (
    "unquoted values hold ASCII letters, digits and _-+./:@ only; quote any other: key='value'"
)


def parse(parser: OverridesParser, lines: list[str]) -> list[Override]:
    try:
        return parser.parse_overrides(lines)
    except HydraException as error:
        text = one_line(error)
        if "LexerNoViableAlt" in text:  # a character the grammar does not allow unquoted
            line = next((x for x in lines if not x.isascii()), text.split(": ", 1)[-1])
            raise ConfigError(f"invalid {line}: {QUOTE_HINT}") from None
        raise ConfigError(text) from None


def check_keys(parsed: list[Override]) -> None:
    """Refuse an override that names no setting: `=1`, a key added with + or ++ that is not
    in the schema (it would change the run id, not the run), a setting deleted with ~."""
    values = set(flatten(as_tree(Config())))
    roots = [paths.CONF_DIR, *paths.user_config_dirs()]
    groups = {d.name for root in roots for d in root.iterdir() if d.is_dir()}
    for o in parsed:
        key = o.key_or_group
        if not key:
            raise ConfigError(f"invalid {o.input_line!r}: an override is KEY=VALUE")
        if key.startswith("hydra") or key in groups:
            continue
        if o.is_delete() and key in values:
            raise ConfigError(f"invalid {o.input_line}: a setting cannot be deleted; set it")
        if (o.is_add() or o.is_force_add()) and key not in values:
            nearest = nearest_key(key)
            hint = f"; did you mean {nearest}?" if nearest else ""
            raise ConfigError(f"invalid {o.input_line}: {key} is not a bnbench setting{hint}")


def check_size(parsed: list[Override]) -> None:
    """Refuse a plan of more than MAX_PLANNED_RUNS runs, counted before any is listed."""
    sizes = {o.get_key_element(): _sweep_size(o) for o in parsed}  # a later one replaces
    total = math.prod(sizes.values())
    if total > MAX_PLANNED_RUNS:
        raise ConfigError(
            f"the sweep has {total:,} runs; at most {MAX_PLANNED_RUNS:,} are planned at once: "
            "split it into several sweeps"
        )


def _sweep_size(o: Override) -> int:
    if not o.is_sweep_override():
        return 1
    value = o.value()
    if isinstance(value, RangeSweep):
        if not value.step:
            raise ConfigError(f"invalid {o.input_line}: a range's step must not be 0")
        return max(0, math.ceil((value.stop - value.start) / value.step))
    return sum(1 for _ in o.sweep_string_iterator())


def check_launcher(launcher) -> None:
    """joblib's n_jobs: a number of workers, or -1 for every core (0 starts none)."""
    if launcher is not None and launcher.get("n_jobs", 1) == 0:
        raise ConfigError(
            "invalid hydra.launcher.n_jobs=0: must be a positive number of workers, "
            "or negative (-1: every core)"
        )


def check_group_names(job: list[str], cfg: Config) -> None:
    """`optim=adam optim.name=sgd`: the name contradicts the group's choice; refuse it."""
    for group in ("optim", "dataset"):
        chosen = [o.split("=", 1)[1] for o in job if o.startswith(f"{group}=")]
        name = getattr(cfg, group).name
        if chosen and chosen[-1] != name and any(o.startswith(f"{group}.name=") for o in job):
            raise ConfigError(
                f"invalid {group}.name={name!r}: contradicts {group}={chosen[-1]}; "
                f"choose one of them"
            )
