"""A report from the run files alone: `bnbench report`'s entry point.

    build_report(results_dir) -> ReportResult

reads every finished run under results_dir (a sweep, a results root or a runs/ dir),
skipping and naming the broken ones, and writes the sweep's report into it
(bnbench.report.sweep), or for a results root each sweep's report and the index
(bnbench.report.index). Never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bnbench.report.index import build_root_report, sweeps_under
from bnbench.report.result import NoRunsError, ReportResult
from bnbench.report.sweep import build_sweep_report


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
    if sweeps_under(results_dir):
        return build_root_report(results_dir, out, log or (lambda line: None))
    return build_sweep_report(results_dir, out, index, workers)
