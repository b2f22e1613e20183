"""How every figure looks: one fixed colour, marker and label per norm, axis and metric
labels, panel grids, one legend outside the axes, accuracies in % with clipped intervals, and
how a figure is saved. Layouts fit MAX_PX at DPI (panels wrap into rows, long titles and
legend labels onto lines) rather than being shrunk to fit, which would shrink their text.

Conventions: accuracy in %, means over seeds with 95% t-CI bands or error bars, a diverged
run drawn as an x at chance accuracy (where stats counts it), the Okabe-Ito colour-blind-safe
palette with one fixed colour per norm, legends outside the axes. Figures are built with
matplotlib's object API on the Agg canvas (no pyplot state), saved as 200 dpi PNG and SVG.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bnbench.analysis.columns import factors, sorted_values
from bnbench.analysis.words import fmt_value, key_text, missing
from bnbench.config.schema import ACTIVATIONS, INITS, PLACEMENTS
from bnbench.store.files import atomic_file

DPI = 200
MAX_PX = (2400, 3000)  # no figure wider or taller than this at the dpi it is saved with
# The figure size that fits MAX_PX at DPI: layouts stay within it (wrapping panels and
# labels), so a figure is never shrunk to fit, which would shrink its text with it.
MAX_INCHES = (MAX_PX[0] / DPI, MAX_PX[1] / DPI)
LEGEND_FONT = 8  # points
CHAR_EM = 0.58  # a generous mean character width of the sans font, in ems: fit estimates


# Okabe & Ito (2008); a norm keeps its colour and marker in every figure.
NORM_STYLE = {
    "batch": ("#0072B2", "o"),  # blue
    "none": ("#D55E00", "s"),  # vermillion
    "group": ("#009E73", "^"),  # bluish green
    "noisy_batch": ("#CC79A7", "D"),  # reddish purple
}


NORM_LABELS = {
    "batch": "BN (batch)",
    "none": "no norm (none)",
    "group": "GroupNorm (group)",
    "noisy_batch": "noisy BN (noisy_batch)",
}


METRIC_LABELS = {
    "train_acc": "final train accuracy",
    "val_acc": "final validation accuracy",
    "test_acc": "final test accuracy",
    "train_loss": "final train loss",
}


# categorical factors read best in their natural order, not alphabetically
CATEGORY_ORDER = {
    "model.placement": PLACEMENTS,
    "model.init": INITS,
    "model.activation": ACTIVATIONS,
}


@dataclass
class FigureFile:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def norm_color(norm: str) -> str:
    return NORM_STYLE.get(norm, ("#000000", "v"))[0]


def norm_marker(norm: str) -> str:
    return NORM_STYLE.get(norm, ("#000000", "v"))[1]


def norm_label(norm: str) -> str:
    return NORM_LABELS.get(norm, norm)


def norms_in(runs: pd.DataFrame) -> list[str]:
    """The norms present, BN first, in the fixed order of NORM_STYLE."""
    present = set(runs["model.norm"])
    return [n for n in NORM_STYLE if n in present] + sorted(present - set(NORM_STYLE))


def cell_label(columns: list[str], key) -> str:
    """A cell of the design in words, e.g. "head BN: no, LR: 0.03"; keys whose value is none
    in this cell (a setting that does not apply to it) are left out."""
    key = key if isinstance(key, tuple) else (key,)
    pairs = [(c, v) for c, v in zip(columns, key, strict=True) if not missing(v)]
    return ", ".join(f"{key_text(c)}: {fmt_value(v)}" for c, v in pairs) or "default"


def is_numeric(values: list) -> bool:
    """Numbers only (no bools, nothing missing): drawn on a continuous axis."""
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return len(numbers) == len(values) and not any(math.isnan(v) for v in numbers)


def panels(runs: pd.DataFrame, factor: str | None) -> list[tuple[str, pd.DataFrame]]:
    """One (title, runs) per combination of the swept factors other than `factor`, leaving
    out those that `factor` determines (an LR scaled with the batch size is not a panel)."""
    others = [c for c in factors(runs) if c != factor and not determined(runs, c, factor)]
    if not others:
        return [("", runs)]
    groups = runs.groupby(others, dropna=False, sort=True)
    return [(cell_label(others, key), group) for key, group in groups]


def determined(runs: pd.DataFrame, column: str, by: str | None) -> bool:
    """Whether every value of `by` comes with a single value of `column`."""
    if by is None:
        return False
    return bool(runs.groupby(by, dropna=False)[column].nunique(dropna=False).max() <= 1)


def grid(n: int, width: float = 4.4, height: float = 3.4) -> tuple[Figure, list[Axes]]:
    """n panels of about width x height inches, at most 3 a row and as many rows as they
    need, each made smaller (to 3/4 of its width at most, else one panel fewer a row) so
    that the figure fits MAX_INCHES."""
    extra = 0.8  # room for title and legend
    ncols = max(1, min(3, n, int(MAX_INCHES[0] // (0.75 * width))))
    nrows = math.ceil(n / ncols)
    width = min(width, MAX_INCHES[0] / ncols)
    height = min(height, (MAX_INCHES[1] - extra) / nrows)
    fig = Figure(figsize=(max(7.0, width * ncols), height * nrows + extra), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def norm_handles(norms: list[str]) -> list[Line2D]:
    return [
        Line2D([], [], color=norm_color(n), marker=norm_marker(n), label=norm_label(n))
        for n in norms
    ]


def outside_legend(fig: Figure, handles: list, diverged: bool, chance: bool = True) -> None:
    """One legend for the figure, below the axes, so it never covers data."""
    if diverged:
        handles = handles + [
            Line2D([], [], ls="none", marker="x", color="0.2", label="diverged run (at chance)")
        ]
    if chance:
        handles = handles + [Line2D([], [], ls=":", color="0.5", label="chance accuracy")]
    labels = [h.get_label() for h in handles]
    ncols, labels = legend_layout(labels, fig.get_figwidth())
    for handle, label in zip(handles, labels, strict=True):
        handle.set_label(label)
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=ncols,
        frameon=False,
        fontsize=LEGEND_FONT,
    )


def legend_layout(labels: list[str], width: float) -> tuple[int, list[str]]:
    """Columns (3 at most) and labels, wrapped where even one column would not fit, for a
    legend that fits `width` inches: a legend wider than its figure is cut at both edges."""
    char = CHAR_EM * LEGEND_FONT / 72
    entry = 4.5 * LEGEND_FONT / 72  # handle, the gap to the text and between columns
    room = width - 0.3
    for ncols in range(min(len(labels), 3), 0, -1):
        if ncols * (entry + char * max(map(len, labels))) <= room:
            return ncols, labels
    return 1, [wrap_text(label, int((room - entry) / char)) for label in labels]


def wrap_text(text: str, chars: int) -> str:
    """Text in lines of at most `chars` characters, broken after a comma where it can (a
    setting stays on one line), else at a space."""
    lines: list[str] = []
    for part in text.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= chars:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines += textwrap.wrap(part, max(chars, 10), break_long_words=False) or [""]
    return "\n".join(lines)


def fit_title(ax: Axes, text: str, fontsize: float = 9) -> None:
    """A panel title wrapped to the width of the panel's grid cell, so that it does not run
    into its neighbours."""
    spec = ax.get_subplotspec()
    width = ax.figure.get_figwidth() * len(spec.colspan) / spec.get_gridspec().ncols
    ax.set_title(wrap_text(text, int(width / (CHAR_EM * fontsize / 72))), fontsize=fontsize)


def chance_line(ax: Axes, runs: pd.DataFrame, axis: str = "y") -> bool:
    """Chance accuracy as a dotted reference, where it lies within the data's range on the
    accuracy axis (y, or x); the range stays fitted to the data (drawn after the data).
    Whether it was drawn."""
    ax.autoscale_view()
    limits, line = (ax.get_ylim, ax.axhline) if axis == "y" else (ax.get_xlim, ax.axvline)
    low, high = limits()
    level = 100 * runs["chance_acc"].max()
    shown = bool(low <= level <= high)
    if shown:
        line(level, ls=":", color="0.5", lw=1, zorder=0)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(low, high)
    return shown


def percent(fraction: pd.Series, low: float = 0.0) -> pd.Series:
    """A fraction in %, clipped to [low, 1]: a t-interval over few seeds can overshoot the
    possible range (accuracy in [0, 1], a gap in [-1, 1]); drawn there it would only mislead."""
    return 100 * fraction.clip(low, 1)


def half_errors(mean: pd.Series, lo: pd.Series, hi: pd.Series, low: float = 0.0) -> np.ndarray:
    """Asymmetric yerr in %, for errorbar; a single seed (no CI) draws no bar."""
    mean, lo, hi = percent(mean, low), percent(lo, low), percent(hi, low)
    return np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0)


def any_diverged(runs: pd.DataFrame) -> bool:
    return bool(runs["status"].eq("diverged").any())


def ordered_values(runs: pd.DataFrame, factor: str) -> list:
    """A factor's values: numbers ascending, known categories in their natural order."""
    values = sorted_values(runs[factor])
    order = CATEGORY_ORDER.get(factor, ())
    return sorted(values, key=lambda v: order.index(v) if v in order else len(order))


def save(fig: Figure, png: Path, svg: Path) -> None:
    """Write the PNG, then the SVG with the layout the PNG's drawing computed (laying the
    figure out again would cost a third of its time and move nothing by more than 0.5% of
    the figure), each atomically (temp file + rename); SVG without a date and with ids
    from a fixed salt (not random ones) so reruns are identical."""
    dpi = figure_dpi(fig)
    with atomic_file(png, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    fig.set_layout_engine("none")
    with atomic_file(svg, "wb") as f, rc_context({"svg.hashsalt": "bnbench"}):
        fig.savefig(f, format="svg", dpi=dpi, metadata={"Date": None})


def figure_dpi(fig: Figure) -> float:
    """DPI, or less for a figure so large that it would exceed MAX_PX at DPI."""
    width, height = fig.get_size_inches()
    return min(DPI, MAX_PX[0] / width, MAX_PX[1] / height)
