"""The runs table's columns (bnbench.analysis.tables): which config keys say what a run
computed, which of them a sweep varied (its factors), and each accuracy as it is scored,
with a diverged run at chance."""

from __future__ import annotations

from dataclasses import fields

import pandas as pd

from bnbench.config.identity import NOT_IDENTITY
from bnbench.config.schema import NORM_ONLY_KEYS, Config

TOP_LEVEL_KEYS = tuple(f.name for f in fields(Config))  # config keys without a dot: seed, sweep...
ACCURACY_METRICS = ("train_acc", "val_acc", "test_acc", "best_val_acc", "train_eval_acc")


def scored(runs: pd.DataFrame, metric: str) -> pd.Series:
    """The metric per run, with diverged runs at chance accuracy (NaN for their losses)."""
    values = runs[metric].astype(float)
    diverged = runs["status"].eq("diverged")
    if metric in ACCURACY_METRICS:
        return values.mask(diverged, runs["chance_acc"])
    return values.mask(diverged)


def identity_columns(runs: pd.DataFrame) -> list[str]:
    """Config columns that define what a run computes (seed included; paths, device not)."""
    config = [c for c in runs.columns if "." in c or c in TOP_LEVEL_KEYS]
    return [c for c in config if c not in NOT_IDENTITY]


def varying_columns(runs: pd.DataFrame) -> list[str]:
    """Identity columns, seed aside, with more than one value in the table."""
    columns = [c for c in identity_columns(runs) if c != "seed"]
    return [c for c in columns if runs[c].nunique(dropna=False) > 1]


def factors(runs: pd.DataFrame) -> dict[str, list]:
    """The swept factors besides seed and norm, each with its sorted distinct values."""
    return {c: sorted_values(runs[c]) for c in varying_columns(runs) if c != "model.norm"}


def sorted_values(column: pd.Series) -> list:
    values = column.drop_duplicates().tolist()
    return sorted(values, key=lambda v: (pd.isna(v), v if not pd.isna(v) else 0))


def one_norm_keys(factor: str, treatment, control) -> list[str]:
    """The NORM_ONLY_KEYS that exactly one of two compared norms reads."""
    if factor != "model.norm":
        return []
    return [k for k, only in NORM_ONLY_KEYS.items() if (only == treatment) != (only == control)]
