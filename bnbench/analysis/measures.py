"""The measures a claim can name in conf/claims.yaml: functions from a sweep's runs to paired
differences `treatment - control`, one per seed (and per cell, for measures split by a key).

Every measure has the signature

    measure(runs, sweep, treatment, control, **args) -> DataFrame[cell, seed, diff]

`runs` is the sweep's table (bnbench.analysis.tables, one row per finished run), `sweep` its
directory (for per-run files: evals.csv, probes.csv), `treatment` and `control` the two arms
as {config key: value or [values]}. Seeds pair the arms: the same seed is the same data
draw, data order and starting weights. Arms that may differ in a hyperparameter are each
taken at their own best value of the `over` keys, chosen on mean validation accuracy over
seeds (never on test). Accuracy differences are in percentage points.

A new claim that uses these measures needs only YAML; a new measure is one function here
(or, for one read from probes.csv, in bnbench.analysis.probe_measures), registered in
MEASURES. Reads files only; never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from bnbench.analysis.columns import scored
from bnbench.analysis.pairing import (
    arm_keys,
    arms_cell,
    arms_text,
    best_setting,
    chosen_arms,
    in_arm,
    named,
    pair,
    paired_at_best,
    per_seed,
    pooled,
    split_by,
)
from bnbench.analysis.probe_measures import (
    gradient_ratio_growth,
    percentile_drift,
    probe_mean,
    read_run_csvs,
)
from bnbench.analysis.words import key_text
from bnbench.store.files import EVALS_FILE, PROBES_FILE

TRAINS_FRACTION = 0.5  # "trains": final val accuracy at least halfway from chance to the best


# --- the measures --------------------------------------------------------------------------


def final_metric(
    runs, sweep, treatment, control, metric="test_acc", over=(), by=(), pool=(), select="val_acc"
) -> pd.DataFrame:
    """A final metric (accuracies in points, a diverged run at chance), each arm at its best
    `over` setting, one cell per value of the `by` keys; with `pool`, the arms are compared
    within each value of the pool keys and the differences averaged per seed (one cell)."""
    values = scored(runs, metric) * (100 if metric.endswith("acc") else 1)
    keys = [] if pool else None  # pooled: the parts name their settings, the cell the arms
    parts = [
        paired_at_best(group, values, treatment, control, list(over), select, label or metric, keys)
        for label, group in split_by(runs, [*by, *pool])
    ]
    if pool:  # one cell, which names what the arms differ in, then each part's settings
        cells = "; ".join(part["cell"].iloc[0] for part in parts if len(part))
        arms = arms_text(runs, treatment, control)
        return pooled(parts, f"{metric}, {arms + ', ' if arms else ''}the mean of {cells}")
    return pd.concat(parts, ignore_index=True)


def generalization_gap(
    runs, sweep, treatment, control, over=(), by=(), select="val_acc"
) -> pd.DataFrame:
    """Eval-mode training accuracy minus test accuracy (points), each arm at its best `over`
    setting; diverged runs are left out (a net at chance has no gap to speak of)."""
    # The setting is chosen on all runs, as final_metric chooses it; a diverged run at the
    # chosen setting has no gap and is left out of the pairs.
    gap = 100 * (runs["train_eval_acc"] - runs["test_acc"]).where(runs["status"].eq("completed"))
    parts = [
        paired_at_best(group, gap, treatment, control, list(over), select, label or "gap")
        for label, group in split_by(runs, list(by))
    ]
    return pd.concat(parts, ignore_index=True).dropna(subset=["diff"])


def steps_to_target(
    runs, sweep, treatment, control, target=None, over=(), select="val_acc", clock=False, margin=1.0
) -> pd.DataFrame:
    """log2 of the optimizer steps until validation accuracy first reaches `target` (points,
    fixed in the claim before the runs), each arm at its best `over` setting (chosen on
    `select`: keep it off the validation curve, e.g. train_loss). A run that never reaches
    it is censored at the sweep's step budget; a diverged run counts as censored. With
    `clock`, the steps are priced at each run's seconds per training step (its time in
    training steps, evaluation and setup left out, over its steps; log2 seconds)."""
    evals = read_run_csvs(sweep, runs, EVALS_FILE)
    budget = evals["step"].max()  # the completed runs' last step: the sweep's step budget
    arms = {}
    chosen = chosen_arms(runs, {"treatment": treatment, "control": control}, list(over), select)
    margin_rule = target is None
    if margin_rule:  # TEMPORARY (protocol v2): the weaker arm's final val accuracy - margin
        target = min(100 * scored(a, "val_acc").mean() for a in chosen.values()) - margin
    for name in ("treatment", "control"):
        steps = []
        for run in chosen[name].itertuples():
            curve = evals[evals["run_id"].eq(run.run_id)]
            hit = curve[100 * curve["val_acc"] >= target]["step"]
            reached = hit.min() if len(hit) and run.status == "completed" else budget
            per_step = run.train_s / max(curve["step"].max(), 1) if clock else 1.0
            steps.append(reached * per_step)
        values = pd.Series(np.log2(np.asarray(steps, float)), index=chosen[name].index)
        arms[name] = per_seed(chosen[name], values)
    what, digits = ("seconds" if clock else "steps"), (".1f" if margin_rule else "g")
    label = named(
        f"log2 {what} to {target:{digits}}% val acc",
        chosen["treatment"],
        chosen["control"],
        arm_keys(treatment, control),
        list(over),
    )
    return pair(arms["treatment"], arms["control"], label)


DECADE_DIGITS = 6  # grid values are written to 6 significant digits (3.16228 for 10**0.5)


def grid_decades(values: pd.Series) -> pd.Series:
    """log10 of a grid's values, rounded so that a half-decade grid written as 3.16228 gives
    exactly 0.5: unrounded, paired differences of 0 and 0.5 decades come out as 6e-7 and
    0.4999997, and the sign-flip test would count those as effects, not ties."""
    return np.log10(values.astype(float)).round(DECADE_DIGITS)


def largest_trainable(
    runs, sweep, treatment, control, factor="optim.lr", fraction=TRAINS_FRACTION
) -> pd.DataFrame:
    """log10 of the largest value of `factor` at which the arm still trains (not diverged,
    final val accuracy at least `fraction` of the way from chance to the sweep's best run);
    an arm that trains nowhere sits one grid step below the grid."""
    trains = trains_mask(runs, fraction)
    log_value = grid_decades(runs[factor])
    steps = np.diff(np.sort(log_value.unique()))
    floor = log_value.min() - (steps.min() if len(steps) else 1)
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = runs[in_arm(runs, arm)]
        ok = log_value[member.index].where(trains[member.index])
        arms[name] = ok.groupby(member["seed"]).max().fillna(floor)
    cell = arms_cell(f"log10 largest trainable {key_text(factor)}", runs, treatment, control)
    return pair(arms["treatment"], arms["control"], cell)


def metric_at_largest_trainable(
    runs, sweep, treatment, control, factor="optim.lr", metric="test_acc", fraction=TRAINS_FRACTION
) -> pd.DataFrame:
    """A final metric (points for accuracies) of each seed's run at the arm's largest
    trainable value of `factor` (as in largest_trainable): what the higher value buys when
    it is used. A seed whose arm trains nowhere scores chance."""
    trains = trains_mask(runs, fraction)
    values = scored(runs, metric)
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = runs[in_arm(runs, arm)]
        scores = {}
        for seed, group in member.groupby("seed"):
            ok = group[trains[group.index]]
            largest = ok[factor].astype(float).idxmax() if len(ok) else None
            scores[seed] = values[largest] if largest is not None else group["chance_acc"].iloc[0]
        arms[name] = pd.Series(scores) * (100 if metric.endswith("acc") else 1)
    cell = f"{metric} at the arm's largest trainable {key_text(factor)}"
    cell = arms_cell(cell, runs, treatment, control)
    return pair(arms["treatment"], arms["control"], cell)


def trainable_range(
    runs,
    sweep,
    treatment,
    control,
    factor="model.init_scale",
    within=5.0,
    over=(),
    fraction=TRAINS_FRACTION,
    select="val_acc",
) -> pd.DataFrame:
    """Decades of `factor` (log10 span) over which the arm trains (as in largest_trainable)
    with final val accuracy within `within` points of its own best value over `factor`, per
    seed: the longest unbroken stretch of the grid that does, so a bad value in the middle
    breaks it; 0 where one value or none does (an arm failing everywhere is not flat). With
    `over`, each value of `factor` is taken at the arm's best `over` setting there, chosen on
    `select` (keep it off validation accuracy, which the range is read on: train_loss)."""
    val = 100 * scored(runs, "val_acc")
    trains = trains_mask(runs, fraction)
    log_value = grid_decades(runs[factor])
    grid = np.sort(log_value.unique())
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = best_per_value(runs[in_arm(runs, arm)], factor, list(over), select)
        spans = {}
        for seed, group in member.groupby("seed"):
            near = (val[group.index] >= val[group.index].max() - within) & trains[group.index]
            spans[seed] = longest_stretch(grid, set(log_value[group.index][near]))
        arms[name] = pd.Series(spans)
    cell = f"decades of {key_text(factor)} that train within {within:g} points of the arm's best"
    cell = arms_cell(cell, runs, treatment, control)
    return pair(arms["treatment"], arms["control"], cell)


def longest_stretch(grid: np.ndarray, chosen: set) -> float:
    """The log10 span of the longest run of consecutive grid values that are all chosen."""
    best, start = 0.0, None
    for i, value in enumerate(grid):
        if value in chosen:
            start = i if start is None else start
            best = max(best, value - grid[start])
        else:
            start = None
    return float(best)


def best_per_value(
    runs: pd.DataFrame, factor: str | list[str], over: list[str], select: str
) -> pd.DataFrame:
    """The runs at the best `over` setting for each value of `factor` (a key or keys; all
    runs without over)."""
    if not over or runs.empty:
        return runs
    parts = [best_setting(group, over, select) for _, group in runs.groupby(factor, dropna=False)]
    return pd.concat(parts)


def trains_mask(runs: pd.DataFrame, fraction: float = TRAINS_FRACTION) -> pd.Series:
    """Not diverged, and final val accuracy at least `fraction` of the way from chance to
    the best run of the sweep."""
    val = scored(runs, "val_acc")
    chance = runs["chance_acc"]
    return runs["status"].eq("completed") & (val >= chance + fraction * (val.max() - chance))


def spread(
    runs,
    sweep,
    treatment,
    control,
    over=("model.init",),
    metric="val_acc",
    tune=(),
    select="val_acc",
):
    """Max - min of a final accuracy (points) across the settings of `over`, per seed; with
    `tune`, each setting at the arm's best `tune` setting for it (chosen on `select`)."""
    values = 100 * scored(runs, metric)
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = runs[in_arm(runs, arm)]
        member = best_per_value(member, list(over), list(tune), select)
        grouped = values[member.index].groupby(member["seed"])
        arms[name] = grouped.max() - grouped.min()
    keys = ", ".join(key_text(k) for k in over)
    cell = arms_cell(f"spread of {metric} over {keys} (points)", runs, treatment, control)
    return pair(arms["treatment"], arms["control"], cell)


def difference_in_differences(
    runs, sweep, treatment, control, factor="train.batch_size", base=128, at=(2,)
) -> pd.DataFrame:
    """The treatment arm's change in final val accuracy (points) from factor=base to each
    factor=at, minus the control arm's same change: what the factor costs the treatment
    beyond what it costs a control that does not depend on it (BN vs group norm)."""
    val = 100 * scored(runs, "val_acc")
    parts = []
    for value in at if isinstance(at, list | tuple) else [at]:
        changes = {}
        for name, arm in (("treatment", treatment), ("control", control)):
            member = runs[in_arm(runs, arm)]
            level = {
                v: per_seed(member[member[factor].eq(v)], val[member.index][member[factor].eq(v)])
                for v in (value, base)
            }
            changes[name] = level[value] - level[base]
        cell = f"{key_text(factor)} {value} vs {base}: change minus the control's change"
        cell = arms_cell(cell, runs, treatment, control)
        parts.append(pair(changes["treatment"], changes["control"], cell))
    return pd.concat(parts, ignore_index=True)


def test_time(
    runs, sweep, treatment, control, condition="batch_b32_shuffled", reference="precise"
) -> pd.DataFrame:
    """Test accuracy of each trained model with `condition`'s normalization statistics minus
    with the `reference` ones (precise: recomputed over the whole training split, the
    article's population statistics; running: BN's running averages), points."""
    probes = read_run_csvs(sweep, runs, PROBES_FILE)
    acc = probes[probes["probe"].eq("test_time_acc")].pivot(
        index="run_id", columns="layer", values="value"
    )
    member = runs[in_arm(runs, treatment)]
    acc = acc.reindex(member["run_id"])
    diff = 100 * (acc[condition].to_numpy() - acc[reference].to_numpy())
    values = pd.Series(diff, index=member.index)
    label = condition.removeprefix("batch_").replace("_", " ")
    cell = f"{label} vs {reference} statistics"
    frame = pd.DataFrame({"cell": cell, "seed": member["seed"], "diff": values})
    return frame.groupby(["cell", "seed"], as_index=False)["diff"].mean()


# The measures that take each arm at its best `over` setting (pairing.chosen_arms) and then
# compare the runs chosen: where a claim's primary is one of them (not split by `by` or
# pooled), the convergence figure shows these very runs.
AT_BEST = (
    "final_metric",
    "generalization_gap",
    "steps_to_target",
    "probe_mean",
    "percentile_drift",
)

MEASURES: dict[str, Callable[..., pd.DataFrame]] = {
    f.__name__: f
    for f in (
        final_metric,
        generalization_gap,
        steps_to_target,
        largest_trainable,
        trainable_range,
        spread,
        metric_at_largest_trainable,
        probe_mean,
        percentile_drift,
        gradient_ratio_growth,
        difference_in_differences,
        test_time,
    )
}
