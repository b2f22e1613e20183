"""A results root's report: every sweep under it reported (side by side on the available
cores, since drawing the figures is most of a report's time), then the index, REPORT.md and
report.html at the root, with the claims' verdicts and a link to every sweep."""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from bnbench.claims.display import INDEX_HEADER, index_row
from bnbench.claims.registry import claims_of
from bnbench.claims.verdict_table import write_verdicts
from bnbench.config.machine import available_cores
from bnbench.report.render import Link, write_reports
from bnbench.report.result import NoRunsError, ReportResult, moved
from bnbench.report.style import FigureFile, save
from bnbench.report.sweep import build_sweep_report
from bnbench.report.tables import Table, text_table
from bnbench.store.files import RUNS_DIR
from bnbench.store.reader import SkippedRunWarning
from bnbench.store.staging import staged


def sweeps_under(root: Path) -> list[Path]:
    """The sweeps directly under a results root: its subdirectories holding runs/."""
    if root.name == RUNS_DIR or (root / RUNS_DIR).is_dir():
        return []  # root is a sweep itself
    return sorted(p for p in root.iterdir() if (p / RUNS_DIR).is_dir())


def build_root_report(
    results_dir: Path, out: str | Path | None, log: Callable[[str], None]
) -> ReportResult:
    """Each sweep's report under results_dir (into out/<sweep> when out is given), then the
    index; `log` is told each sweep as it finishes."""
    root = results_dir if out is None else Path(out)
    sweeps = sweeps_under(results_dir)
    targets = [(sweep, None if out is None else root / sweep.name) for sweep in sweeps]
    done = sweep_reports(targets, log)
    reports = [r for r in done if isinstance(r, ReportResult)]
    if not reports:  # nothing to index: write nothing, say so
        raise NoRunsError(f"no finished runs under {results_dir} (in {len(sweeps)} sweep(s))")
    index = build_index(root, reports)
    index.warnings += [f"{r}; no report written for it" for r in done if isinstance(r, NoRunsError)]
    return index


def sweep_reports(
    targets: list[tuple[Path, Path | None]], log: Callable[[str], None]
) -> list[ReportResult | NoRunsError]:
    """Each sweep's report (sweep, out); on several cores, sweeps side by side in worker
    processes, since drawing the figures is most of a report's time. `log` is told each
    sweep as it finishes; the reports come back in the order of `targets`."""
    workers = min(available_cores(), len(targets))
    if workers < 2:
        reports = []
        for number, (sweep, out) in enumerate(targets, start=1):
            reports.append(_sweep_report(sweep, out, workers=None))  # figures on every core
            log(f"[{number}/{len(targets)}] {sweep.name}")
        return reports
    context = multiprocessing.get_context("forkserver")  # no fork of a threaded parent
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(_sweep_report, sweep, out, 1): sweep for sweep, out in targets}
        for number, future in enumerate(as_completed(futures), start=1):
            log(f"[{number}/{len(targets)}] {futures[future].name}")
        return [future.result() for future in futures]


def _sweep_report(sweep: Path, out: Path | None, workers: int | None) -> ReportResult | NoRunsError:
    """One sweep's report, its figures drawn by `workers` processes (None: every core), its
    warnings kept in the result (a worker's own warnings would not reach the caller);
    skipped runs are in result.skipped already. A sweep with no finished run yet (just
    launched) gives why, and never stops the other sweeps' reports."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = build_sweep_report(sweep, out, True, workers=workers)
        except NoRunsError as nothing:
            return nothing
    said = [str(w.message) for w in caught if not issubclass(w.category, SkippedRunWarning)]
    result.warnings += list(dict.fromkeys(said))
    return result


def build_index(root: Path, reports: list[ReportResult]) -> ReportResult:
    """REPORT.md and report.html at a results root: the claims' verdicts, then every sweep;
    written into a partial directory and moved in together once all are written."""
    with staged(root) as stage:
        index = write_index(root, stage, reports)
    return moved(index, stage, root)


def write_index(root: Path, out: Path, reports: list[ReportResult]) -> ReportResult:
    """build_index's files for the results root `root`, written into out."""
    verdicts = Table([*INDEX_HEADER, "report"])
    sweeps = Table(["sweep", "runs", "skipped", "report"])
    judged = []  # (claim number, row): the claims in number order, whichever sweep holds them
    for report in sorted(reports, key=lambda r: sweep_order(r.results_dir)):
        html_page, md_page = (p.relative_to(root).as_posix() for p in report_pages(report))
        link = Link(report.results_dir.name, html_page, md_page)
        page = Link("report", html_page, md_page)
        sweeps.rows.append([link, str(report.n_runs), str(len(report.skipped)), page])
        for result in report.verdicts:
            name, *rest = index_row(result)
            judged.append((result.claim.number, [Link(name, html_page, md_page), *rest, page]))
    verdicts.rows = [row for _, row in sorted(judged, key=lambda pair: pair[0])]
    all_verdicts = sorted((v for r in reports for v in r.verdicts), key=lambda v: v.claim.number)
    if all_verdicts:
        write_verdicts(out, all_verdicts)
    n_runs = sum(r.n_runs for r in reports)
    blocks: list = [("h1", f"bnbench report: {root.resolve().name}")]
    blocks.append(("p", f"{len(reports)} sweep(s), {n_runs} finished run(s)."))
    if verdicts.rows:
        blocks += [("h2", "Claims"), ("table", verdicts)]
    overview = overview_figure(out, [v for v in all_verdicts if v.primary])
    overview_files = [] if overview is None else [overview.png, overview.svg]
    if overview is not None:
        blocks.append(("figure", overview))
    if sweeps.rows:  # a section only where it has content
        blocks += [("h2", "Sweeps"), ("table", sweeps)]
    report_md, report_html = write_reports(blocks, out)
    return ReportResult(
        results_dir=out,
        report_md=report_md,
        report_html=report_html,
        runs_csv=None,
        curves_csv=None,
        figures=[*overview_files, *(f for r in reports for f in r.figures)],
        n_runs=n_runs,
        skipped=[s for r in reports for s in r.skipped],
        headline=text_table(verdicts if verdicts.rows else sweeps),
        verdicts=all_verdicts,
        warnings=[f"{r.results_dir.name}: {line}" for r in reports for line in r.warnings],
    )


def overview_figure(root: Path, verdicts: list) -> FigureFile | None:
    """figures/overview.png and .svg at the root: every judged claim's primary effect."""
    if not verdicts:
        return None
    from bnbench.report.plots_claim import plot_overview  # matplotlib

    (root / "figures").mkdir(parents=True, exist_ok=True)
    figure = FigureFile(
        "overview",
        "Every claim's primary effect",
        "Each claim's primary measure, treatment - control, in its own unit: the mean over "
        "seeds with its 95% CI, coloured by outcome; grey: the band within +-delta, inside "
        "which an effect is too small to matter.",
        root / "figures" / "overview.png",
        root / "figures" / "overview.svg",
    )
    save(plot_overview(verdicts), figure.png, figure.svg)
    return figure


def report_pages(report: ReportResult) -> tuple[Path, Path]:
    return report.report_html, report.report_md


def sweep_order(sweep: Path) -> tuple:
    """Claim sweeps first, by claim number; then the rest by name."""
    claims = claims_of(sweep.name)
    return (0, claims[0].number, "") if claims else (1, 0, sweep.name)
