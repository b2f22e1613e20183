"""Figures: which ones follow from what the sweep varied; every one compares the norms.

Generalization is always drawn (and convergence, by bnbench.report.plots_convergence). Each
other swept factor (a config column with more than one value, besides seed and model.norm)
gets one figure: learning rate, initialization scheme and scale, batch size, dropout (a norm
x rate heatmap, or points where the design is sparse), placement, or a generic sensitivity
plot. When several factors vary, a factor's figure has one panel per combination of the
others.

Every figure follows the conventions of bnbench.report.style (colours, labels, CIs, legends,
PNG and SVG files). Each plot_* function returns the Figure, so tests can inspect its axes.
bnbench.report.figures says which a sweep calls for and draws them; a claim's verdict figure is
drawn by bnbench.report.plots_claim.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from bnbench.analysis.columns import factors, scored, sorted_values
from bnbench.analysis.run_stats import summarize, train_accuracy
from bnbench.analysis.words import key_text
from bnbench.report.style import (
    CHAR_EM,
    MAX_INCHES,
    METRIC_LABELS,
    any_diverged,
    cell_label,
    chance_line,
    fit_title,
    fmt_value,
    grid,
    half_errors,
    is_numeric,
    norm_color,
    norm_handles,
    norm_label,
    norm_marker,
    norms_in,
    ordered_values,
    outside_legend,
    panels,
    percent,
    wrap_text,
)

# factor -> (file name, title, x-axis label)
FACTOR_FIGURES = {
    "optim.lr": ("lr_sensitivity", "Learning-rate sensitivity", "learning rate (log scale)"),
    "model.init": ("init_sensitivity", "Initialization sensitivity: scheme", "initialization"),
    "model.init_scale": (
        "init_scale_sensitivity",
        "Initialization sensitivity: scale",
        "init scale: sigma for normal, gain multiplier otherwise (log scale)",
    ),
    "train.batch_size": ("batch_size", "Batch size", "batch size (log2 scale)"),
    "model.dropout": ("dropout", "Dropout x normalization", "dropout rate in the conv blocks"),
    "model.placement": (
        "placement",
        "Placement: norm before (pre) or after (post) the activation",
        "placement",
    ),
}
LOG_BASE = {"optim.lr": 10, "model.init_scale": 10, "train.batch_size": 2}


# --- generalization ------------------------------------------------------------------------


def plot_generalization(runs: pd.DataFrame) -> Figure:
    """Final train and test accuracy (left) and their gap (right) per configuration, one
    row each: a configuration's label reads across, and thirty of them still fit at full
    size, where thirty tilted labels side by side would not."""
    facs = list(factors(runs))
    train, train_label = train_accuracy(runs)
    table = summarize(
        runs.assign(gap=runs[train] - runs["test_acc"]),
        [train, "test_acc", "gap"],
        by=["model.norm", *facs],
    )
    rows = table[facs].itertuples(index=False)
    table["cell"] = [cell_label(facs, tuple(r)) if facs else "all runs" for r in rows]
    labels = list(table.sort_values(facs)["cell"].unique()) if facs else ["all runs"]
    table["y"] = table["cell"].map({label: len(labels) - 1 - i for i, label in enumerate(labels)})
    labels = [wrap_text(label, GEN_LABEL_CHARS) for label in labels]

    fig = Figure(figsize=generalization_size(labels), layout="constrained")
    acc_ax, gap_ax = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    norms = norms_in(runs)
    for k, norm in enumerate(norms):
        t = table[table["model.norm"].eq(norm)]
        y = t["y"] - (k - (len(norms) - 1) / 2) * 0.6 / len(norms)  # the first norm on top
        color, marker = norm_color(norm), norm_marker(norm)
        # train just above test, so neither hides the other
        for metric, face, shift in [(train, "white", 0.06), ("test_acc", color, -0.06)]:
            mean, lo, hi = t[f"{metric}_mean"], t[f"{metric}_lo"], t[f"{metric}_hi"]
            err = half_errors(mean, lo, hi)
            acc_ax.errorbar(
                percent(mean), y + shift, xerr=err, fmt=marker, color=color, mfc=face, capsize=2
            )
        err = half_errors(t["gap_mean"], t["gap_lo"], t["gap_hi"], low=-1)
        gap_ax.errorbar(percent(t["gap_mean"], -1), y, xerr=err, fmt=marker, color=color, capsize=2)
    acc_ax.set_yticks(range(len(labels))[::-1], labels, fontsize=GEN_LABEL_FONT)
    acc_ax.set_ylim(-0.6, len(labels) - 0.4)
    acc_ax.set_xlabel("final accuracy (%)")
    acc_ax.set_title(f"train (hollow; {train_label}) and test (filled)", fontsize=9)
    chance = chance_line(acc_ax, runs, axis="x")
    gap_ax.set_xlabel("train - test accuracy (percentage points)")
    gap_ax.set_title("generalization gap (diverged runs have none)", fontsize=9)
    gap_ax.axvline(0, color="0.5", lw=0.8)
    fig.suptitle("Generalization per configuration\nmean over seeds, 95% CI")
    handles = norm_handles(norms) + [
        Line2D([], [], ls="none", marker="o", mfc="white", color="0.3", label="train accuracy"),
        Line2D([], [], ls="none", marker="o", color="0.3", label="test accuracy"),
    ]
    outside_legend(fig, handles, diverged=False, chance=chance)
    return fig


GEN_LABEL_FONT = 8  # points: a configuration's label on the y axis
GEN_LABEL_CHARS = 60  # a longer label wraps after a comma


def generalization_size(labels: list[str]) -> tuple[float, float]:
    """Inches: room for the widest label beside two panels, a row per configuration tall
    enough for its lines, within MAX_INCHES (rows get tighter, the text never smaller)."""
    lines = max(label.count("\n") + 1 for label in labels)
    line = 1.25 * GEN_LABEL_FONT / 72
    row = max(0.3, lines * line + 0.1)
    longest = max(len(part) for label in labels for part in label.split("\n"))
    width = min(MAX_INCHES[0], 7.5 + longest * CHAR_EM * GEN_LABEL_FONT / 72)
    return width, min(MAX_INCHES[1], 2.4 + row * len(labels))


# --- one swept factor ----------------------------------------------------------------------


def plot_factor(runs: pd.DataFrame, factor: str, metric: str = "val_acc") -> Figure:
    """`metric` against one swept factor, one line (numeric factor) or one set of points
    (categorical factor) per norm; a panel per combination of the other factors."""
    _, title, x_label = factor_figure(factor)
    values = ordered_values(runs, factor)
    cells = factor_panels(runs, factor)
    fig, axes = grid(len(cells))
    chance: list[bool] = []
    for ax, (cell, sub) in zip(axes, cells, strict=True):
        if is_numeric(values):
            _factor_lines(ax, sub, factor, metric, values)
        else:
            _factor_points(ax, sub, factor, metric, values)
        chance.append(chance_line(ax, sub))
        ax.set(xlabel=x_label, ylabel=f"{METRIC_LABELS[metric]} (%)")
        fit_title(ax, cell)
        if not is_numeric(values) and sum(len(fmt_value(v)) for v in values) > 40:
            ax.tick_params(axis="x", labelrotation=20)  # long category names would overlap
    fig.suptitle(f"{title}\nmean over seeds, 95% CI")
    outside_legend(fig, norm_handles(norms_in(runs)), any_diverged(runs), any(chance))
    return fig


def factor_panels(runs: pd.DataFrame, factor: str) -> list[tuple[str, pd.DataFrame]]:
    """The panels of a factor's figure: those in which the factor takes two values or more
    (a panel with one value has nothing to compare along x)."""
    return [(cell, sub) for cell, sub in panels(runs, factor) if sub[factor].nunique() > 1]


def factor_figure(factor: str) -> tuple[str, str, str]:
    """(file name, title, x label) for a factor; a generic one for factors without their own."""
    words = key_text(factor)  # the reader sees words, the file name keeps the key
    generic = (f"factor_{factor.replace('.', '_')}", f"Sensitivity to {words}", words)
    return FACTOR_FIGURES.get(factor, generic)


def _factor_lines(ax: Axes, runs: pd.DataFrame, factor: str, metric: str, values: list) -> None:
    """One line per norm (hollow markers, so a diverged run's x shows through), CI band."""
    table = summarize(runs, [metric], by=["model.norm", factor])
    for norm in norms_in(runs):
        t = table[table["model.norm"].eq(norm)].sort_values(factor)
        color, marker = norm_color(norm), norm_marker(norm)
        mean = percent(t[f"{metric}_mean"])
        ax.plot(t[factor], mean, color=color, marker=marker, mfc="white", label=norm_label(norm))
        lo, hi = percent(t[f"{metric}_lo"]), percent(t[f"{metric}_hi"])
        ax.fill_between(t[factor], lo, hi, color=color, alpha=0.2, lw=0)
        down = runs[runs["model.norm"].eq(norm) & runs["status"].eq("diverged")]
        ax.scatter(down[factor], percent(down["chance_acc"]), marker="x", color=color, zorder=3)
    base = LOG_BASE.get(factor)
    if base is None and min(values) > 0 and max(values) / min(values) >= 100:
        base = 10
    if base is not None:
        ax.set_xscale("log", base=base)
    if base == 2:  # powers of two read better as plain numbers at each swept value
        ax.set_xticks(values, [fmt_value(v) for v in values])
        ax.xaxis.set_minor_formatter(NullFormatter())


def _factor_points(ax: Axes, runs: pd.DataFrame, factor: str, metric: str, values: list) -> None:
    """Categories on x; each seed a hollow point, the mean with its CI a filled one."""
    labels = [fmt_value(v) for v in values]
    position = {label: i for i, label in enumerate(labels)}
    norms = norms_in(runs)
    jitter = np.random.default_rng(0)  # fixed, so the figure is reproducible
    for k, norm in enumerate(norms):
        sub = runs[runs["model.norm"].eq(norm)]
        offset = (k - (len(norms) - 1) / 2) * 0.7 / len(norms)
        x = sub[factor].map(fmt_value).map(position) + offset
        y = percent(scored(sub, metric))
        down = sub["status"].eq("diverged")
        color, marker = norm_color(norm), norm_marker(norm)
        x_seed = x[~down] + jitter.uniform(-0.05, 0.05, (~down).sum())
        ax.scatter(x_seed, y[~down], marker=marker, facecolors="none", edgecolors=color, s=18)
        ax.scatter(x[down], y[down], marker="x", color=color, s=40, zorder=3)
        t = summarize(sub, [metric], by=[factor])
        x_mean = t[factor].map(fmt_value).map(position) + offset
        mean, lo, hi = t[f"{metric}_mean"], t[f"{metric}_lo"], t[f"{metric}_hi"]
        ax.errorbar(
            x_mean,
            percent(mean),
            yerr=half_errors(mean, lo, hi),
            fmt=marker,
            color=color,
            ms=7,
            capsize=3,
            label=norm_label(norm),
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)


def plot_dropout(runs: pd.DataFrame, metric: str = "test_acc") -> Figure:
    """A norm x dropout-rate heatmap of `metric`, mean +/- CI half-width and n in each cell."""
    rates = sorted_values(runs["model.dropout"])
    norms = norms_in(runs)
    cells = panels(runs, "model.dropout")
    fig, axes = grid(len(cells), width=1.3 * len(rates) + 1.8, height=0.9 * len(norms) + 1.6)
    shade = Normalize(100 * scored(runs, metric).min(), 100 * scored(runs, metric).max())
    image = None
    for ax, (cell, sub) in zip(axes, cells, strict=True):
        table = summarize(sub, [metric], by=["model.norm", "model.dropout"])
        table = table.set_index(["model.norm", "model.dropout"])
        means = np.full((len(norms), len(rates)), np.nan)
        for (i, norm), (j, rate) in ((a, b) for a in enumerate(norms) for b in enumerate(rates)):
            if (norm, rate) in table.index:
                means[i, j] = 100 * table.loc[(norm, rate), f"{metric}_mean"]
                # dark text on the bright end of viridis, white on the dark end
                color = "black" if shade(means[i, j]) > 0.5 else "white"
                text = _cell_text(table.loc[(norm, rate)], metric)
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
        image = ax.imshow(means, cmap="viridis", norm=shade, aspect="auto")
        ax.set_xticks(range(len(rates)), [fmt_value(r) for r in rates])
        ax.set_yticks(range(len(norms)), [norm_label(n) for n in norms])
        ax.set_xlabel("dropout rate in the conv blocks")
        fit_title(ax, cell)
    fig.colorbar(image, ax=axes, label=f"{METRIC_LABELS[metric]} (%)")
    fig.suptitle(f"Dropout x normalization: {METRIC_LABELS[metric]}\nmean over seeds")
    return fig


def _cell_text(row: pd.Series, metric: str) -> str:
    half = 100 * (row[f"{metric}_hi"] - row[f"{metric}_mean"])
    text = f"{100 * row[f'{metric}_mean']:.1f}"
    text += f"\n±{half:.1f}" if not np.isnan(half) else ""
    text += f"\nn={int(row['n'])}"
    return text + (f", {int(row['n_diverged'])} div." if row["n_diverged"] else "")
