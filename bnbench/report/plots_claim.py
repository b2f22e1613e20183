"""A claim's verdict as a figure: a forest plot of the paired differences, the primary
measure in its own panel, then one row per secondary cell, coloured by outcome (plot_claim);
and every claim's primary effect in one figure, for a results root's index (plot_overview).

Drawn like every figure (bnbench.report.plots): matplotlib's object API, no pyplot state; the
report saves it beside the sweep's figures.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

OUTCOME_COLORS = {
    "supported": "#009E73",
    "contradicted": "#D55E00",
    "no effect": "#0072B2",
    "inconclusive": "#999999",
}


def plot_claim(result, title: str) -> Figure:
    """Forest plot of a verdict: the primary measure and each secondary cell, mean paired
    difference with its 95% CI, coloured by outcome; the primary in a panel (and x axis) of
    its own, then one panel per unit of the secondaries, with +-delta dashed and each row's
    claimed side of zero shaded."""
    p = result.primary
    secondary = [{**r, "shown": r["outcome_holm"]} for r in result.secondary.to_dict("records")]
    groups = [[{**p, "name": f"PRIMARY: {p['label']}", "shown": p["outcome"]}]]
    for unit in dict.fromkeys(r["unit"] for r in secondary):
        groups.append([r for r in secondary if r["unit"] == unit])
    heights = [len(rows) + 0.8 for rows in groups]
    fig = Figure(figsize=(9, 1.0 + 0.5 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, rows in zip(axes, groups, strict=True):
        _forest_panel(ax, rows, rows[0]["unit"])
    axes[0].set_title(title)
    handles = [Line2D([], [], color=c, marker="o", label=v) for v, c in OUTCOME_COLORS.items()]
    handles.append(Line2D([], [], color="#56B4E9", alpha=0.3, linewidth=8, label="claimed side"))
    fig.legend(handles=handles, loc="outside lower center", ncol=5, frameon=False)
    return fig


def _forest_panel(ax: Axes, rows: list[dict], unit: str) -> None:
    y = np.arange(len(rows))[::-1]
    span = 0.0
    for row, pos in zip(rows, y, strict=True):
        color = OUTCOME_COLORS[row["shown"]]
        lo, hi = (row["lo"], row["hi"]) if not math.isnan(row["lo"]) else (row["mean"],) * 2
        ax.plot([lo, hi], [pos, pos], color=color, linewidth=2.5)
        ax.plot(row["mean"], pos, "o", color=color, markersize=7)
        span = max(span, *(abs(v) for v in (lo, hi, row["delta"]) if not math.isnan(v)))
    span = 1.1 * span or 1.0
    delta = rows[0]["delta"]
    for edge in (-delta, delta):
        ax.axvline(edge, color="black", linewidth=0.8, linestyle="--")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlim(-span, span)
    for row, pos in zip(rows, y, strict=True):  # each row's own claimed side
        side = (0, span) if row["direction"] == "higher" else (-span, 0)
        ax.fill_betweenx([pos - 0.45, pos + 0.45], *side, color="#56B4E9", alpha=0.12, lw=0)
    ax.set_yticks(y, [_wrap(r["name"]) for r in rows])
    ax.set_xlabel(f"treatment - control ({unit})")


def _wrap(text: str, width: int = 60) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def plot_overview(verdicts: list) -> Figure:
    """Every claim's primary effect, one panel (and x axis, in the measure's unit) per claim
    in number order: the mean paired difference with its 95% CI coloured by outcome, the
    +-delta band shaded and zero drawn."""
    fig = Figure(figsize=(9, 0.3 + 0.85 * len(verdicts)), layout="constrained")
    axes = fig.subplots(len(verdicts), 1, squeeze=False)[:, 0]
    for ax, verdict in zip(axes, verdicts, strict=True):
        p = verdict.primary
        color = OUTCOME_COLORS.get(p["outcome"], "#000000")
        lo, hi = (p["lo"], p["hi"]) if not math.isnan(p["lo"]) else (p["mean"],) * 2
        span = 1.15 * max(abs(v) for v in (lo, hi, p["delta"], p["mean"]) if not math.isnan(v))
        ax.axvspan(-p["delta"], p["delta"], color="0.85", lw=0)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.plot([lo, hi], [0, 0], color=color, linewidth=3)
        ax.plot(p["mean"], 0, "o", color=color, markersize=8)
        ax.set_xlim(-(span or 1.0), span or 1.0)
        ax.set_yticks([0], [f"{verdict.claim.number}. {verdict.claim.name}"])
        ax.set_ylim(-1, 1)
        ax.text(1.01, 0.5, verdict.status, transform=ax.transAxes, va="center", color=color)
        ax.set_xlabel(p["unit"], fontsize=8, labelpad=1)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_title("Primary effects, treatment - control, 95% CI; grey: within ±delta")
    return fig
