"""What building a report gives back (bnbench.report.build), and the headline it prints."""

from __future__ import annotations

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
