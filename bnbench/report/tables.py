"""A sweep report's tables: the headline (accuracy per norm and setting) and the paired
effects against no norm, with the numbers formatted as text; plain-text for the terminal.

A Table is columns and rows of text cells (or links); bnbench.report puts it on the page,
which is rendered to Markdown and HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bnbench.analysis.columns import factors
from bnbench.analysis.formats import fmt_p, signed
from bnbench.analysis.run_stats import effects, summarize, train_accuracy
from bnbench.analysis.stats import holm
from bnbench.analysis.words import key_text
from bnbench.report.style import fmt_value, norm_label, norms_in

CONTROL = "none"  # the no-normalization arm every other norm is paired against
TEST_NAMES = {"t": "t-test", "bootstrap": "bootstrap"}  # run_stats.effects' method, in words


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


def fmt_acc(mean: float, lo: float, hi: float) -> str:
    """A mean accuracy and its symmetric t-CI in %: '87.3 ± 1.2' (just '87.3' for one seed)."""
    if np.isnan(mean):
        return "-"
    return f"{100 * mean:.1f}" + (f" ± {100 * (hi - mean):.1f}" if not np.isnan(hi) else "")


def fmt_diff(mean: float, lo: float, hi: float) -> str:
    """A mean difference in percentage points with its CI: '+2.1 [+0.5, +3.7]'."""
    if np.isnan(mean):
        return "-"
    text = points(mean)
    return text + (f" [{points(lo)}, {points(hi)}]" if not np.isnan(lo) else "")


def points(fraction: float) -> str:
    """A difference in points to one decimal, as the accuracies: '+2.1', and '0.0' for one
    that rounds to zero, whichever its sign."""
    return signed(100 * fraction, 1)


def headline_table(runs: pd.DataFrame) -> Table:
    """One row per configuration: norm x every other key that varies (runs with different
    settings are never pooled), mean ± 95% CI over seeds, n, diverged."""
    facs = list(factors(runs))
    metrics = ["val_acc", "test_acc", "gap"]
    train, train_label = train_accuracy(runs)
    gap = runs[train] - runs["test_acc"]
    table = summarize(runs.assign(gap=gap), metrics, by=["model.norm", *facs])
    gap_column = f"train - test (pts; {train_label})"
    columns = [
        "norm",
        *map(key_text, facs),
        "n",
        "diverged",
        "val acc (%)",
        "test acc (%)",
        gap_column,
    ]
    out = Table(columns)
    for norm in norms_in(runs):
        for _, r in table[table["model.norm"].eq(norm)].iterrows():
            cells = [fmt_acc(r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"]) for m in metrics]
            config = [fmt_value(r[f]) for f in facs]
            out.rows.append([norm_label(norm), *config, str(r["n"]), str(r["n_diverged"]), *cells])
    return out


def effect_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Every other norm paired against no-norm by seed, Holm-adjusted across the whole table."""
    arms = [n for n in norms_in(runs) if n != CONTROL]
    if CONTROL not in set(runs["model.norm"]) or not arms:
        return pd.DataFrame()
    frames = [effects(runs, ("val_acc", "test_acc"), "model.norm", arm, CONTROL) for arm in arms]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    table["p_holm"] = holm(table["p"])
    return table


def effect_table(runs: pd.DataFrame, frame: pd.DataFrame) -> Table:
    facs = list(factors(runs))
    columns = ["comparison", *map(key_text, facs), "metric", "n pairs", "difference (pts) [95% CI]"]
    # the test named in each row and in the headers: a claim's verdict on the same page
    # gives the exact sign-flip test's p
    tests = ["test", "p (t-test or bootstrap)", "p (t-test or bootstrap, Holm)"]
    out = Table([*columns, *tests, "diverged (arm / none)"])
    for _, r in frame.iterrows():
        out.rows.append(
            [
                r["comparison"],
                *(fmt_value(r[f]) for f in facs),
                r["metric"],
                str(r["n"]),
                fmt_diff(r["mean"], r["lo"], r["hi"]),
                TEST_NAMES.get(r["method"], r["method"]),
                fmt_p(r["p"]),
                fmt_p(r["p_holm"]),
                f"{r['n_diverged_treatment']} / {r['n_diverged_control']}",
            ]
        )
    return out


def text_table(table: Table) -> str:
    """A plain-text table with aligned columns, for the terminal."""
    widths = [
        max(len(str(row[i])) for row in [table.columns, *table.rows])
        for i in range(len(table.columns))
    ]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [table.columns, *table.rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
