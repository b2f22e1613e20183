"""A run's identity: which config keys say what a run computes, and the id they hash to.

Same settings, same id, same directory: a rerun skips completed runs. Keys that only say
where or how a run executes stay out, and so does a key added later while it holds the
value every earlier run had.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bnbench.config.schema import Config

# Keys that say where or how a run executes, not what it computes.
NOT_IDENTITY = (
    "dataset.data_dir",
    "sweep",
    "results_dir",
    "device",
    "threads",
    "progress",
    "protocols",
    "objective",  # what a sweeper reads back, not what the run computes
    "logger.name",  # loggers copy the rows elsewhere; the metrics are the same
    "logger.tracking_uri",
    "train.checkpoint",
    "train.channels_last",  # memory layout: like threads, changes speed, not the experiment
    "train.test_every_epoch",  # the final test metrics are the same either way
    "train.val_every_epochs",  # so are the final validation metrics: only the curve thins
    "train.fused_optimizer",  # speed switches: equal numbers within float32 rounding
    "train.compile",
)

# Keys added after runs were recorded, with the value every earlier run had: at that value a
# key stays out of the id, so existing runs keep their ids (and a rerun skips them).
ADDED_LATER = {
    "model.head_norm": False,
    "train.val_every_epochs": 1,
    "dataset.augment": False,
}


# Model settings that only some norms read (model.bn_momentum also the head's BN under
# model.head_norm). Under any other norm a setting has no effect, so the id hashes it at its
# default: `model.norm=none model.ghost_batch_size=16` is the run `model.norm=none` is, and
# every run recorded at the defaults keeps its id.
READ_BY_NORMS = {
    "model.ghost_batch_size": ("batch",),
    "model.groups": ("group",),
    "model.noise_std": ("noisy_batch",),
    "model.affine": ("batch", "noisy_batch", "group"),
    "model.bn_momentum": ("batch", "noisy_batch"),
}


def settings(cfg: Config) -> dict:
    """The resolved config without paths, launcher and device settings: what a run computes."""
    return {k: v for k, v in flatten(as_tree(cfg)).items() if k not in NOT_IDENTITY}


def identity(cfg: Config) -> dict:
    """What the run id hashes: the settings, a setting its norm does not read at its default,
    less a key added later at its old value."""
    return identity_of(settings(cfg))


def identity_of(flat: dict) -> dict:
    """identity() of flattened settings (a run's config.yaml, say)."""
    ids = {}
    for key, value in flat.items():
        if _no_effect(key, flat):
            value = DEFAULTS[key]
        if not (key in ADDED_LATER and ADDED_LATER[key] == value):
            ids[key] = value
    return ids


def _no_effect(key: str, flat: dict) -> bool:
    norms = READ_BY_NORMS.get(key)
    if norms is None or flat.get("model.norm") in norms:
        return False
    return not (key == "model.bn_momentum" and flat.get("model.head_norm"))


def as_tree(node: Any) -> Any:
    """asdict without its deep copies (5x faster; planning 10,000 runs hashes each one)."""
    if hasattr(node, "__dataclass_fields__"):
        return {name: as_tree(value) for name, value in vars(node).items()}
    return node


def run_id(cfg: Config) -> str:
    """Short stable hash of what the run computes: same config, same id, same directory."""
    return hash_id(identity(cfg))


def run_id_of(flat: dict) -> str:
    """The run id of a flattened config (config.yaml as written), paths and devices in it."""
    return hash_id(identity_of({k: v for k, v in flat.items() if k not in NOT_IDENTITY}))


def hash_id(ids: dict) -> str:
    text = json.dumps(ids, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


DEFAULTS = flatten(as_tree(Config()))  # every setting's default
