"""What `bnbench run` shows about its plan: each run's resolved config (--cfg job), the table
of runs with their status and results, the runs of other settings already in the sweep
directory, and where to look next."""

from __future__ import annotations

import contextlib
import json

from rich.table import Table

from bnbench.identity import settings
from bnbench.plan import PlannedRun
from bnbench.run_claim import claimed_elsewhere
from bnbench.store import read_summary, run_dir
from bnbench.terminal import console, err_console, fail


def print_configs(plan: list[PlannedRun], which: str) -> None:
    """`--cfg job`: each planned run's resolved config as YAML, headed by its run id."""
    from omegaconf import OmegaConf

    if which != "job":
        fail(f"invalid --cfg={which!r}: allowed: job (bnbench composes no other part)")
    for p in plan:
        text = OmegaConf.to_yaml(OmegaConf.structured(p.config))
        console.print(f"# run {p.run_id}\n{text}", markup=False, highlight=False)


def warn_other_settings(plan: list[PlannedRun]) -> None:
    """Say, before training, when the sweep directory already holds runs whose settings differ
    from the plan's fixed ones: the report will show them apart, not pooled."""
    from bnbench.identity import NOT_IDENTITY
    from bnbench.run_reader import CorruptRun, read_config
    from bnbench.store import RUNS_DIR, sweep_dir

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
    from bnbench.store import sweep_dir

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
    """A run without a summary: new, running elsewhere (another process holds its claim),
    or unfinished (its process was killed; the next call trains it)."""
    directory = run_dir(p.config)
    if claimed_elsewhere(directory):
        return "running elsewhere"
    return "unfinished" if directory.exists() else "new"


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
