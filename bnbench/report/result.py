"""What building a report gives back (bnbench.report.build), and the headline it prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


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
    verdicts: list = field(default_factory=list)  # bnbench.claims.verdict.Verdict per claim
    warnings: list[str] = field(default_factory=list)  # e.g. runs that mixed thread counts

    @property
    def written(self) -> list[Path]:
        tables = [p for p in (self.runs_csv, self.curves_csv) if p is not None]
        return [*tables, *self.figures, self.report_md, self.report_html]


def headline_text(result: ReportResult) -> str:
    """The headline comparison as a short plain-text table, for the CLI to print."""
    if result.runs_csv is None:  # a results root's index: the verdicts or the sweeps
        return result.headline
    note = "mean ± 95% CI over seeds, per norm and setting; diverged runs count at chance"
    return f"{result.headline}\n({note})"


def moved(result: ReportResult, stage: Path, final: Path) -> ReportResult:
    """The result with each path it wrote under stage (bnbench.store.staging) named where
    the file is once published, under final."""

    def place(path):
        if path is None or not Path(path).is_relative_to(stage):
            return path
        return final / Path(path).relative_to(stage)

    return dataclasses.replace(
        result,
        results_dir=place(result.results_dir),
        report_md=place(result.report_md),
        report_html=place(result.report_html),
        runs_csv=place(result.runs_csv),
        curves_csv=place(result.curves_csv),
        figures=[place(f) for f in result.figures],
    )
