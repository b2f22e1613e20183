"""The measures a claim can name in conf/claims.yaml: functions from a sweep's runs to paired
differences `treatment - control`, one per seed (and per cell, for measures split by a key).

Every measure has the signature

    measure(runs, sweep, treatment, control, **args) -> DataFrame[cell, seed, diff]

`runs` is the sweep's table (bnbench.aggregate, one row per finished run), `sweep` its
directory (for per-run files: evals.csv, probes.csv), `treatment` and `control` the two arms
as {config key: value or [values]}. Seeds pair the arms: the same seed is the same data
draw, data order and starting weights. Arms that may differ in a hyperparameter are each
taken at their own best value of the `over` keys, chosen on mean validation accuracy over
seeds (never on test). Accuracy differences are in percentage points.

A new claim that uses these measures needs only YAML; a new measure is one function here,
registered in MEASURES. Reads files only; never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bnbench.pairing import (
    best_setting,
    in_arm,
    pair,
    paired_at_best,
    per_seed,
    setting_label,
    short_key,
    split_by,
)
from bnbench.run_stats import scored
from bnbench.store import EVALS_FILE, PROBES_FILE, run_path

TRAINS_FRACTION = 0.5  # "trains": final val accuracy at least halfway from chance to the best


# --- the measures --------------------------------------------------------------------------


def final_metric(
    runs, sweep, treatment, control, metric="test_acc", over=(), by=(), select="val_acc"
) -> pd.DataFrame:
    """A final metric (accuracies in points, a diverged run at chance), each arm at its best
    `over` setting, one cell per value of the `by` keys."""
    values = scored(runs, metric) * (100 if metric.endswith("acc") else 1)
    parts = [
        paired_at_best(group, values, treatment, control, list(over), select, label or metric)
        for label, group in split_by(runs, list(by))
    ]
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
    runs, sweep, treatment, control, over=(), margin=1.0, select="val_acc"
) -> pd.DataFrame:
    """log2 of the optimizer steps until validation accuracy first reaches the target, each
    arm at its best `over` setting. The target: the weaker arm's mean final val accuracy at
    its best setting, minus `margin` points (so the weaker arm reaches it too, mostly). A run
    that never reaches it is censored at its step budget; a diverged run counts as censored."""
    evals = read_run_csvs(sweep, runs, EVALS_FILE)
    chosen = {
        name: best_setting(runs[in_arm(runs, arm)], list(over), select)
        for name, arm in (("treatment", treatment), ("control", control))
    }
    final = {name: 100 * scored(arm, "val_acc").mean() for name, arm in chosen.items()}
    target = min(final.values()) - margin
    budget = evals["step"].max()  # the completed runs' last step: the sweep's step budget
    arms = {}
    for name, arm in chosen.items():
        steps = []
        for run in arm.itertuples():
            curve = evals[evals["run_id"].eq(run.run_id)]
            hit = curve[100 * curve["val_acc"] >= target]["step"]
            steps.append(hit.min() if len(hit) and run.status == "completed" else budget)
        arms[name] = per_seed(arm, pd.Series(np.log2(np.asarray(steps, float)), index=arm.index))
    label = (
        f"log2 steps to {target:.1f}% val acc ({setting_label(chosen['treatment'], list(over))} "
        f"vs {setting_label(chosen['control'], list(over))})"
    )
    return pair(arms["treatment"], arms["control"], label)


def largest_trainable(
    runs, sweep, treatment, control, factor="optim.lr", fraction=TRAINS_FRACTION
) -> pd.DataFrame:
    """log10 of the largest value of `factor` at which the arm still trains (not diverged,
    final val accuracy at least `fraction` of the way from chance to the sweep's best run);
    an arm that trains nowhere sits one grid step below the grid."""
    trains = trains_mask(runs, fraction)
    log_value = np.log10(runs[factor].astype(float))
    steps = np.diff(np.sort(log_value.unique()))
    floor = log_value.min() - (steps.min() if len(steps) else 1)
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = runs[in_arm(runs, arm)]
        ok = log_value[member.index].where(trains[member.index])
        arms[name] = ok.groupby(member["seed"]).max().fillna(floor)
    return pair(arms["treatment"], arms["control"], f"log10 largest trainable {short_key(factor)}")


def trainable_range(
    runs,
    sweep,
    treatment,
    control,
    factor="model.init_scale",
    within=5.0,
    fraction=TRAINS_FRACTION,
) -> pd.DataFrame:
    """Decades of `factor` (log10 span) over which the arm trains (as in largest_trainable)
    with final val accuracy within `within` points of its own best value over `factor`, per
    seed; 0 where it trains at one value or none (an arm failing everywhere is not flat)."""
    val = 100 * scored(runs, "val_acc")
    trains = trains_mask(runs, fraction)
    log_value = np.log10(runs[factor].astype(float))
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = runs[in_arm(runs, arm)]
        spans = {}
        for seed, group in member.groupby("seed"):
            near = (val[group.index] >= val[group.index].max() - within) & trains[group.index]
            chosen = log_value[group.index][near]
            spans[seed] = chosen.max() - chosen.min() if len(chosen) else 0.0
        arms[name] = pd.Series(spans)
    cell = f"decades of {short_key(factor)} that train within {within:g} points of the arm's best"
    return pair(arms["treatment"], arms["control"], cell)


def trains_mask(runs: pd.DataFrame, fraction: float = TRAINS_FRACTION) -> pd.Series:
    """Not diverged, and final val accuracy at least `fraction` of the way from chance to
    the best run of the sweep."""
    val = scored(runs, "val_acc")
    chance = runs["chance_acc"]
    return runs["status"].eq("completed") & (val >= chance + fraction * (val.max() - chance))


def spread(runs, sweep, treatment, control, over=("model.init",), metric="val_acc"):
    """Max - min of a final accuracy (points) across the settings of `over`, per seed."""
    values = 100 * scored(runs, metric)
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = runs[in_arm(runs, arm)]
        grouped = values[member.index].groupby(member["seed"])
        arms[name] = grouped.max() - grouped.min()
    keys = ", ".join(short_key(k) for k in over)
    return pair(arms["treatment"], arms["control"], f"spread of {metric} over {keys} (points)")


def probe_mean(
    runs,
    sweep,
    treatment,
    control,
    probe="ics_cos",
    transform="identity",
    skip_first=True,
    over=(),
    by=(),
    select="val_acc",
) -> pd.DataFrame:
    """A probe's value averaged over its layers and probe steps, per run (`one_minus` turns a
    cosine into a distance), each arm at its best `over` setting, one cell per value of the
    `by` keys; the first layer is left out where it is 0 by construction."""
    probes = read_run_csvs(sweep, runs, PROBES_FILE)
    rows = probes[probes["probe"].eq(probe)]
    if skip_first and len(rows):
        first = rows.groupby("run_id")["layer"].transform("first")
        rows = rows[rows["layer"] != first]
    values = pd.to_numeric(rows["value"], errors="coerce")
    values = 1 - values if transform == "one_minus" else values
    per_run = values.groupby(rows["run_id"]).mean().reindex(runs["run_id"])
    per_run.index = runs.index
    label = f"{'1 - ' if transform == 'one_minus' else ''}{probe}, mean over layers and steps"
    parts = [
        paired_at_best(group, per_run, treatment, control, list(over), select, cell or label)
        for cell, group in split_by(runs, list(by))
    ]
    return pd.concat(parts, ignore_index=True)


def gradient_ratio_growth(
    runs, sweep, treatment, control, depth="model.depth", signed=False, steps="all"
) -> pd.DataFrame:
    """How far the log10 ratio of the first to the last layer's gradient norm moves from its
    value at the shallowest depth to its value at the deepest, in decades, averaged over the
    probe steps (`steps`: all, initialization included, or `init` alone), per seed. Vanishing
    gradients push the ratio down with depth, exploding ones up; `signed` keeps the
    direction, otherwise the size of the move is compared. The depth-1 ratio already reflects
    the layers' sizes, so only its change with depth is about depth."""
    probes = read_run_csvs(sweep, runs, PROBES_FILE)
    grads = probes[probes["probe"].eq("grad_norm")]
    if steps == "init":
        grads = grads[grads["step"].eq(0)]
    ratios = {}
    for run_id, rows in grads.groupby("run_id"):
        # the first and last layer's rows as written (agg "first" would skip a NaN gradient)
        per_step = rows.groupby("step")["value"].agg(
            first=lambda v: v.iloc[0], last=lambda v: v.iloc[-1]
        )
        ratios[run_id] = np.log10(per_step["first"] / per_step["last"]).mean()
    ratio = runs["run_id"].map(ratios)
    shallow, deep = runs[depth].min(), runs[depth].max()
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        member = runs[in_arm(runs, arm)]
        level = {
            d: ratio[member.index][member[depth].eq(d)].groupby(member["seed"]).mean()
            for d in (shallow, deep)
        }
        change = level[deep] - level[shallow]
        arms[name] = change if signed else change.abs()
    kind = "change" if signed else "absolute change"
    when = "at initialization" if steps == "init" else "over training"
    cell = f"{kind} of log10 first/last gradient norm, depth {shallow} to {deep}, {when}"
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
        cell = f"{short_key(factor)} {value} vs {base}: change minus the control's change"
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


MEASURES: dict[str, Callable[..., pd.DataFrame]] = {
    f.__name__: f
    for f in (
        final_metric,
        generalization_gap,
        steps_to_target,
        largest_trainable,
        trainable_range,
        spread,
        probe_mean,
        gradient_ratio_growth,
        difference_in_differences,
        test_time,
    )
}


# --- files and labels ----------------------------------------------------------------------


def read_run_csvs(sweep: Path, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """One CSV per run (evals.csv, probes.csv), stacked with its run_id."""
    frames = []
    for run_id in runs["run_id"]:
        path = run_path(sweep, run_id) / name
        if path.exists():
            frames.append(pd.read_csv(path).assign(run_id=run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id"])
