"""The convergence figure: train loss and validation accuracy over training, one line per
arm, each at its best configuration (plot_convergence). The arms are what differs between
the runs compared: the norms, or where every run has one norm, the first swept factor of
ARM_FACTORS (claim 9: BN before or after the activation). Drawn in the conventions of
bnbench.report.style.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from bnbench.analysis.columns import factors
from bnbench.analysis.run_stats import mean_ci_by, summarize
from bnbench.analysis.words import key_text
from bnbench.report.style import (
    any_diverged,
    cell_label,
    chance_line,
    fmt_value,
    norm_color,
    norm_label,
    norm_marker,
    ordered_values,
    outside_legend,
    percent,
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


def arm_factor(runs: pd.DataFrame) -> str:
    """The factor whose values are the arms a convergence figure compares."""
    varied = [f for f in ARM_FACTORS if f in runs and runs[f].nunique(dropna=False) > 1]
    return varied[0] if varied else "model.norm"


def plot_convergence(
    runs: pd.DataFrame, curves: pd.DataFrame, steps: pd.DataFrame | None = None
) -> Figure:
    """Train loss and val accuracy vs epoch (top) and vs wall-clock seconds (bottom), each
    arm (each norm, or each value of arm_factor where the norms do not differ) at its best
    configuration by mean validation accuracy; with steps (steps.csv rows), the top loss
    panel is per optimizer step."""
    # per step only where there is a curve to draw: one logged step is a point, not a line
    per_step = steps is not None and not steps.empty and steps["step"].nunique() > 1
    fig = Figure(figsize=(10, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    arm = arm_factor(runs)
    facs = [f for f in factors(runs) if f != arm]
    curves = curves.merge(runs[["run_id", "chance_acc"]], on="run_id", how="left")
    table = summarize(runs, ["val_acc"], by=[arm, *facs])
    best_rows = table.loc[table.groupby(arm, sort=True, dropna=False)["val_acc_mean"].idxmax()]
    if arm != "model.norm":  # the arms in their natural order (pre before post)
        order = [fmt_value(v) for v in ordered_values(runs, arm)]
        best_rows = best_rows.sort_values(arm, key=lambda v: v.map(fmt_value).map(order.index))
    handles = []
    for k, (_, best) in enumerate(best_rows.iterrows()):
        chosen = pd.Series(True, index=runs.index)
        for f in [arm, *facs]:
            chosen &= runs[f].map(fmt_value).eq(fmt_value(best[f]))
        if arm == "model.norm":
            color, marker = norm_color(best[arm]), norm_marker(best[arm])
            label = norm_label(best[arm])
        else:
            color, marker = ARM_STYLES[k % len(ARM_STYLES)]
            label = cell_label([arm], (best[arm],))
        label += f" at {cell_label(facs, tuple(best[facs]))}" if facs else ""
        handles.append(Line2D([], [], color=color, marker=marker, label=label))
        chosen_curves = curves[curves["run_id"].isin(runs.loc[chosen, "run_id"])]
        _convergence_lines(axes, chosen_curves, color, marker, epoch_loss=not per_step)
        if per_step:
            chosen_steps = steps[steps["run_id"].isin(runs.loc[chosen, "run_id"])]
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
    title = f"Convergence: each {key_text(arm)} at its best configuration"
    fig.suptitle(f"{title}\nmean over seeds, 95% CI")
    outside_legend(fig, handles, any_diverged(runs), any(chance))
    return fig


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
