"""A claim's verdict from its sweep: the primary measure judged against its delta, the
secondary cells Holm-adjusted among themselves, or `incomplete` when planned runs are missing.

The runs a verdict reads are the sweep's planned ones, from the plan file `bnbench run`
writes beside them (bnbench.store.planfile), so judging a sweep copied from elsewhere needs
only its run files and plan: no Hydra, no torch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bnbench.analysis.measures import MEASURES
from bnbench.analysis.pairing import in_arm
from bnbench.analysis.stats import ALPHA, judge_paired, within_delta
from bnbench.analysis.stats import holm as holm_adjust
from bnbench.analysis.tables import load_runs
from bnbench.claims.display import describe, is_preview, kind_text
from bnbench.claims.preregistration import (
    CONFIRMATORY,
    EXPLORATORY,
    Kind,
    locked_claims,
    verdict_kind,
)
from bnbench.claims.registry import Claim, ClaimFileError, Measure, claims_of, get_claim
from bnbench.store.planfile import read_plan
from bnbench.store.reader import SkippedRunWarning


@dataclass
class Verdict:
    claim: Claim
    status: str  # supported | contradicted | no effect | inconclusive | incomplete
    sentence: str  # the outcome in words, with the primary effect, CI, n, p and delta
    primary: dict  # judge_paired's result for the primary measure, plus its cell label
    secondary: pd.DataFrame  # one row per secondary cell: cell, unit, mean, lo, hi, n, p, p_holm
    n_planned: int
    n_done: int
    profile: str
    kind: Kind = field(default_factory=lambda: Kind(EXPLORATORY, ("the sweep is incomplete",)))
    seeds: list[int] = field(default_factory=list)  # the seeds of the runs judged


def verdict(claim: Claim | str, results_root: str | Path) -> Verdict:
    """The claim's verdict (a Claim, or the name of one in conf/claims.yaml) from its sweep
    under results_root; the sweep's plan file says which runs it needs."""
    claim = get_claim(claim) if isinstance(claim, str) else claim
    name = claim.name
    sweep = Path(results_root) / claim.experiment
    plan = read_plan(sweep)
    if plan is None:
        sentence = (
            f"no sweep: {sweep} has no plan file; run "
            f"`{claims_run_command(claim, 'quick', results_root)}` to make it (or "
            "--profile confirmatory for the pre-registered seeds)."
        )
        return Verdict(claim, "incomplete", sentence, {}, pd.DataFrame(), 0, 0, "?")
    planned = claim_run_ids(plan, name)
    done = [r for r in plan.finished(sweep) if r in set(planned)]
    if len(done) < len(planned):
        again = (
            claims_run_command(claim, plan.profile, results_root)
            if plan.profile
            else f"bnbench run -m {' '.join(plan.overrides)}"
        )
        sentence = (
            f"incomplete: {len(done)} of {len(planned)} planned runs are finished in "
            f"{sweep}; run `{again}` to finish it (finished runs are kept)."
        )
        status = "incomplete"
        return Verdict(
            claim, status, sentence, {}, pd.DataFrame(), len(planned), len(done), plan.profile
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRunWarning)  # only the planned runs matter here
        runs = load_runs(sweep)
    runs = runs[runs["run_id"].isin(set(planned))].reset_index(drop=True)
    missing = missing_arms(claim.primary, runs)
    if missing:
        # e.g. `bnbench run -m experiment=X` alone: the claim's extra cells were never planned
        again = claims_run_command(claim, plan.profile or "full", results_root)
        sentence = (
            f"incomplete: {sweep}'s plan has no runs of the primary measure's "
            f"{' and '.join(missing)} arm{'s' if len(missing) > 1 else ''}; run `{again}`, "
            "which plans the claim's whole sweep (the runs it already has are kept)."
        )
        n = len(planned)
        return Verdict(claim, "incomplete", sentence, {}, pd.DataFrame(), n, n, plan.profile)
    try:
        primary = judge_measure(claim.primary, runs, sweep)
    except KeyError as error:  # e.g. runs recorded under an older protocol, without a probe
        sentence = (
            f"incomplete: {sweep}'s runs do not hold what the primary measure reads "
            f"({error}); they were recorded under another protocol: run "
            f"`{claims_run_command(claim, plan.profile or 'quick', results_root)}`."
        )
        n = len(planned)
        return Verdict(claim, "incomplete", sentence, {}, pd.DataFrame(), n, n, plan.profile)
    secondary = secondary_table(claim.secondary, runs, sweep)
    lock, planned_protocol = locked_claims().get(name), plan.protocols.get(name)
    kind = verdict_kind(claim, lock, planned_protocol, runs, plan.profile)
    seeds = sorted(int(s) for s in runs["seed"].unique())
    said = [describe(claim, primary)]
    if is_preview(primary):
        # the profile named like the kind it gives
        said.append(f"To decide: `{claims_run_command(claim, CONFIRMATORY, None)}`.")
    said += [f"Declared reading: {text}." for text in readings_met(claim, primary, secondary)]
    sentence = " ".join([*said, kind_text(kind, seeds)])
    n, status = len(planned), primary["outcome"]
    return Verdict(claim, status, sentence, primary, secondary, n, n, plan.profile, kind, seeds)


