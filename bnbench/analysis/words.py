"""Config keys and values in words, as every table, verdict cell and figure names them: a
key by what it is ("BN placement", not model.placement), each key in words of its own (two
keys read alike would make two settings one), a value as a reader says it (yes/no, not
True/False; "none" for a setting that does not apply)."""

from __future__ import annotations

import math

import numpy as np

KEY_WORDS = {
    "model.norm": "norm",
    "model.placement": "BN placement",
    "model.activation": "activation",
    "model.init": "init",
    "model.init_scale": "init scale",
    "model.depth": "convs per stage",
    "model.dropout": "block dropout rate",
    "model.dropout_position": "block dropout position",
    "model.dropout_kind": "dropout kind",
    "model.head_dropout": "head dropout",
    "model.head_norm": "head BN",
    "model.ghost_batch_size": "ghost batch",
    "model.groups": "groups",
    "model.noise_std": "BN noise",
    "model.bn_momentum": "BN momentum",
    "model.affine": "BN affine",
    "model.widths": "widths",
    "optim.lr": "LR",
    "optim.name": "optimizer",
    "optim.schedule": "LR schedule",
    "optim.weight_decay": "weight decay",
    "train.batch_size": "batch size",
    "train.epochs": "epochs",
    "dataset.train_subset": "training images",
}


def key_text(column: str) -> str:
    """A config key in words (KEY_WORDS), else its last dotted part."""
    return KEY_WORDS.get(column, column.rsplit(".", 1)[-1].replace("_", " "))


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_value(value) -> str:
    """A value in words: yes/no for booleans, "none" for a missing value."""
    if missing(value):
        return "none"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value).replace("_", " ")


def override_text(value) -> str:
    """A value as an override spells it, for `key=value` text: fashion_mnist, False, null."""
    if missing(value):
        return "null"
    return f"{value:g}" if isinstance(value, float) else str(value)
