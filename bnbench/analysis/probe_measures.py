"""The measures read from the probes a run writes (probes.csv, bnbench.train.probes):
internal covariate shift, the activation-input percentiles and the gradient-norm ratio across
depth. Same signature as bnbench.analysis.measures, where they are registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bnbench.analysis.pairing import (
    arms_cell,
    best_setting,
    in_arm,
    pair,
    paired_at_best,
    split_by,
)
from bnbench.analysis.words import key_text
from bnbench.store.files import PROBES_FILE, run_path


def probe_mean(
    runs,
    sweep,
    treatment,
    control,
    probe="ics_cos",
    transform="identity",
    skip_first=True,
    from_step=0,
    over=(),
    by=(),
    select="val_acc",
) -> pd.DataFrame:
    """A probe's value averaged over its layers and probe steps, per run (`one_minus` turns a
    cosine into a distance), each arm at its best `over` setting, one cell per value of the
    `by` keys; the first layer is left out where it is 0 by construction, and the probe
    points before `from_step` (1: the probe at initialization) are left out."""
    probes = read_run_csvs(sweep, runs, PROBES_FILE)
    rows = probes[probes["probe"].eq(probe) & probes["step"].ge(from_step)]
    if skip_first and len(rows):
        first = rows.groupby("run_id")["layer"].transform("first")
        rows = rows[rows["layer"] != first]
    values = pd.to_numeric(rows["value"], errors="coerce")
    values = 1 - values if transform == "one_minus" else values
    per_run = values.groupby(rows["run_id"]).mean().reindex(runs["run_id"])
    per_run.index = runs.index
    label = f"{'1 - ' if transform == 'one_minus' else ''}{probe}, mean over layers and steps"
    parts = [
        paired_at_best(group, per_run, treatment, control, list(over), select, cell or label)
        for cell, group in split_by(runs, list(by))
    ]
    return pd.concat(parts, ignore_index=True)


def gradient_ratio_growth(
    runs,
    sweep,
    treatment,
    control,
    depth="model.depth",
    signed=False,
    steps="all",
    over=(),
    pool=(),
    select="val_acc",
) -> pd.DataFrame:
    """How far the log10 ratio of the first to the last layer's gradient norm moves from its
    value at the shallowest depth to its value at the deepest, in decades, averaged over the
    probe steps (`steps`: all, initialization included, or `init` alone), per seed. Vanishing
    gradients push the ratio down with depth, exploding ones up; `signed` keeps the
    direction, otherwise the size of the move is compared. The depth-1 ratio already reflects
    the layers' sizes, so only its change with depth is about depth. With `over`, each depth
    (and pool value) is taken at the arm's best `over` setting there; with `pool`, the move
    is taken within each value of the pool keys (an activation, say) and then averaged, so
    moves in opposite directions cannot cancel."""
    ratio = runs["run_id"].map(gradient_ratios(read_run_csvs(sweep, runs, PROBES_FILE), steps))
    shallow, deep = runs[depth].min(), runs[depth].max()
    arms = {}
    for name, arm in (("treatment", treatment), ("control", control)):
        moves = []
        for _, member in split_by(runs[in_arm(runs, arm)], list(pool)):
            level = {}
            for d in (shallow, deep):
                at_depth = best_setting(member[member[depth].eq(d)], list(over), select)
                level[d] = ratio[at_depth.index].groupby(at_depth["seed"]).mean()
            change = level[deep] - level[shallow]
            moves.append(change if signed else change.abs())
        arms[name] = pd.concat(moves, axis=1).mean(axis=1, skipna=False)
    kind = "change" if signed else "absolute change"
    when = "at initialization" if steps == "init" else "over training"
    pooled_over = f", mean over {', '.join(key_text(k) for k in pool)}" if pool else ""
    cell = f"{kind} of log10 first/last gradient norm, depth {shallow} to {deep}, {when}"
    cell = arms_cell(cell + pooled_over, runs, treatment, control)
    return pair(arms["treatment"], arms["control"], cell)


def gradient_ratios(probes: pd.DataFrame, steps: str = "all") -> dict[str, float]:
    """Per run: log10 of the first over the last layer's gradient norm, mean over probe steps."""
    grads = probes[probes["probe"].eq("grad_norm")] if len(probes) else probes
    if steps == "init":
        grads = grads[grads["step"].eq(0)]
    ratios = {}
    for run_id, rows in grads.groupby("run_id"):
        # the first and last layer's rows as written (agg "first" would skip a NaN gradient)
        per_step = rows.groupby("step")["value"].agg(
            first=lambda v: v.iloc[0], last=lambda v: v.iloc[-1]
        )
        ratio = np.log10(per_step["first"] / per_step["last"])
        # A gradient that underflowed to 0 gives +-inf: censored at float32's range, so one
        # such step counts as an extreme, not as an infinite mean (0/0 stays NaN: no ratio)
        ratios[run_id] = ratio.clip(-FLOAT32_DECADES, FLOAT32_DECADES).mean()
    return ratios


FLOAT32_DECADES = 38.0  # float32 holds about 1e-38 ... 1e38


def percentile_drift(runs, sweep, treatment, control, over=(), select="val_acc") -> pd.DataFrame:
    """Ioffe & Szegedy's picture of internal covariate shift (their Fig. 1): how far the
    15th, 50th and 85th percentiles of each activation's input move from their values at the
    first probe, in units of that input's first 15-85 spread, averaged over percentiles,
    later probe points and layers, per run; each arm at its best `over` setting."""
    probes = read_run_csvs(sweep, runs, PROBES_FILE)
    rows = probes[probes["probe"].isin(PERCENTILE_PROBES)] if len(probes) else probes
    drift = {}
    for run_id, run_rows in rows.groupby("run_id"):
        table = run_rows.pivot_table(index=["layer", "step"], columns="probe", values="value")
        per_layer = []
        for _, layer in table.groupby(level="layer"):
            first = layer.iloc[0]
            spread = first["act_p85"] - first["act_p15"]
            moved = (layer.iloc[1:] - first).abs().mean(axis=1) / spread
            per_layer.append(moved.mean())
        drift[run_id] = float(np.mean(per_layer)) if per_layer else np.nan
    values = runs["run_id"].map(drift)
    cell = "drift of activation-input percentiles, in initial 15-85 spreads"
    return paired_at_best(runs, values, treatment, control, list(over), select, cell)


PERCENTILE_PROBES = ("act_p15", "act_p50", "act_p85")


def read_run_csvs(sweep: Path, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """One CSV per run (evals.csv, probes.csv), stacked with its run_id."""
    frames = []
    for run_id in runs["run_id"]:
        path = run_path(sweep, run_id) / name
        if path.exists():
            frames.append(pd.read_csv(path).assign(run_id=run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id"])