def claim_run_ids(plan, name: str) -> list[str]:
    """The runs a claim is judged on: its own plan's, as `claims run` recorded them (the
    sweep's plan.json lists every launch into it: an earlier protocol's runs, or the runs of
    another claim sharing the sweep); the whole plan for a sweep planned without claims."""
    own = plan.protocols.get(name)
    ids = own.get("run_ids") if isinstance(own, dict) else None
    if isinstance(ids, list) and ids and all(isinstance(r, str) for r in ids):
        return ids
    return list(plan.run_ids)


def claims_run_command(claim: Claim, profile: str, results_root: str | Path | None) -> str:
    """The command that plans and trains the claim's sweep whole: with every claim that
    shares it (claims 4 and 10), so none of their extra cells drops out of its plan.
    `results_root` None: the profile's own results directory."""
    names = [c.name for c in claims_of(claim.experiment)]
    names = names if claim.name in names else [claim.name]  # a claim not in the claims files
    where = "" if results_root is None else f" results_dir={results_root}"
    return f"bnbench claims run {' '.join(names)} --profile {profile}{where}"


def missing_arms(measure: Measure, runs: pd.DataFrame) -> list[str]:
    """The measure's arms ("treatment", "control") that no run belongs to."""
    arms = {"treatment": measure.treatment, "control": measure.control}
    return [name for name, arm in arms.items() if runs.empty or not in_arm(runs, arm).any()]


def differences(measure: Measure, runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    """The measure's paired differences: DataFrame[cell, seed, diff]."""
    function = MEASURES[measure.measure]
    return function(runs, sweep, measure.treatment, measure.control, **measure.args)


def judge_measure(measure: Measure, runs: pd.DataFrame, sweep: Path) -> dict:
    """The primary measure (one cell) judged against its delta."""
    diffs = differences(measure, runs, sweep)
    cells = diffs["cell"].unique()
    if len(cells) != 1:
        raise ClaimFileError(
            f"a primary measure must give one cell; {measure.measure} gave {len(cells)}"
        )
    result = judge_paired(diffs["diff"], measure.direction, measure.delta, measure.ci)
    about = {"cell": cells[0], "unit": measure.unit, "label": measure.label}
    return result | about | {"direction": measure.direction}


def secondary_table(measures, runs: pd.DataFrame, sweep: Path) -> pd.DataFrame:
    """Every secondary cell: mean, 95% CI, n, exact p, Holm-adjusted p among them all."""
    rows = []
    for index, measure in enumerate(measures):
        try:
            diffs = differences(measure, runs, sweep)
        except KeyError:  # what it reads is not in these runs (an older protocol): no cells
            continue
        several = diffs["cell"].nunique() > 1
        for cell, group in diffs.groupby("cell", sort=False):
            result = judge_paired(group["diff"], measure.direction, measure.delta, measure.ci)
            name = cell if several else measure.label  # a one-cell measure: its label says it
            about = {"name": name, "label": measure.label, "cell": cell, "unit": measure.unit}
            about["secondary"] = index  # which of the claim's secondary measures
            rows.append(about | {"direction": measure.direction} | result)
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = holm_adjust(table["p"])
        table["outcome_holm"] = [holm_outcome(row) for row in table.itertuples()]
    return table


def readings_met(claim: Claim, primary: dict, secondary: pd.DataFrame) -> list[str]:
    """The texts of the claim's declared readings that its secondaries call for."""
    met = []
    for reading in claim.readings:
        cells = secondary[secondary["secondary"] == reading.secondary] if len(secondary) else None
        if cells is not None and len(cells) and reading_met(reading.kind, primary, cells):
            met.append(reading.text)
    return met


def reading_met(kind: str, primary: dict, cells: pd.DataFrame) -> bool:
    if kind == "split":  # every cell decided, and not all the same way
        decided = (cells["p_holm"] < ALPHA).all()
        return bool(decided and (cells["mean"] > 0).any() and (cells["mean"] < 0).any())
    if kind == "explained":  # decided, and the control arm closes the gap
        decided = primary["outcome"] in ("supported", "contradicted")
        return decided and bool((cells["outcome_holm"] == "no effect").all())
    confirmed = (cells["outcome_holm"] == "supported").all()  # kind == "unconfirmed"
    return primary["outcome"] == "supported" and not confirmed


def holm_outcome(row) -> str:
    """A secondary cell's outcome with its Holm-adjusted p in place of its own."""
    sign = 1 if row.direction == "higher" else -1
    if row.p_holm < ALPHA:
        return "supported" if sign * row.mean > 0 else "contradicted"
    equivalent = within_delta(row.n, row.lo90, row.hi90, row.delta)
    return "no effect" if equivalent else "inconclusive"
