"""A sweep's report: from its run files alone to runs.csv, curves.csv, figures, REPORT.md and
report.html, written into the sweep (or elsewhere, for read-only results):

    runs.csv, curves.csv      the aggregated tables (bnbench.analysis.tables)
    figures/*.png, *.svg      every figure the sweep calls for (bnbench.report.figures)
    REPORT.md                 what was swept, n per cell, the summary and paired-effect tables
    report.html               the same, self-contained (figures embedded as base64 PNG)

The report is assembled here once as a list of blocks (heading, paragraph, list, table,
figure) and rendered twice, to Markdown and to HTML (bnbench.report.render); its tables are
built by bnbench.report.tables; a results root's sweeps and index by bnbench.report.index.
Never imports torch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bnbench.analysis.columns import factors, varying_columns
from bnbench.analysis.stats import BOOTSTRAP_MIN_N
from bnbench.analysis.tables import aggregate, load_steps, output_dir
from bnbench.analysis.words import key_text, override_text
from bnbench.claims.display import HEADER, primary_row, secondary_rows
from bnbench.claims.registry import article_title, claims_of
from bnbench.claims.verdict import verdict
from bnbench.config.machine import available_cores
from bnbench.report.figures import make_figures, primary_choice
from bnbench.report.plots_claim import plot_claim
from bnbench.report.render import Link, write_reports
from bnbench.report.result import NoRunsError, ReportResult, moved
from bnbench.report.style import FigureFile, fmt_value, norms_in, save
from bnbench.report.tables import (
    CONTROL,
    Table,
    effect_frame,
    effect_table,
    headline_table,
    text_table,
)
from bnbench.store.planfile import read_plan
from bnbench.store.staging import staged

# Settings worth stating when they are the same for every run.
KEY_SETTINGS = [
    "dataset.name",
    "dataset.train_subset",
    "train.epochs",
    "train.batch_size",
    "optim.name",
    "optim.lr",
    "optim.schedule",
    "model.widths",
    "model.depth",
    "model.activation",
    "model.placement",
    "model.init",
    "model.dropout",
]


# --- the report as blocks ------------------------------------------------------------------


def swept_items(runs: pd.DataFrame, skipped: list) -> list[str]:
    counts = runs["status"].value_counts()
    per_cell = runs.groupby(["model.norm", *factors(runs)], dropna=False).size()
    n_cell = (
        f"{per_cell.min()}"
        if per_cell.min() == per_cell.max()
        else f"{per_cell.min()}-{per_cell.max()}"
    )
    items = [
        f"runs: {len(runs)} finished ({counts.get('completed', 0)} completed, "
        f"{counts.get('diverged', 0)} diverged), {len(skipped)} skipped",
        "norms: " + ", ".join(norms_in(runs)),
        *(  # in words, with the key to type in an override
            f"{key_text(f)} ({f}): " + ", ".join(fmt_value(v) for v in values)
            for f, values in factors(runs).items()
        ),
        "seeds: "
        + ", ".join(str(s) for s in sorted(runs["seed"].unique()))
        + f" (n = {n_cell} runs per configuration)",
    ]
    fixed = [k for k in KEY_SETTINGS if k in runs and runs[k].nunique(dropna=False) == 1]
    if fixed:
        items.append("fixed: " + ", ".join(f"{k}={override_text(runs[k].iloc[0])}" for k in fixed))
    chance = ", ".join(f"{100 * c:.0f}%" for c in sorted(runs["chance_acc"].unique()))
    items.append(f"chance accuracy: {chance}")
    return items


def report_blocks(runs, skipped, figures: list[FigureFile], headline: Table, name: str) -> list:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list = [
        ("h1", f"bnbench report: {name}"),
        ("p", f"Built {stamp} from the run files alone ({len(runs)} runs)."),
        ("h2", "What was swept"),
        ("ul", swept_items(runs, skipped)),
        ("h2", "Headline: accuracy by norm and setting"),
        ("table", headline),
        (
            "p",
            "Final accuracies in %, mean ± half-width of the 95% t-interval over the seeds of "
            "each configuration (none shown for a single seed): runs that differ in any key "
            "besides the seed are never pooled. n runs, of which 'diverged' diverged and "
            "count at chance accuracy; the train - test gap leaves diverged runs out.",
        ),
    ]
    return blocks + effect_blocks(runs) + figure_blocks(figures) + skipped_blocks(skipped)


# A section is shown only where it has content: a sweep without 'none' runs has no pairs to
# show, and says nothing about them (its headline table already shows which norms it ran).
def effect_blocks(runs: pd.DataFrame) -> list:
    frame = effect_frame(runs)
    if frame.empty:
        return []
    return [
        ("h2", f"Paired effect: each norm - {CONTROL}"),
        ("table", effect_table(runs, frame)),
        (
            "p",
            "Differences in accuracy points between runs that share every setting and "
            "the seed (so the same data order) and differ only in the norm. CI and p "
            "(column 'test'): t-interval and t-test; a percentile bootstrap (10,000 "
            f"resamples) instead when n >= {BOOTSTRAP_MIN_N} and the differences are skewed. "
            "p: two-sided, of zero mean difference (not the exact sign-flip test of a "
            "claim's verdict); Holm-adjusted across every row of this table.",
        ),
    ]


def figure_blocks(figures: list[FigureFile]) -> list:
    return [("h2", "Figures"), *(("figure", f) for f in figures)] if figures else []


def skipped_blocks(skipped: list) -> list:
    if not skipped:
        return []
    return [("h2", "Skipped runs"), ("ul", [f"{path}: {reason}" for path, reason in skipped])]


def claim_verdicts(sweep: Path) -> list:
    """The verdicts of the claims judged on this sweep (none for any other sweep)."""
    return [verdict(claim.name, sweep.parent) for claim in claims_of(sweep.name)]


def claim_blocks(sweep: Path, result) -> list:
    """For a claim's sweep: the outcome, the primary effect, the secondary cells, the figure."""
    claim = result.claim
    kind = "" if result.status == "incomplete" else f" ({result.kind.kind})"
    heading = ("h2", f"Claim {claim.number}, {claim.name}: {result.status}{kind}")
    quote = ("p", f"\u201c{claim.text}\u201d ({article_title(claim.source)}).")
    if result.status == "incomplete":
        return [heading, quote, ("p", result.sentence)]
    table = Table(HEADER)
    table.rows = [primary_row(result), *secondary_rows(result)]
    why = ("p", f"Why this measure: {claim.why}")
    fig = plot_claim(result, f"Claim {claim.number}: {claim.name} ({result.profile})")
    stem = f"claim_{claim.number}"
    png, svg = sweep / "figures" / f"{stem}.png", sweep / "figures" / f"{stem}.svg"
    save(fig, png, svg)
    caption = (
        "Paired differences treatment - control with 95% CIs, one panel per unit; the dashed "
        "lines are +-delta, the shaded side the one the claim predicts. "
        f"Anchor: {claim.anchor}."
    )
    figure = FigureFile(stem, f"Claim {claim.number}: {claim.name}", caption, png, svg)
    outcome = ("p", result.sentence)
    return [heading, quote, outcome, why, ("table", table), ("figure", figure)]


