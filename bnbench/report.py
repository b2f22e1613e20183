"""Report: from the run files alone to runs.csv, curves.csv, figures, REPORT.md and report.html.

    build_report(results_dir) -> ReportResult

reads every finished run under results_dir (a sweep, a results root or a runs/ dir),
skipping and naming the broken ones, and writes into it:

    runs.csv, curves.csv      the aggregated tables (bnbench.aggregate)
    figures/*.png, *.svg      every figure the sweep calls for (bnbench.figures)
    REPORT.md                 what was swept, n per cell, the summary and paired-effect tables
    report.html               the same, self-contained (figures embedded as base64 PNG)

The report is assembled here once as a list of blocks (heading, paragraph, list, table,
figure) and rendered twice, to Markdown and to HTML (bnbench.report_render); its tables are
built by bnbench.report_tables; a results root's sweeps and index by bnbench.report_index.
Never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bnbench.aggregate import aggregate, factors, output_dir
from bnbench.figures import make_figures
from bnbench.machine import available_cores
from bnbench.plots_style import FigureFile, fmt_value, norms_in
from bnbench.report_render import Link, write_reports
from bnbench.report_tables import (
    CONTROL,
    Table,
    effect_frame,
    effect_table,
    headline_table,
    text_table,
)
from bnbench.stats import BOOTSTRAP_MIN_N

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


class NoRunsError(ValueError):
    """Nothing to report: no results directory, or no finished run in it."""


@dataclass
class ReportResult:
    results_dir: Path
    report_md: Path
    report_html: Path
    runs_csv: Path | None  # None for a results root's index
    curves_csv: Path | None
    figures: list[Path]  # PNG and SVG of each figure
    n_runs: int  # finished runs read
    skipped: list[tuple[Path, str]]  # (run_dir, reason)
    headline: str  # plain-text headline table
    verdicts: list = field(default_factory=list)  # bnbench.claims.Verdict per claim judged here
    warnings: list[str] = field(default_factory=list)  # e.g. runs that mixed thread counts

    @property
    def written(self) -> list[Path]:
        tables = [p for p in (self.runs_csv, self.curves_csv) if p is not None]
        return [*tables, *self.figures, self.report_md, self.report_html]


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
        *(
            f"{f}: " + ", ".join(fmt_value(v) for v in values)
            for f, values in factors(runs).items()
        ),
        "seeds: "
        + ", ".join(str(s) for s in sorted(runs["seed"].unique()))
        + f" (n = {n_cell} runs per configuration)",
    ]
    fixed = [k for k in KEY_SETTINGS if k in runs and runs[k].nunique(dropna=False) == 1]
    if fixed:
        items.append("fixed: " + ", ".join(f"{k}={fmt_value(runs[k].iloc[0])}" for k in fixed))
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
        ("h2", f"Paired effect: each norm - {CONTROL}"),
    ]
    frame = effect_frame(runs)
    if frame.empty:
        blocks.append(
            (
                "p",
                f"No pairs: the sweep has no {CONTROL!r} runs matching another norm "
                "in every other setting and seed.",
            )
        )
    else:
        blocks += [
            ("table", effect_table(runs, frame)),
            (
                "p",
                "Differences in accuracy points between runs that share every setting and "
                "the seed (so the same data order) and differ only in model.norm. CI: "
                f"t-interval; a percentile bootstrap (10,000 resamples) instead when n >= "
                f"{BOOTSTRAP_MIN_N} and the differences are skewed. p: two-sided test of "
                "zero mean difference; Holm-adjusted across every row of this table.",
            ),
        ]
    blocks.append(("h2", "Figures"))
    blocks += [("figure", f) for f in figures]
    if skipped:
        blocks += [
            ("h2", "Skipped runs"),
            ("ul", [f"{path}: {reason}" for path, reason in skipped]),
        ]
    return blocks


def claim_verdicts(sweep: Path) -> list:
    """The verdicts of the claims judged on this sweep (none for any other sweep)."""
    from bnbench.claims import claims_of, verdict

    return [verdict(claim.name, sweep.parent) for claim in claims_of(sweep.name)]


def claim_blocks(sweep: Path, result) -> list:
    """For a claim's sweep: the outcome, the primary effect, the secondary cells, the figure."""
    from bnbench.plots_claim import plot_claim
    from bnbench.plots_style import save
    from bnbench.verdicts import HEADER, primary_row, secondary_rows

    claim = result.claim
    heading = ("h2", f"Claim {claim.number}, {claim.name}: {result.status}")
    quote = ("p", f"\u201c{claim.text}\u201d ({claim.source}).")
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


def build_report(
    results_dir: str | Path,
    out: str | Path | None = None,
    index: bool = False,
    log: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> ReportResult:
    """Aggregate, draw and write the report for every finished run under results_dir; for a
    results root holding several sweeps, one report per sweep and an index with the claims'
    verdicts. Everything is written into out (default: results_dir itself), so read-only
    results can be reported elsewhere. index: the sweep's report links up to the index of
    the results root above it. log: told each sweep as its report is done (a large tree
    takes minutes). workers: processes drawing one sweep's figures (default: every
    available core)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise NoRunsError(f"no results directory at {results_dir}")
    from bnbench.report_index import build_root_report, sweeps_under  # imports this module

    if sweeps_under(results_dir):
        return build_root_report(results_dir, out, log or (lambda line: None))
    source = output_dir(results_dir)
    out = source if out is None else Path(out)
    agg = aggregate(results_dir, out)
    if agg.runs.empty:
        why = f" ({len(agg.skipped)} skipped as unfinished or corrupt)" if agg.skipped else ""
        raise NoRunsError(f"no finished runs under {results_dir}{why}")
    workers = available_cores() if workers is None else workers
    figures = make_figures(agg.runs, agg.curves, out / "figures", workers)
    headline = headline_table(agg.runs)
    blocks = report_blocks(agg.runs, agg.skipped, figures, headline, source.resolve().name)
    mixed = [*agg.mixed, *other_settings(agg.runs, source)]
    blocks[2:2] = [("p", f"Warning: {line}.") for line in mixed]
    verdicts = claim_verdicts(source)
    blocks[1:1] = [block for v in verdicts for block in claim_blocks(out, v)]
    if index or (out.parent / "report.html").is_file():
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
    """A line naming the keys in which runs outside the sweep's plan (an earlier `bnbench run`
    into the same directory) differ from the planned ones, which all share them."""
    from bnbench.aggregate import varying_columns
    from bnbench.planfile import read_plan

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


def headline_text(result: ReportResult) -> str:
    """The headline comparison as a short plain-text table, for the CLI to print."""
    if result.runs_csv is None:  # a results root's index: the verdicts or the sweeps
        return result.headline
    note = "mean ± 95% CI over seeds, per norm and setting; diverged runs count at chance"
    return f"{result.headline}\n({note})"
