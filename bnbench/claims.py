"""The claims on trial: the registry in conf/claims.yaml, what each one measures, the verdict.

Every claim reduces to paired differences `treatment - control`, one per seed and cell of
its sweep (the same seed means the same data order and starting weights). Per cell: the
mean difference with its 95% CI and p (bnbench.stats), Holm-adjusted across the claim's
cells. A cell supports the claim when the adjusted p < 0.05 and the mean has the claimed
sign, contradicts it when the sign is the other; otherwise it is inconclusive. The claim
is supported when some cells support it and none contradict it, contradicted in the mirror
case, else inconclusive. A sweep with runs missing gets no verdict: `incomplete`.

Reads files only (runs via bnbench.aggregate, probes.csv), never imports torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bnbench.aggregate import SkippedRunWarning, identity_columns, load_runs, varying_columns
from bnbench.plan import CONF_DIR, expand
from bnbench.stats import holm, mean_difference, scored
from bnbench.store import METRICS_FILE, PROBES_FILE, run_path

CLAIMS_FILE = Path(CONF_DIR) / "claims.yaml"
ALPHA = 0.05
# "Still trains": not diverged and final val accuracy at least halfway from chance to the
# best accuracy any run of the sweep reached (so the bar moves with the profile's budget).
TRAINS_FRACTION = 0.5


class UnknownClaim(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Claim:
    name: str
    number: int
    text: str
    source: str
    experiment: str
    metric: str
    direction: str  # "higher" or "lower": the sign the claim predicts for treatment - control
    test: str
    anchor: str


def load_claims() -> dict[str, Claim]:
    entries = yaml.safe_load(CLAIMS_FILE.read_text())
    claims = {name: Claim(name=name, **fields) for name, fields in entries.items()}
    return dict(sorted(claims.items(), key=lambda item: item[1].number))


def get_claim(name: str) -> Claim:
    claims = load_claims()
    if name not in claims:
        raise UnknownClaim(f"unknown claim {name!r}; known: {', '.join(claims)}")
    return claims[name]


# --- pairing -------------------------------------------------------------------------------


def paired(
    runs: pd.DataFrame, values: pd.Series, factor: str, treatment, control, keys=None
) -> pd.DataFrame:
    """treatment - control of `values` for runs equal in `keys` (default: every other key,
    seed included). `control=None` matches a null setting (e.g. no ghost batch)."""
    keys = keys or [c for c in identity_columns(runs) if c != factor]
    frame = runs[keys].assign(value=values.to_numpy())
    is_control = runs[factor].isna() if control is None else runs[factor].eq(control)
    pairs = frame[runs[factor].eq(treatment)].merge(
        frame[is_control], on=keys, suffixes=("_t", "_c")
    )
    return pairs.assign(diff=pairs["value_t"] - pairs["value_c"])


def cells_by(pairs: pd.DataFrame, keys: list[str], prefix: str = "") -> pd.DataFrame:
    """Label each pair with its cell: the values of `keys` as text."""
    label = (
        pairs[keys]
        .astype(str)
        .apply(lambda row: ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row.items()), axis=1)
    )
    return pairs.assign(cell=(prefix + label) if keys else prefix.rstrip(", ") or "all")


def factor_effect(runs, values, factor, treatment, control, prefix="") -> pd.DataFrame:
    """Pairs on one factor, cells by the other swept factors."""
    others = [c for c in varying_columns(runs) if c != factor]
    pairs = paired(runs, values, factor, treatment, control).sort_values([*others, "seed"])
    return cells_by(pairs, others, prefix)


def points(series: pd.Series) -> pd.Series:
    return 100 * series  # accuracy differences read in percentage points


# --- what each claim measures: a table of (cell, seed, diff) ---------------------------------


def faster_convergence(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    """Mean train loss over epochs (area under the curve); a diverged run at chance loss."""
    curves = read_run_csvs(sweep, runs, METRICS_FILE)
    auc = curves.groupby("run_id")["train_loss"].mean().reindex(runs["run_id"]).to_numpy()
    chance_loss = -np.log(runs["chance_acc"].to_numpy())
    auc = pd.Series(np.where(runs["status"].eq("diverged"), chance_loss, auc), index=runs.index)
    shared = factor_effect(runs, auc, "model.norm", "batch", "none", "shared ")
    best = best_lr_runs(runs)
    at_best = paired_on_seed(best, auc[best.index], "model.norm", "batch", "none")
    label = ", ".join(
        f"{n} lr={lr:g}" for n, lr in best.groupby("model.norm")["optim.lr"].first().items()
    )
    return pd.concat([shared, at_best.assign(cell=f"each arm's best LR ({label})")])


def best_lr_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Each norm's runs at its LR with the best mean val accuracy (chosen on val, not test)."""
    val = runs.assign(score=scored(runs, "val_acc"))
    best_lr = val.groupby(["model.norm", "optim.lr"])["score"].mean().groupby("model.norm").idxmax()
    chosen = list(best_lr.to_numpy())  # (norm, lr) pairs
    mask = pd.Series(list(zip(runs["model.norm"], runs["optim.lr"], strict=True)), index=runs.index)
    return runs[mask.isin(chosen)]