# --- entry points --------------------------------------------------------------------------


def build_sweep_report(
    results_dir: Path,
    out: str | Path | None = None,
    index: bool = False,
    workers: int | None = None,
) -> ReportResult:
    """Aggregate, draw and write one sweep's report (results_dir: a sweep or its runs/ dir)
    into out (default: the sweep itself). index: the report links up to the index of the
    results root above it. workers: processes drawing the figures (default: every
    available core). The files are written into a partial directory and moved in together
    once all are written: a full disk, or no finished run, leaves the old report as it was."""
    source = output_dir(results_dir)
    final = source if out is None else Path(out)
    up = index or (final.parent / "report.html").is_file()
    with staged(final) as stage:
        result = write_sweep_report(results_dir, source, stage, up, workers)
    return moved(result, stage, final)


def write_sweep_report(
    results_dir: Path, source: Path, out: Path, up: bool, workers: int | None
) -> ReportResult:
    """build_sweep_report's files, written into out; up: link to the root's index."""
    agg = aggregate(results_dir, out)
    if agg.runs.empty:
        why = f" ({len(agg.skipped)} skipped as unfinished or corrupt)" if agg.skipped else ""
        raise NoRunsError(f"no finished runs under {results_dir}{why}")
    workers = available_cores() if workers is None else workers
    steps = load_steps(results_dir)
    steps = steps[steps["run_id"].isin(agg.runs["run_id"])]
    choice = primary_choice(claims_of(source.name))  # a claim's sweep: the verdict's arms
    figures = make_figures(agg.runs, agg.curves, out / "figures", workers, steps, choice)
    headline = headline_table(agg.runs)
    blocks = report_blocks(agg.runs, agg.skipped, figures, headline, source.resolve().name)
    mixed = [*agg.mixed, *other_settings(agg.runs, source)]
    blocks[2:2] = [("p", f"Warning: {line}.") for line in mixed]
    verdicts = claim_verdicts(source)
    blocks[1:1] = [block for v in verdicts for block in claim_blocks(out, v)]
    if up:
        blocks.insert(
            1, ("nav", [Link("↑ all sweeps and claims", "../report.html", "../REPORT.md")])
        )
    report_md, report_html = write_reports(blocks, out)
    return ReportResult(
        results_dir=out,
        report_md=report_md,
        report_html=report_html,
        runs_csv=agg.runs_csv,
        curves_csv=agg.curves_csv,
        figures=[p for f in figures for p in (f.png, f.svg)],
        n_runs=len(agg.runs),
        skipped=agg.skipped,
        headline=text_table(headline),
        verdicts=verdicts,
        warnings=mixed,
    )


def other_settings(runs: pd.DataFrame, sweep: Path) -> list[str]:
    """A line naming the keys in which runs outside the sweep's plan (a single `bnbench run`
    into the same directory, which records no plan) differ from the planned ones, which all
    share them."""
    try:
        plan = read_plan(sweep)
    except (OSError, ValueError):
        return []
    if plan is None:
        return []
    planned = runs["run_id"].isin(set(plan.run_ids))
    if planned.all() or not planned.any():
        return []
    fixed = [c for c in varying_columns(runs) if runs.loc[planned, c].nunique(dropna=False) == 1]
    if not fixed:
        return []
    return [
        f"{(~planned).sum()} run(s) in {sweep} have other settings than this sweep's plan "
        f"({', '.join(fixed)}); every table reports each setting on its own rows"
    ]
