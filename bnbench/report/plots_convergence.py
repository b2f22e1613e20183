"""The convergence figure: train loss and validation accuracy over training, one line per
arm, each at its best configuration (plot_convergence). The arms are what differs between
the runs compared: the norms, or where every run has one norm, the first swept factor of
ARM_FACTORS (claim 9: BN before or after the activation); in a claim's sweep, the arms of
its primary measure (an ArmChoice), and where that measure pools or splits over a factor
(claim 9: ReLU and tanh), the arms within each of its values, one pair of lines per value.
Either way each arm's setting is chosen by pairing.chosen_arms, the rule the measures use.
Each line is named by what its arm differs in; what all arms share is said once, in the
title. Drawn in the conventions of bnbench.report.style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from bnbench.analysis.columns import factors, sorted_values
from bnbench.analysis.pairing import chosen_arms, split_by
from bnbench.analysis.run_stats import mean_ci_by
from bnbench.analysis.words import key_text, missing
from bnbench.report.style import (
    any_diverged,
    chance_line,
    fmt_value,
    norm_color,
    norm_label,
    norm_marker,
    norms_in,
    ordered_values,
    outside_legend,
    percent,
    wrap_text,
)

# What a convergence figure's lines compare: the norms, or where every run shares one norm
# (claim 9: BN before or after the activation), the first of these that the sweep varies.
ARM_FACTORS = (
    "model.norm",
    "model.placement",
    "model.activation",
    "model.head_norm",
    "model.head_dropout",
    "model.dropout",
    "train.batch_size",
)
ARM_STYLES = [("#0072B2", "o"), ("#D55E00", "s"), ("#009E73", "^"), ("#CC79A7", "D")]
# Arms compared within each value of a pooled factor: one colour family per value, the
# treatment dark with circles, the control light with squares (ColorBrewer Paired).
PAIR_COLORS = [("#1f78b4", "#a6cee3"), ("#e31a1c", "#fb9a99"), ("#33a02c", "#b2df8a")]
PAIR_COLORS += [("#ff7f00", "#fdbf6f"), ("#6a3d9a", "#cab2d6")]
PAIR_MARKERS = ("o", "s")


@dataclass(frozen=True)
class ArmChoice:
    """The runs a convergence figure compares: each arm ({config key: value or values}) at
    its best `over` setting chosen on `select`, by pairing.chosen_arms, the rule of every
    measure that takes its arms at their best; with `within` (config keys), the arms are
    chosen and compared within each value of those keys, as a pooled or split measure does
    (pairing.split_by); `what` says which arms, in words."""

    arms: dict
    over: tuple
    select: str
    what: str
    within: tuple = ()


def arm_factor(runs: pd.DataFrame) -> str:
    """The factor whose values are the arms a convergence figure compares."""
    varied = [f for f in ARM_FACTORS if f in runs and runs[f].nunique(dropna=False) > 1]
    return varied[0] if varied else "model.norm"


def default_choice(runs: pd.DataFrame) -> ArmChoice:
    """Each value of arm_factor (BN first, or in the factor's natural order) at its best
    setting of the other factors, chosen on validation accuracy."""
    arm = arm_factor(runs)
    values = norms_in(runs) if arm == "model.norm" else ordered_values(runs, arm)
    arms = {fmt_value(v): {arm: None if missing(v) else v} for v in values}
    over = tuple(f for f in factors(runs) if f != arm)
    what = f"each {key_text(arm)} at its best configuration (chosen on validation accuracy)"
    return ArmChoice(arms, over, "val_acc", what)


def compared_runs(runs: pd.DataFrame, choice: ArmChoice | None) -> tuple[dict, ArmChoice]:
    """{arm: its chosen runs} (arms with none left out) and the choice made; a choice that
    names keys the runs lack, or finds no runs, gives way to default_choice."""
    for option in ([choice] if choice else []) + [default_choice(runs)]:
        try:
            chosen = chosen_within(runs, option)
        except KeyError:
            continue
        members = {name: member for name, member in chosen.items() if len(member)}
        if members:
            return members, option
    return {"all runs": runs}, default_choice(runs)


def chosen_within(runs: pd.DataFrame, choice: ArmChoice) -> dict:
    """{arm: its chosen runs} by pairing.chosen_arms within each value of choice.within (all
    runs as one group without), named 'arm, group' ('treatment, activation relu'); each
    group's arms in choice.arms' order."""
    chosen = {}
    for group, members in split_by(runs, list(choice.within)):
        arms = chosen_arms(members, choice.arms, list(choice.over), choice.select)
        chosen.update({f"{name}, {group}" if group else name: m for name, m in arms.items()})
    return chosen


def arm_style(k: int, name: str, members: dict, choice: ArmChoice) -> tuple[str, str]:
    """A pooled choice's arm: its group's colour family, dark or light by arm; else the k-th
    of ARM_STYLES."""
    if not choice.within:
        return ARM_STYLES[k % len(ARM_STYLES)]
    arm, _, group = name.partition(", ")
    groups = list(dict.fromkeys(n.partition(", ")[2] for n in members))
    index = list(choice.arms).index(arm) % len(PAIR_MARKERS) if arm in choice.arms else 0
    colors = PAIR_COLORS[groups.index(group) % len(PAIR_COLORS)]
    return colors[index], PAIR_MARKERS[index]


def settings(runs: pd.DataFrame, members: dict) -> tuple[list[str], list[str]]:
    """The swept keys (norm included; ARM_FACTORS first) in which the arms' runs differ, and
    those in which they all share one value."""
    swept = ["model.norm", *factors(runs)]
    swept.sort(key=lambda c: ARM_FACTORS.index(c) if c in ARM_FACTORS else len(ARM_FACTORS))
    first = next(iter(members.values()))
    shared = [
        c
        for c in swept
        if first[c].nunique(dropna=False) == 1
        and len({values_text(m, c) for m in members.values()}) == 1
    ]
    return [c for c in swept if c not in shared], shared


def values_text(runs: pd.DataFrame, key: str) -> str:
    return " or ".join(fmt_value(v) for v in sorted_values(runs[key]))


def arm_label(name: str, member: pd.DataFrame, differ: list[str]) -> str:
    """An arm by the settings it differs from the others in: 'BN (batch) at LR: 0.1'; a
    setting that does not apply to the arm (none) is left out, unless it is all there is
    to tell the arm by ('ghost batch: none')."""
    applies = [c for c in differ if not member[c].map(missing).all()] or differ
    parts = [
        norm_label(member[c].iloc[0])
        if c == "model.norm" and member[c].nunique() == 1
        else f"{key_text(c)}: {values_text(member, c)}"
        for c in applies
    ]
    if not parts:
        return name
    return parts[0] + (f" at {', '.join(parts[1:])}" if parts[1:] else "")


def plot_convergence(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    steps: pd.DataFrame | None = None,
    choice: ArmChoice | None = None,
) -> Figure:
    """Train loss and val accuracy vs epoch (top) and vs wall-clock seconds (bottom), each
    arm at the setting `choice` takes it at (default_choice without one: each norm, or
    each value of arm_factor where the norms do not differ, at its best configuration by
    mean validation accuracy); with steps (steps.csv rows), the top loss panel is per
    optimizer step."""
    # per step only where there is a curve to draw: one logged step is a point, not a line
    per_step = steps is not None and not steps.empty and steps["step"].nunique() > 1
    fig = Figure(figsize=(10, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    curves = curves.merge(runs[["run_id", "chance_acc"]], on="run_id", how="left")
    members, choice = compared_runs(runs, choice)
    differ, shared = settings(runs, members)
    handles = []
    for k, (name, member) in enumerate(members.items()):
        label = arm_label(name, member, differ)
        norm_arms = differ[:1] == ["model.norm"] and member["model.norm"].nunique() == 1
        if norm_arms and not choice.within:  # within groups: a colour family per group
            norm = member["model.norm"].iloc[0]
            color, marker = norm_color(norm), norm_marker(norm)
        else:
            color, marker = arm_style(k, name, members, choice)
        handles.append(Line2D([], [], color=color, marker=marker, label=label))
        chosen_curves = curves[curves["run_id"].isin(member["run_id"])]
        _convergence_lines(axes, chosen_curves, color, marker, epoch_loss=not per_step)
        if per_step:
            chosen_steps = steps[steps["run_id"].isin(member["run_id"])]
            _step_loss(axes[0, 0], chosen_steps, color)
    chance: list[bool] = []
    for row, x_label in enumerate(["epoch", "wall-clock time (s, cumulative train + eval)"]):
        axes[row, 0].set(xlabel=x_label, ylabel="train loss (cross-entropy)")
        axes[row, 1].set(xlabel=x_label, ylabel="validation accuracy (%)")
        chance.append(chance_line(axes[row, 1], runs))
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if per_step:
        axes[0, 0].set_xlabel("optimizer step")
    compared = pd.concat(members.values())
    same = ", ".join(
        f"{key_text(c)}: {values_text(compared, c)}"
        for c in shared
        if not compared[c].map(missing).all()  # a setting no arm has (no ghost batches)
    )
    title = [f"Convergence: {choice.what}", f"all at {same}" if same else ""]
    title = [wrap_text(line, TITLE_CHARS) for line in title if line]
    fig.suptitle("\n".join([*title, "mean over seeds, 95% CI"]))
    outside_legend(fig, handles, any_diverged(runs), any(chance))
    return fig


TITLE_CHARS = 95  # a longer title line wraps


def _step_loss(ax: Axes, steps: pd.DataFrame, color: str) -> None:
    """Train loss per logged optimizer step, mean over seeds with its 95% CI band; a loss
    that is not finite (a diverging run) is left out."""
    finite = steps[np.isfinite(steps["train_loss"])]
    per_step = mean_ci_by(finite, ["step"], ["train_loss"]).reset_index()
    ax.plot(per_step["step"], per_step["train_loss_mean"], color=color, lw=1.2)
    lo, hi = per_step["train_loss_lo"].clip(lower=0), per_step["train_loss_hi"]
    ax.fill_between(per_step["step"], lo, hi, color=color, alpha=0.2, lw=0)


def _convergence_lines(
    axes: np.ndarray, curves: pd.DataFrame, color: str, marker: str, epoch_loss: bool = True
) -> None:
    """Per epoch (top row; the loss only where epoch_loss) and per wall-clock second."""
    # The epoch a run diverged in (its last) has a runaway loss: drawn as an x instead.
    last = curves["epoch"].eq(curves.groupby("run_id")["epoch"].transform("max"))
    blown = curves["status"].eq("diverged") & last
    curves = curves.assign(train_loss=curves["train_loss"].mask(blown))
    per_epoch = mean_ci_by(curves, ["epoch"], ["train_loss", "val_acc", "elapsed_s"]).reset_index()
    ends = curves[blown]
    for row, x in enumerate([per_epoch["epoch"], per_epoch["elapsed_s_mean"]]):
        x_end = ends["epoch"] if row == 0 else ends["elapsed_s"]
        loss_ax, acc_ax = axes[row]
        if row == 1 or epoch_loss:  # else the loss per step is drawn there instead
            _epoch_loss(loss_ax, x, per_epoch, x_end, color, marker)
        # validation only on the validated epochs (train.val_every_epochs)
        validated = per_epoch["val_acc_mean"].notna()
        val, x_val = per_epoch[validated], x[validated]
        acc_ax.plot(x_val, percent(val["val_acc_mean"]), color=color, marker=marker, ms=3)
        lo, hi = percent(val["val_acc_lo"]), percent(val["val_acc_hi"])
        acc_ax.fill_between(x_val, lo, hi, color=color, alpha=0.2, lw=0)
        # a diverged run: x at chance accuracy
        acc_ax.scatter(x_end, percent(ends["chance_acc"]), marker="x", color=color, s=40)


def _epoch_loss(ax: Axes, x, per_epoch: pd.DataFrame, x_end, color: str, marker: str) -> None:
    """Train loss per epoch with its CI band; a diverged run's x along the panel's top edge."""
    ax.plot(x, per_epoch["train_loss_mean"], color=color, marker=marker, ms=3)
    lo, hi = per_epoch["train_loss_lo"].clip(lower=0), per_epoch["train_loss_hi"]
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    top = ax.get_xaxis_transform()
    ax.scatter(x_end, np.full(len(x_end), 0.97), marker="x", color=color, transform=top)
    # points placed in axes coordinates do not widen the x range by themselves
    ax.dataLim.update_from_data_x(np.asarray(x_end, dtype=float), ignore=False)
    ax.autoscale_view()