def paired_on_seed(runs, values, factor, treatment, control) -> pd.DataFrame:
    """Pairs matched by seed alone (the arms may differ in other settings, e.g. their LR)."""
    return paired(runs, values, factor, treatment, control, keys=["seed"])


def higher_lr(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    """Per arm and seed: log10 of the largest LR that trains; width of the near-best range.
    Per LR: val accuracy BN - no-BN (a diverged run at chance), which stays informative when
    an arm trains at no LR at all and the largest-LR difference hits the grid's floor."""
    val = scored(runs, "val_acc")
    chance = runs["chance_acc"]
    trains = runs["status"].eq("completed") & (
        val >= chance + TRAINS_FRACTION * (val.max() - chance)
    )
    log_lr = np.log10(runs["optim.lr"])
    floor = log_lr.min() - 1  # an arm that trains at no LR sits a decade below the grid
    rows = []
    for (norm, seed), group in runs.groupby(["model.norm", "seed"]):
        ok = log_lr[group.index][trains[group.index]]
        near = log_lr[group.index][val[group.index] >= val[group.index].max() - 0.01]
        rows.append(
            {
                "model.norm": norm,
                "seed": seed,
                "largest": ok.max() if len(ok) else floor,
                "width": near.max() - near.min(),
            }
        )
    per_arm = pd.DataFrame(rows)
    out = []
    for measure, cell in [
        ("largest", "largest LR that trains (decades)"),
        ("width", "LR range within 1 point of best (decades)"),
    ]:
        wide = per_arm.pivot(index="seed", columns="model.norm", values=measure)
        out.append(
            pd.DataFrame({"seed": wide.index, "diff": wide["batch"] - wide["none"], "cell": cell})
        )
    out.append(factor_effect(runs, points(val), "model.norm", "batch", "none", "val acc, "))
    return pd.concat(out, ignore_index=True)


def init_robustness(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    """Spread (max - min) of final val accuracy across the inits (Gaussian scales, kaiming,
    xavier), per arm and seed."""
    spread = points(scored(runs, "val_acc")).groupby([runs["model.norm"], runs["seed"]])
    wide = (spread.max() - spread.min()).unstack("model.norm")
    return pd.DataFrame(
        {
            "seed": wide.index,
            "diff": wide["batch"] - wide["none"],
            "cell": "spread of val acc across the inits (points)",
        }
    )


def regularization(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    test = points(scored(runs, "test_acc"))
    per_rate = factor_effect(runs, test, "model.norm", "batch", "none", "test acc, ")
    val = runs.assign(score=scored(runs, "val_acc"))
    plain = val[val["model.norm"].eq("none")]
    best_rate = plain.groupby("model.dropout")["score"].mean().idxmax()
    arms = runs[
        (runs["model.norm"].eq("batch") & runs["model.dropout"].eq(0))
        | (runs["model.norm"].eq("none") & runs["model.dropout"].eq(best_rate))
    ]
    versus = paired_on_seed(arms, test[arms.index], "model.norm", "batch", "none")
    cell = f"test acc, BN without dropout vs no-BN at its best dropout ({best_rate:g})"
    # Generalization as test - train accuracy (higher = smaller gap), without dropout, where
    # both arms train; with heavy dropout a no-BN net at chance has no gap to speak of.
    gap = test - points(scored(runs, "train_acc"))
    undropped = runs[runs["model.dropout"].eq(0)]
    generalization = factor_effect(undropped, gap[undropped.index], "model.norm", "batch", "none")
    generalization = generalization.assign(cell="test - train acc, no dropout")
    parts = [per_rate, versus.assign(cell=cell), generalization]
    return pd.concat(parts, ignore_index=True)


def covariate_shift(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    """1 - cos(G, G') averaged over layers (the first, always 0, left out) and probe steps."""
    probes = read_run_csvs(sweep, runs, PROBES_FILE)
    ics = probes[probes["probe"].eq("ics_cos")]
    first = ics.groupby("run_id")["layer"].transform("first")
    shift = (1 - ics[ics["layer"] != first].groupby("run_id")["value"].mean()).reindex(
        runs["run_id"]
    )
    pairs = paired(
        runs, pd.Series(shift.to_numpy(), index=runs.index), "model.norm", "batch", "none"
    )
    return pairs.assign(cell="ICS, 1 - cos(G, G'), batch - none")


def gradient_flow(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    return factor_effect(runs, points(scored(runs, "val_acc")), "model.norm", "batch", "none")


def small_batch(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    """(A) BN's change in val accuracy from batch 128 to batch b, minus group norm's (the
    difference in differences, paired by seed); (B) ghost batch g - the whole batch of 128."""
    val = points(scored(runs, "val_acc"))
    whole = runs["model.ghost_batch_size"].isna()
    change = {}  # norm -> per-seed val acc change from batch 128 to each smaller batch
    for norm in ("batch", "group"):
        arm = runs[whole & runs["model.norm"].eq(norm)]
        wide = val[arm.index].groupby([arm["seed"], arm["train.batch_size"]]).mean()
        wide = wide.unstack("train.batch_size")
        change[norm] = wide.sub(wide[128], axis=0).drop(columns=128)
    did = (change["batch"] - change["group"]).dropna(how="all")
    parts = [
        pd.DataFrame({"seed": did.index, "diff": did[b].to_numpy()}).assign(
            cell=f"batch {b} vs 128 (LR scaled), BN's change - group norm's"
        )
        for b in did.columns
    ]
    for g in sorted(runs["model.ghost_batch_size"].dropna().unique()):
        pairs = paired(runs, val, "model.ghost_batch_size", g, None)
        parts.append(pairs.assign(cell=f"ghost batch {int(g)} vs whole batch of 128"))
    return pd.concat(parts, ignore_index=True)


def test_time_stats(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    probes = read_run_csvs(sweep, runs, PROBES_FILE)
    acc = probes[probes["probe"].eq("test_time_acc")].pivot(
        index="run_id", columns="layer", values="value"
    )
    batch_columns = [c for c in acc.columns if c.startswith("batch_")]
    seeds = runs.set_index("run_id")["seed"]
    parts = [
        pd.DataFrame(
            {
                "seed": seeds[acc.index].to_numpy(),
                "diff": points(acc[c] - acc["running"]).to_numpy(),
                "cell": f"{c.removeprefix('batch_')} vs running stats",
            }
        )
        for c in sorted(batch_columns, key=_batch_order)
    ]
    return pd.concat(parts, ignore_index=True)


def _batch_order(column: str) -> tuple:
    size, _, order = column.removeprefix("batch_b").partition("_")
    return (order, int(size))


def placement(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    val = points(scored(runs, "val_acc"))
    return factor_effect(runs, val, "model.placement", "post", "pre", "post - pre, ")


def dropout_interplay(runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    test = points(scored(runs, "test_acc"))
    rates = sorted(r for r in runs["model.dropout"].unique() if r > 0)
    parts = [
        factor_effect(runs, test, "model.dropout", rate, 0.0, f"dropout {rate:g}, ")
        for rate in rates
    ]
    return pd.concat(parts, ignore_index=True)


MEASURES: dict[str, Callable[[pd.DataFrame, Path], pd.DataFrame]] = {
    "faster-convergence": faster_convergence,
    "higher-lr": higher_lr,
    "init-robustness": init_robustness,
    "regularization": regularization,
    "covariate-shift": covariate_shift,
    "gradient-flow": gradient_flow,
    "small-batch": small_batch,
    "test-time-stats": test_time_stats,
    "placement": placement,
    "dropout-interplay": dropout_interplay,
}


def read_run_csvs(sweep: Path, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """One CSV per run (metrics.csv, probes.csv), stacked with its run_id."""
    frames = []
    for run_id in runs["run_id"]:
        path = run_path(sweep, run_id) / name
        if path.exists():
            frames.append(pd.read_csv(path).assign(run_id=run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id"])


# --- the verdict ---------------------------------------------------------------------------


@dataclass
class Verdict:
    claim: Claim
    status: str  # supported | contradicted | inconclusive | incomplete
    sentence: str
    cells: pd.DataFrame  # cell, mean, lo, hi, n, p, p_holm, method, verdict
    n_planned: int
    n_done: int
    profile: str


def judge(pairs: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Per cell: mean difference, 95% CI, n, p, Holm-adjusted p and the cell's verdict."""
    rows = [
        {"cell": cell, **mean_difference(group["diff"])}
        for cell, group in pairs.groupby("cell", sort=False)
    ]
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"])
    sign = 1 if direction == "higher" else -1
    significant = table["p_holm"] < ALPHA
    table["verdict"] = np.select(
        [significant & (sign * table["mean"] > 0), significant & (sign * table["mean"] < 0)],
        ["supported", "contradicted"],
        "inconclusive",
    )
    return table


def overall(cells: pd.DataFrame) -> str:
    support, contra = (
        (cells["verdict"] == "supported").sum(),
        (cells["verdict"] == "contradicted").sum(),
    )
    if support and not contra:
        return "supported"
    if contra and not support:
        return "contradicted"
    return "inconclusive"


def launch_overrides(sweep: Path) -> tuple[str | None, tuple[str, ...]]:
    """(profile, other overrides) the sweep was last launched with, from the multirun.yaml
    Hydra writes into it, so that a verdict plans exactly the runs the sweep made; where it
    ran is left out (the results may have moved). (None, ()) when there is no such file."""
    path = sweep / "multirun.yaml"
    if not path.exists():
        return None, ()
    task = (yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("overrides", {})
    task = task.get("task") or []
    profile = next((o.split("=", 1)[1] for o in task if o.startswith("profile=")), None)
    where = ("profile=", "experiment=", "results_dir=", "sweep=", "hydra")
    return profile, tuple(o for o in task if not o.startswith(where))


def verdict(
    name: str,
    results_root: str | Path,
    profile: str | None = None,
    overrides: tuple[str, ...] | None = None,
) -> Verdict:
    """The claim's verdict from its sweep under results_root, as planned by the profile plus
    the overrides the sweep was run with. Both default to what the sweep's multirun.yaml
    records; without one, the profile is `quick` under a directory named quick, else `full`."""
    claim = get_claim(name)
    launched_profile, launched = launch_overrides(Path(results_root) / claim.experiment)
    if profile is None:
        quick = Path(results_root).name == "quick"
        profile = launched_profile or ("quick" if quick else "full")
    overrides = launched if overrides is None else overrides
    plan = expand(
        [
            f"experiment={claim.experiment}",
            f"profile={profile}",
            f"results_dir={results_root}",
            *overrides,
        ],
        multirun=True,
    )
    done = [p for p in plan if p.done]
    if len(done) < len(plan):
        sentence = (
            f"incomplete: {len(done)} of {len(plan)} runs of the {profile} sweep are finished "
            f"in {Path(results_root) / plan[0].config.sweep}; run `make claim-{name} "
            f"PROFILE={profile}` to finish it (finished runs are kept)."
        )
        return Verdict(claim, "incomplete", sentence, pd.DataFrame(), len(plan), len(done), profile)
    sweep = Path(results_root) / plan[0].config.sweep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRunWarning)  # only the planned runs matter here
        runs = load_runs(sweep)
    runs = runs[runs["run_id"].isin({p.run_id for p in plan})].reset_index(drop=True)
    cells = judge(MEASURES[name](runs, sweep), claim.direction)
    status = overall(cells)
    sentence = describe(claim, status, cells)
    return Verdict(claim, status, sentence, cells, len(plan), len(done), profile)


def describe(claim: Claim, status: str, cells: pd.DataFrame) -> str:
    """One sentence: what was measured, the strongest cell, and how the cells fell."""
    strongest = cells.loc[cells["p_holm"].fillna(1).idxmin()]
    counts = cells["verdict"].value_counts()
    tally = ", ".join(
        f"{counts.get(v, 0)} {v}" for v in ("supported", "contradicted", "inconclusive")
    )
    return (
        f"{status.upper()}: measured {claim.metric} (claimed: {claim.direction}); "
        f"strongest cell '{strongest['cell']}': {_fmt(strongest['mean'])} "
        f"[{_fmt(strongest['lo'])}, {_fmt(strongest['hi'])}], n={int(strongest['n'])}, "
        f"Holm p={strongest['p_holm']:.3g}; cells: {tally}."
    )


def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:+.3g}"
