"""Statistics over the `runs` table of bnbench.analysis.tables: each run's scored metric, means
with 95% CIs per configuration, paired treatment - control differences and their effects per
cell of the swept factors, each norm's best configuration.

A diverged run is a result, not missing data: its accuracies (final and best) count at
chance (1/num_classes, the run's `chance_acc`), and every table says how many diverged
(`n_diverged`). Its losses are undefined, so loss means skip it (n_diverged still shows it).
The numbers themselves (CIs, p-values, Holm) come from bnbench.analysis.stats.
"""

from __future__ import annotations

import pandas as pd

from bnbench.analysis.columns import (
    factors,
    identity_columns,
    one_norm_keys,
    scored,
    varying_columns,
)
from bnbench.analysis.stats import holm, mean_difference, t_half_width


def train_accuracy(runs: pd.DataFrame) -> tuple[str, str]:
    """The training accuracy a train - test gap is taken from, and its name: eval mode after
    the last epoch (train.eval_train) where every completed run has it, as the test set is
    scored; otherwise the mean over the last epoch's steps in train mode (dropout on, batch
    statistics, the weights still moving)."""
    completed = runs["status"].eq("completed")
    if "train_eval_acc" in runs and completed.any():
        if runs.loc[completed, "train_eval_acc"].notna().all():
            return "train_eval_acc", "eval-mode train accuracy"
    return "train_acc", "train-mode accuracy over the last epoch"


def mean_ci_by(frame: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Per group of `by`: <col>_mean, <col>_lo, <col>_hi, <col>_n (t-interval), NaN ignored."""
    grouped = frame.groupby(by, dropna=False, sort=True)[columns]
    mean, sd, n = grouped.mean(), grouped.std(), grouped.count()
    half = pd.DataFrame(t_half_width(sd, n), index=mean.index, columns=columns)
    parts = {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}
    out = pd.concat([p.add_suffix(f"_{name}") for name, p in parts.items()], axis=1)
    return out[[f"{c}_{name}" for c in columns for name in parts]]


def summarize(runs: pd.DataFrame, metrics=("val_acc", "test_acc"), by=None) -> pd.DataFrame:
    """Mean and 95% CI over seeds per configuration (norm and swept factors by default),
    with n runs and n_diverged; diverged runs count at chance accuracy."""
    by = list(by) if by is not None else ["model.norm", *factors(runs)]
    scores = runs[by].assign(**{m: scored(runs, m) for m in metrics})
    scores["diverged"] = runs["status"].eq("diverged")
    grouped = scores.groupby(by, dropna=False, sort=True)
    counts = pd.DataFrame({"n": grouped.size(), "n_diverged": grouped["diverged"].sum()})
    return counts.join(mean_ci_by(scores, by, list(metrics))).reset_index()


def paired_differences(
    runs: pd.DataFrame,
    metric: str,
    factor: str = "model.norm",
    treatment: str = "batch",
    control: str = "none",
) -> pd.DataFrame:
    """treatment - control per matched pair: runs that share every config key but `factor`,
    seed included. Columns: the pairing keys, treatment, control, diff, and each side's
    run_id and status. Unmatched runs have no row. A key only one of two norms reads
    (noisy BN's noise level against the plain net) is not matched on; the rows carry the
    treatment's value."""
    keys = [c for c in identity_columns(runs) if c != factor]
    values = runs[keys].assign(value=scored(runs, metric), run_id=runs["run_id"])
    values["status"] = runs["status"]
    arm_t = values[runs[factor].eq(treatment)]
    arm_c = values[runs[factor].eq(control)]
    one_sided = [k for k in one_norm_keys(factor, treatment, control) if k in keys]
    matched = [k for k in keys if k not in one_sided]
    pairs = arm_t.merge(
        arm_c.drop(columns=one_sided), on=matched, suffixes=("_treatment", "_control")
    )
    pairs = pairs.rename(columns={"value_treatment": "treatment", "value_control": "control"})
    pairs["diff"] = pairs["treatment"] - pairs["control"]
    return pairs


def effects(
    runs: pd.DataFrame,
    metrics=("val_acc", "test_acc"),
    factor: str = "model.norm",
    treatment: str = "batch",
    control: str = "none",
) -> pd.DataFrame:
    """The paired effect per cell of the other swept factors: mean diff, CI, n, p, method,
    diverged counts per arm; `p_holm` is Holm-adjusted among the rows of the same metric."""
    cells = [c for c in varying_columns(runs) if c != factor]
    rows = []
    for metric in metrics:
        pairs = paired_differences(runs, metric, factor, treatment, control)
        groups = pairs.groupby(cells, dropna=False, sort=True) if cells else [((), pairs)]
        for key, group in groups:
            if group.empty:
                continue
            key = key if isinstance(key, tuple) else (key,)
            row = dict(zip(cells, key, strict=True))
            row |= {"comparison": f"{treatment} - {control}", "metric": metric}
            row |= mean_difference(group["diff"])
            row["n_diverged_treatment"] = int(group["status_treatment"].eq("diverged").sum())
            row["n_diverged_control"] = int(group["status_control"].eq("diverged").sum())
            rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:  # one family per metric: val and test rows are not one family
        table["p_holm"] = table.groupby("metric")["p"].transform(lambda p: holm(p.to_numpy()))
    return table


def best_cells(runs: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Per norm, the summary row of its configuration with the highest mean `metric`
    (choose on validation accuracy, never on test)."""
    table = summarize(runs, [metric])
    best = table.groupby("model.norm", sort=True)[f"{metric}_mean"].idxmax()
    return table.loc[best].reset_index(drop=True)
