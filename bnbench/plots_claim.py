"""A claim's verdict as a figure: a forest plot of the paired differences, one row for the
primary measure and one per secondary cell, coloured by outcome (plot_claim).

Drawn like every figure (bnbench.plots): matplotlib's object API, no pyplot state; the
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
    difference with its 95% CI, coloured by outcome; one panel (and x axis) per unit, with
    +-delta dashed and each row's claimed side of zero shaded."""
    p = result.primary
    rows = [{**p, "name": f"PRIMARY: {p['label']}", "shown": p["outcome"]}]
    for row in result.secondary.to_dict("records"):
        rows.append({**row, "shown": row["outcome_holm"]})
    units = list(dict.fromkeys(r["unit"] for r in rows))
    heights = [len([r for r in rows if r["unit"] == u]) + 0.8 for u in units]
    fig = Figure(figsize=(9, 1.0 + 0.5 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(units), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, unit in zip(axes, units, strict=True):
        panel = [r for r in rows if r["unit"] == unit]
        _forest_panel(ax, panel, unit)
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
