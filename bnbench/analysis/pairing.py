"""Arms and pairing, what every measure starts from: which runs belong to an arm, each arm
at its own best setting of the `over` keys (chosen on mean validation accuracy over seeds,
never on test), one value per seed, and treatment - control for the seeds both arms have;
and how a cell names its arms, by what their runs differ in (arms_label).

Reads tables only; never imports torch.
"""

from __future__ import annotations

import pandas as pd

from bnbench.analysis.columns import scored, sorted_values
from bnbench.analysis.words import fmt_value, key_text

Arm = dict | list  # {config key: value or list of values}, or a list of such (any of them)


def in_arm(runs: pd.DataFrame, arm: Arm) -> pd.Series:
    """Which runs belong to the arm: every key equal to its value (or one of its values); for
    a list of arms, the runs of any of them."""
    if isinstance(arm, list):
        mask = pd.Series(False, index=runs.index)
        for part in arm:
            mask |= in_arm(runs, part)
        return mask
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
    """The runs at the setting of `over` with the best mean `select` over seeds: the highest
    accuracy, or the lowest loss (a diverged run's loss counts as infinite)."""
    if not over or runs.empty:  # an arm with no finished runs yet pairs with nothing
        return runs
    score = runs.assign(_score=selection_score(runs, select))
    means = score.groupby(over, dropna=False)["_score"].mean()
    best = means.idxmax()
    best = best if isinstance(best, tuple) else (best,)
    mask = pd.Series(True, index=runs.index)
    for key, value in zip(over, best, strict=True):
        mask &= runs[key].isna() if pd.isna(value) else runs[key].eq(value)
    return runs[mask]


def chosen_arms(runs: pd.DataFrame, arms: dict, over: list[str], select: str) -> dict:
    """{name: the arm's runs at its own best `over` setting}: how every measure that takes
    each arm at its best setting chooses it, and the convergence figure shows what it chose."""
    return {name: best_setting(runs[in_arm(runs, arm)], over, select) for name, arm in arms.items()}


def selection_score(runs: pd.DataFrame, select: str) -> pd.Series:
    """What best_setting maximizes: an accuracy, or minus a loss (-inf where diverged)."""
    if select.endswith("loss"):
        return -scored(runs, select).fillna(float("inf"))
    return scored(runs, select)


def arm_keys(*arms: Arm) -> list[str]:
    """The config keys the arms name, in the order first named."""
    keys: dict = {}
    for arm in arms:
        for part in arm if isinstance(arm, list) else [arm]:
            keys.update(dict.fromkeys(part))
    return list(keys)


def arms_label(treated: pd.DataFrame, controlled: pd.DataFrame, keys, over=()) -> str:
    """What the compared runs differ in, in words, the one name every measure gives its arms:
    each of `keys` on which the two arms' runs differ ("BN placement post vs pre"), then each
    `over` key at the setting each arm was taken at ("LR 0.1 vs 0.03", "LR 0.3 in both").
    Keys the arms share are left out: they do not say which arm is which."""
    parts = []
    for key in [*(k for k in keys if k not in over), *over]:
        t, c = values_text(treated, key), values_text(controlled, key)
        if t != c:
            parts.append(f"{key_text(key)} {t} vs {c}")
        elif key in over:
            parts.append(f"{key_text(key)} {t} in both")
    return ", ".join(parts)


def values_text(runs: pd.DataFrame, key: str) -> str:
    """The key's values among the runs in words ("0.2 or 0.5"), "no runs" for none."""
    if runs.empty or key not in runs:
        return "no runs"
    return " or ".join(fmt_value(v) for v in sorted_values(runs[key]))


def named(cell: str, treated: pd.DataFrame, controlled: pd.DataFrame, keys, over=()) -> str:
    """A cell with its arms named by what differs: 'test_acc (norm batch vs none)'."""
    arms = arms_label(treated, controlled, keys, over)
    return f"{cell} ({arms})" if arms else cell


def per_seed(runs: pd.DataFrame, values: pd.Series) -> pd.Series:
    """One value per seed (the mean where an arm has several runs of one seed)."""
    return values.groupby(runs["seed"]).mean()


def pair(treated: pd.Series, controlled: pd.Series, cell: str) -> pd.DataFrame:
    """treatment - control for the seeds both arms have a value for."""
    both = treated.dropna().index.intersection(controlled.dropna().index)
    diff = treated[both] - controlled[both]
    return pd.DataFrame({"cell": cell, "seed": both, "diff": diff.to_numpy()})


def arms_text(runs: pd.DataFrame, treatment: Arm, control: Arm) -> str:
    """What the two arms' runs differ in (arms_label), of the keys the arms name."""
    treated, controlled = runs[in_arm(runs, treatment)], runs[in_arm(runs, control)]
    return arms_label(treated, controlled, arm_keys(treatment, control))


def arms_cell(cell: str, runs: pd.DataFrame, treatment: Arm, control: Arm) -> str:
    """The cell with its arms named by what their runs differ in: 'x (norm batch vs none)'."""
    treated, controlled = runs[in_arm(runs, treatment)], runs[in_arm(runs, control)]
    return named(cell, treated, controlled, arm_keys(treatment, control))


def paired_at_best(runs, values, treatment, control, over, select, cell, keys=None):
    """Each arm at its own best `over` setting, then paired by seed; the cell names the arms
    by what differs (arms_label; of `keys`, by default every key the arms name)."""
    keys = arm_keys(treatment, control) if keys is None else keys
    chosen = chosen_arms(runs, {"treatment": treatment, "control": control}, over, select)
    arms = {name: per_seed(member, values[member.index]) for name, member in chosen.items()}
    label = named(cell, chosen["treatment"], chosen["control"], keys, over)
    return pair(arms["treatment"], arms["control"], label)


def pooled(parts: list[pd.DataFrame], cell: str) -> pd.DataFrame:
    """The mean of several cells' paired differences per seed, over the seeds every cell has:
    one cell whose opposite effects in the parts are averaged, not hidden in a mix of runs."""
    seeds = set.intersection(*(set(p["seed"]) for p in parts)) if parts else set()
    stacked = pd.concat([p[p["seed"].isin(seeds)] for p in parts], ignore_index=True)
    mean = stacked.groupby("seed", as_index=False)["diff"].mean()
    return mean.assign(cell=cell)[["cell", "seed", "diff"]]


def split_by(runs: pd.DataFrame, by: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(label, runs) per value of the `by` keys, or one group of all runs."""
    if not by:
        return [("", runs)]
    groups = runs.groupby(by, dropna=False, sort=True)
    return [(group_label(by, key), group) for key, group in groups]


def group_label(keys: list[str], values) -> str:
    """A `by` cell in words: 'activation relu, LR 0.1'."""
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{key_text(k)} {fmt_value(v)}" for k, v in zip(keys, values, strict=True))
