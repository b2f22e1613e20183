"""What `bnbench run` shows about its plan: each run's resolved config (--cfg job), the table
of runs with their status and results, the runs of other settings already in the sweep
directory, and where to look next."""

from __future__ import annotations

import contextlib
import json

from rich.table import Table

from bnbench.cli.terminal import console, err_console
from bnbench.config.identity import NOT_IDENTITY, settings
from bnbench.store.files import RUNS_DIR, read_summary, run_dir, sweep_dir
from bnbench.store.hold import held_elsewhere
from bnbench.sweep.plan import PlannedRun


def print_configs(plan: list[PlannedRun]) -> None:
    """`--cfg job`: each planned run's resolved config as YAML, headed by its run id."""
    from omegaconf import OmegaConf

    for p in plan:
        text = OmegaConf.to_yaml(OmegaConf.structured(p.config))
        console.print(f"# run {p.run_id}\n{text}", markup=False, highlight=False)


def warn_other_settings(plan: list[PlannedRun]) -> None:
    """Say, before training, when the sweep directory already holds runs whose settings differ
    from the plan's fixed ones: the report will show them apart, not pooled."""
    from bnbench.store.reader import CorruptRun, read_config  # pandas

    def norm(value):
        return json.dumps(value) if isinstance(value, list) else value

    planned = [{k: norm(v) for k, v in settings(p.config).items()} for p in plan]
    fixed = {k: v for k, v in planned[0].items() if all(c.get(k) == v for c in planned)}
    fixed.pop("seed", None)
    directory = sweep_dir(plan[0].config)
    ids = {p.run_id for p in plan}
    other: dict[str, set] = {}
    for run in sorted((directory / RUNS_DIR).glob("*/config.yaml")):
        if run.parent.name in ids:
            continue
        with contextlib.suppress(CorruptRun):
            config = read_config(run.parent)
            for key, value in fixed.items():
                if key not in NOT_IDENTITY and config.get(key, value) != value:
                    other.setdefault(key, set()).add(str(config.get(key)))
    if other:
        there = "; ".join(
            f"{k}={' | '.join(sorted(v))} there, {fixed[k]} here" for k, v in other.items()
        )
        err_console.print(
            f"warning: {directory} already holds runs with other settings ({there}); the "
            "report shows each setting apart; to keep this sweep on its own, add sweep=NAME",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def print_next(plan: list[PlannedRun]) -> None:
    """Where to look next: the report command of each sweep directory the plan wrote into."""
    for directory in dict.fromkeys(sweep_dir(p.config) for p in plan):
        console.print(f"next: bnbench report {directory}", markup=False, highlight=False)


def plan_table(plan: list[PlannedRun], with_results: bool) -> Table:
    """One row per run: the config keys that differ across the plan, then status and metrics."""
    configs = [settings(p.config) for p in plan]
    varying = [k for k in configs[0] if len({repr(c[k]) for c in configs}) > 1]
    table = Table(show_lines=False)
    for column in ["run", *varying, "status"]:
        table.add_column(column)
    if with_results:
        for column in ["epochs", "train_loss", "val_acc", "test_acc", "wall_s"]:
            table.add_column(column, justify="right")
    for p, flat in zip(plan, configs, strict=True):
        summary = read_summary(run_dir(p.config)) or {}
        row = [p.run_id, *(str(flat[k]) for k in varying), summary.get("status") or status(p)]
        if with_results:
            final = summary.get("final") or {}
            row += [
                str(summary.get("epochs_completed", "")),
                _fmt(final.get("train_loss"), "{:.4f}"),
                _fmt(final.get("val_acc"), "{:.2%}"),
                _fmt(final.get("test_acc"), "{:.2%}"),
                _fmt(summary.get("wall_time_s"), "{:.1f}"),
            ]
        table.add_row(*row)
    return table


def status(p: PlannedRun) -> str:
    """A run without a summary: new, running elsewhere (another process holds it),
    or unfinished (its process was killed; the next call trains it)."""
    directory = run_dir(p.config)
    if held_elsewhere(directory):
        return "running elsewhere"
    return "unfinished" if directory.exists() else "new"


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


ONE_SEED = (
    "one seed per arm: the difference above is one data draw, and it has no CI; it cannot "
    "tell a BN effect from seed-to-seed spread. Claim 1 decides whether BN trains faster "
    "on 10 seeds: bnbench claims run faster-convergence"
)


def print_effects(plan: list[PlannedRun]) -> None:
    """The end of a sweep with both arms: the paired BN - no-BN effect per configuration
    (mean, 95% CI, n seeds) in test accuracy, and what one seed cannot show."""
    import warnings

    from bnbench.analysis.tables import load_runs  # pandas
    from bnbench.report.style import cell_label
    from bnbench.report.tables import effect_frame, fmt_diff

    ids = {p.run_id for p in plan}
    for directory in dict.fromkeys(sweep_dir(p.config) for p in plan):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the report names unreadable runs
            runs = load_runs(directory)
        runs = runs[runs["run_id"].isin(ids)] if not runs.empty else runs
        if runs.empty or not {"batch", "none"} <= set(runs["model.norm"]):
            continue
        frame = effect_frame(runs)
        frame = frame[frame["metric"].eq("test_acc") & frame["comparison"].eq("batch - none")]
        cells = [c for c in frame.columns if c.startswith(("model.", "optim.", "train."))]
        console.print("paired BN - no-BN, test accuracy (points), per configuration:")
        for _, r in frame.iterrows():
            where = cell_label(cells, tuple(r[c] for c in cells)) if cells else "all runs"
            effect = fmt_diff(r["mean"], r["lo"], r["hi"])
            console.print(f"  {where}: {effect}, n={r['n']}", markup=False, highlight=False)
        if frame["n"].max() < 2:
            console.print(ONE_SEED, markup=False, highlight=False, soft_wrap=True)
