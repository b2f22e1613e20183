"""Arms and pairing, what every measure starts from: which runs belong to an arm, each arm
at its own best setting of the `over` keys (chosen on mean validation accuracy over seeds,
never on test), one value per seed, and treatment - control for the seeds both arms have.

Reads tables only; never imports torch.
"""

from __future__ import annotations

import pandas as pd

from bnbench.run_stats import scored

Arm = dict  # {config key: value or list of values}


def in_arm(runs: pd.DataFrame, arm: Arm) -> pd.Series:
    """Which runs belong to the arm: every key equal to its value (or one of its values)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in arm.items():
        if key not in runs.columns:
            raise KeyError(f"arm key {key!r} is not a config key of this sweep's runs")
        values = value if isinstance(value, list) else [value]
        column = runs[key]
        wanted = column.isna() if values == [None] else column.isin(values)
        mask &= wanted
    return mask


def best_setting(runs: pd.DataFrame, over: list[str], select: str = "val_acc") -> pd.DataFrame:
    """The runs at the setting of `over` with the highest mean `select` over seeds."""
    if not over or runs.empty:  # an arm with no finished runs yet pairs with nothing
        return runs
    score = runs.assign(_score=scored(runs, select))
    means = score.groupby(over, dropna=False)["_score"].mean()
    best = means.idxmax()
    best = best if isinstance(best, tuple) else (best,)
    mask = pd.Series(True, index=runs.index)
    for key, value in zip(over, best, strict=True):
        mask &= runs[key].isna() if pd.isna(value) else runs[key].eq(value)
    return runs[mask]


def setting_label(runs: pd.DataFrame, over: list[str]) -> str:
    if not over or runs.empty:
        return ""
    first = runs.iloc[0]
    return ", ".join(f"{key.split('.')[-1]}={fmt_setting(first[key])}" for key in over)


def per_seed(runs: pd.DataFrame, values: pd.Series) -> pd.Series:
    """One value per seed (the mean where an arm has several runs of one seed)."""
    return values.groupby(runs["seed"]).mean()


def pair(treated: pd.Series, controlled: pd.Series, cell: str) -> pd.DataFrame:
    """treatment - control for the seeds both arms have a value for."""
    both = treated.dropna().index.intersection(controlled.dropna().index)
    diff = treated[both] - controlled[both]
    return pd.DataFrame({"cell": cell, "seed": both, "diff": diff.to_numpy()})


def paired_at_best(runs, values, treatment, control, over, select, cell) -> pd.DataFrame:
    """Each arm at its own best `over` setting, then paired by seed."""
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        chosen = best_setting(runs[in_arm(runs, arm)], over, select)
        arms[name] = (per_seed(chosen, values[chosen.index]), setting_label(chosen, over))
    labels = f" ({arms['treatment'][1]} vs {arms['control'][1]})" if over else ""
    return pair(arms["treatment"][0], arms["control"][0], cell + labels)


def split_by(runs: pd.DataFrame, by: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(label, runs) per value of the `by` keys, or one group of all runs."""
    if not by:
        return [("", runs)]
    groups = runs.groupby(by, dropna=False, sort=True)
    return [(group_label(by, key), group) for key, group in groups]


def short_key(key: str) -> str:
    return key.split(".")[-1]


def fmt_setting(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_label(keys: list[str], values) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{short_key(k)}={fmt_setting(v)}" for k, v in zip(keys, values, strict=True))
