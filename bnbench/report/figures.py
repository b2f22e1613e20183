"""Which figures a sweep calls for, and drawing them: convergence and generalization always,
one figure per swept factor (bnbench.report.plots draws each), shared out over worker processes.
"""

from __future__ import annotations

import inspect
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from bnbench.analysis.columns import factors, sorted_values
from bnbench.analysis.measures import AT_BEST, MEASURES
from bnbench.analysis.words import key_text
from bnbench.report.plots import (
    factor_figure,
    factor_panels,
    plot_dropout,
    plot_factor,
    plot_generalization,
)
from bnbench.report.plots_convergence import ArmChoice, default_choice, plot_convergence
from bnbench.report.style import (
    METRIC_LABELS,
    FigureFile,
    any_diverged,
    determined,
    is_numeric,
    panels,
    save,
)


def figure_specs(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    steps: pd.DataFrame | None = None,
    choice: ArmChoice | None = None,
) -> list[tuple[str, str, str, object]]:
    """(name, title, caption, builder) for every figure this sweep calls for; steps: the runs'
    steps.csv rows, for the convergence figure's loss per optimizer step; choice: the arms
    it compares (primary_choice, for a claim's sweep), else each norm at its best."""
    diverged = " An x marks a diverged run, at chance accuracy." if any_diverged(runs) else ""
    what = (choice or default_choice(runs)).what
    specs = [
        (
            "convergence",
            "Convergence",
            "Train loss (per optimizer step where the runs logged steps) and validation "
            "accuracy per epoch (top) and against cumulative wall-clock seconds (bottom), mean "
            f"over seeds with 95% CI bands: {what}." + diverged,
            lambda: plot_convergence(runs, curves, steps, choice),
        ),
        (
            "generalization",
            "Generalization",
            "Final train and test accuracy and their gap (train - test) per configuration, "
            "mean over seeds with 95% CI; train accuracy in eval mode where the runs measured "
            "it (train.eval_train), else in train mode over the last epoch, as the panel says; "
            "diverged runs count at chance and have no gap.",
            lambda: plot_generalization(runs),
        ),
    ]
    drawn: list[str] = []
    for factor in sorted(factors(runs), key=lambda f: f == "optim.lr"):  # LR last: it follows
        name, title, _ = factor_figure(factor)
        heatmap = factor == "model.dropout" and dense(runs, factor)
        if not heatmap and not factor_panels(runs, factor):
            continue  # the factor never varies within a panel (e.g. ghost batches at 128 only)
        if any(determined(runs, factor, g) and determined(runs, g, factor) for g in drawn):
            continue  # one to one with a factor already drawn (an LR scaled with the batch)
        drawn.append(factor)
        if heatmap:
            caption = "Test accuracy for each norm and dropout rate; cells give mean, 95% CI "
            caption += "half-width and n; diverged runs count at chance."
            specs.append((name, title, caption, lambda: plot_dropout(runs)))
            continue
        caption = (
            f"Final validation accuracy against {key_text(factor)} for each norm, mean over seeds "
        )
        numeric = is_numeric(sorted_values(runs[factor]))
        caption += "with 95% CI" + ("." if numeric else "; each seed a hollow point.")
        specs.append((name, title, caption + diverged, lambda f=factor: plot_factor(runs, f)))
    return specs


def primary_choice(claims: list) -> ArmChoice | None:
    """The arms of the first claim's primary measure that takes each arm at its best
    setting (measures.AT_BEST, or gradient_ratio_growth at each depth), with its `over` and
    `select`, and where it splits or pools (`by`, `pool`; the depth), the keys within whose
    values it compares the arms: the convergence figure then shows the very runs the
    verdict compares. None without one."""
    for claim in sorted(claims, key=lambda c: c.number):
        measure, args = claim.primary, claim.primary.args
        if measure.measure in AT_BEST:
            within = (*args.get("by", ()), *args.get("pool", ()))
        elif measure.measure == "gradient_ratio_growth" and args.get("over"):
            within = (*args.get("pool", ()), args.get("depth", "model.depth"))
        else:
            continue
        default = inspect.signature(MEASURES[measure.measure]).parameters["select"].default
        over, select = tuple(args.get("over", ())), args.get("select", default)
        what = f"the arms of claim {claim.number}'s primary measure"
        if within:
            what += f" within each {' and '.join(key_text(k) for k in within)}"
        if over:
            keys = " and ".join(key_text(k) for k in over)
            chosen_on = METRIC_LABELS.get(select, select)
            what += f", each at its best {keys} (chosen on {chosen_on}, as that measure does)"
        arms = {"treatment": measure.treatment, "control": measure.control}
        return ArmChoice(arms, over, select, what, within)
    return None


def dense(runs: pd.DataFrame, factor: str) -> bool:
    """Whether three in four cells of a norm x factor heatmap per panel would hold runs; a
    sparser design is drawn as points per panel instead of a mostly empty heatmap."""
    norms, values = runs["model.norm"].nunique(), runs[factor].nunique(dropna=False)
    cells = [
        sub.groupby(["model.norm", factor], dropna=False).ngroups for _, sub in panels(runs, factor)
    ]
    return sum(cells) >= 0.75 * norms * values * len(cells)


def make_figures(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    directory: Path,
    workers: int = 1,
    steps: pd.DataFrame | None = None,
    choice: ArmChoice | None = None,
) -> list[FigureFile]:
    """Draw and save every figure the sweep calls for into directory (PNG and SVG), shared
    out over `workers` processes (this one draws its share too): drawing is most of a
    report's time, and a sweep reported alone would leave the other cores idle."""
    specs = figure_specs(runs, curves, steps, choice)
    names = [name for name, *_ in specs]
    shares = [names[i::workers] for i in range(min(workers, len(names)))]
    if len(shares) < 2:
        draw_figures(runs, curves, directory, names, steps, choice)
    else:
        context = multiprocessing.get_context("forkserver")  # no fork of a threaded parent
        with ProcessPoolExecutor(len(shares) - 1, mp_context=context) as pool:
            others = [
                pool.submit(draw_figures, runs, curves, directory, s, steps, choice)
                for s in shares[1:]
            ]
            draw_figures(runs, curves, directory, shares[0], steps, choice)
            for future in others:
                future.result()
    return [
        FigureFile(name, title, caption, directory / f"{name}.png", directory / f"{name}.svg")
        for name, title, caption, _ in specs
    ]


def draw_figures(runs, curves, directory: Path, names: list[str], steps=None, choice=None):
    """Draw and save the named figures of figure_specs (a worker process rebuilds the specs:
    their builders do not pickle)."""
    for name, _, _, build in figure_specs(runs, curves, steps, choice):
        if name in names:
            save(build(), directory / f"{name}.png", directory / f"{name}.svg")
