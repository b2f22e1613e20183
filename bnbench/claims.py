"""The claims on trial: the registry in conf/claims.yaml, and each claim's verdict.

A claim is data: its sentence and source, the sweep that tests it, and one pre-registered
*primary* measure (bnbench.measures, with its arms, arguments, direction, `delta` and CI
method) that decides the verdict; *secondary* measures are reported beside it, Holm-adjusted
among themselves, and never change it. The rule (bnbench.stats.judge_paired) gives one of
supported | contradicted | no effect | inconclusive; a sweep with planned runs missing gets
`incomplete` instead.

The runs a verdict reads are the sweep's planned ones, from the plan file `bnbench run`
writes beside them (bnbench.planfile), so judging a sweep copied from elsewhere needs only
its run files and plan: no Hydra, no torch.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from bnbench.aggregate import load_runs
from bnbench.measures import MEASURES
from bnbench.pairing import in_arm
from bnbench.paths import CLAIMS_FILE, claims_files  # noqa: F401 (CLAIMS_FILE re-exported)
from bnbench.planfile import read_plan
from bnbench.run_reader import SkippedRunWarning
from bnbench.stats import ALPHA, judge_paired, within_delta
from bnbench.stats import holm as holm_adjust
from bnbench.verdicts import describe

DIRECTIONS = ("higher", "lower")
CI_METHODS = ("t", "bca")


class UnknownClaim(KeyError):
    def __str__(self) -> str:
        return self.args[0]


class ClaimFileError(ValueError):
    """conf/claims.yaml (or a user's claims file) does not say what a claim must say."""


@dataclass(frozen=True)
class Measure:
    """One measure of a claim, as declared: what is compared and how it is judged."""

    measure: str  # a name in bnbench.measures.MEASURES
    treatment: dict
    control: dict
    label: str  # what it measures, in words
    unit: str  # the unit of a difference: "points", "decades", "log2 steps", ...
    direction: str  # higher | lower: the sign the claim predicts for treatment - control
    delta: float  # smallest effect of interest, in `unit`
    args: dict = field(default_factory=dict)
    ci: str = "t"  # t | bca


@dataclass(frozen=True)
class Claim:
    name: str
    number: int
    text: str
    source: str
    experiment: str
    anchor: str
    why: str  # why the primary measure is the sentence, and why its delta
    primary: Measure
    secondary: tuple[Measure, ...] = ()
    # Further experiment files whose runs join the sweep: cells outside its main grid (one
    # arm at one LR, say), which a cartesian Hydra sweep cannot hold. Secondary cells only:
    # the quick profile leaves them out.
    extra_cells: tuple[str, ...] = ()


def load_claims(path: Path | None = None) -> dict[str, Claim]:
    """The claims of one file, or (no path) of the shipped conf/claims.yaml and each
    --config-dir's claims.yaml; a user claim named like one already loaded is refused."""
    if path is not None:
        return _read_claims(path)
    claims: dict[str, Claim] = {}
    for origin, file_claims in claim_files().items():
        for name in file_claims:
            if name in claims:
                raise ClaimFileError(
                    f"{origin}: claim {name!r} is already defined in {claim_origins()[name]}; "
                    "rename yours"
                )
        claims.update(file_claims)
    return dict(sorted(claims.items(), key=lambda item: item[1].number))


def claim_files() -> dict[Path, dict[str, Claim]]:
    """Each claims file searched (shipped first, then the user's), with its claims."""
    return {path: _read_claims(path) for path in claims_files()}


def claim_origins() -> dict[str, Path]:
    """Where each claim is defined: the first file that names it."""
    origins: dict[str, Path] = {}
    for path in claims_files():
        for name in _read_claims(path):
            origins.setdefault(name, path)
    return origins


def _read_claims(path: Path) -> dict[str, Claim]:
    try:
        entries = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ClaimFileError(f"{path}: not valid YAML ({error.__class__.__name__})") from None
    if not isinstance(entries, dict):
        raise ClaimFileError(f"{path}: expected a mapping of claim names to claims")
    claims = {name: parse_claim(name, fields) for name, fields in entries.items()}
    return dict(sorted(claims.items(), key=lambda item: item[1].number))


def parse_claim(name: str, fields: dict) -> Claim:
    """A claim from its YAML entry; ClaimFileError naming the claim and the key otherwise."""
    if not isinstance(fields, dict):
        raise ClaimFileError(f"claim {name!r}: expected a mapping of keys, got {fields!r}")
    required = ("number", "text", "source", "experiment", "anchor", "why", "primary")
    missing = [k for k in required if k not in fields]
    if missing:
        raise ClaimFileError(f"claim {name!r}: missing {', '.join(missing)}")
    secondary = tuple(parse_measure(name, m) for m in fields.get("secondary") or [])
    extra_cells = fields.get("extra_cells") or []
    if not isinstance(extra_cells, list) or not all(isinstance(e, str) for e in extra_cells):
        raise ClaimFileError(f"claim {name!r}: extra_cells must be a list of experiment names")
    known = {*required, "secondary", "extra_cells"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ClaimFileError(f"claim {name!r}: unknown key(s) {', '.join(unknown)}")
    base = {k: fields[k] for k in required if k != "primary"}
    return Claim(
        name=name,
        **base,
        primary=parse_measure(name, fields["primary"]),
        secondary=secondary,
        extra_cells=tuple(extra_cells),
    )


def parse_measure(claim: str, fields: dict) -> Measure:
    if not isinstance(fields, dict):
        raise ClaimFileError(f"claim {claim!r}: a measure must be a mapping, got {fields!r}")
    try:
        measure = Measure(**fields)
    except TypeError as error:
        raise ClaimFileError(f"claim {claim!r}: {error}") from None
    for key in ("treatment", "control", "args"):
        if not isinstance(getattr(measure, key), dict):
            raise ClaimFileError(f"claim {claim!r}: {key} must be a mapping")
    if measure.measure not in MEASURES:
        known = ", ".join(MEASURES)
        raise ClaimFileError(
            f"claim {claim!r}: unknown measure {measure.measure!r}; known: {known}"
        )
    if measure.direction not in DIRECTIONS or measure.ci not in CI_METHODS:
        raise ClaimFileError(
            f"claim {claim!r}: direction must be higher|lower and ci t|bca "
            f"(got {measure.direction!r}, {measure.ci!r})"
        )
    delta = measure.delta
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not delta > 0:
        raise ClaimFileError(f"claim {claim!r}: delta must be a number > 0 (got {delta!r})")
    try:  # a typo in args is refused now, not when a sweep is judged
        inspect.signature(MEASURES[measure.measure]).bind(None, None, None, None, **measure.args)
    except TypeError as error:
        raise ClaimFileError(f"claim {claim!r}: args of {measure.measure}: {error}") from None
    return measure


def claims_of(experiment: str) -> list[Claim]:
    """The claims judged on the sweep `experiment` makes; two may share one (claims 4, 10)."""
    return [c for c in load_claims().values() if c.experiment == experiment]


def get_claim(name: str) -> Claim:
    claims = load_claims()
    if name not in claims:
        raise UnknownClaim(f"unknown claim {name!r}; known: {', '.join(claims)}")
    return claims[name]


# --- the verdict ---------------------------------------------------------------------------


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


def verdict(claim: Claim | str, results_root: str | Path) -> Verdict:
    """The claim's verdict (a Claim, or the name of one in conf/claims.yaml) from its sweep
    under results_root; the sweep's plan file says which runs it needs."""
    claim = get_claim(claim) if isinstance(claim, str) else claim
    name = claim.name
    sweep = Path(results_root) / claim.experiment
    plan = read_plan(sweep)
    if plan is None:
        sentence = (
            f"no sweep: {sweep} has no plan file; run `bnbench claims run {name}` "
            f"(or `make claim-{name}`) to make it."
        )
        return Verdict(claim, "incomplete", sentence, {}, pd.DataFrame(), 0, 0, "?")
    done = plan.finished(sweep)
    if len(done) < len(plan.run_ids):
        again = (
            claims_run_command(claim, plan.profile, results_root)
            if plan.profile
            else f"bnbench run -m {' '.join(plan.overrides)}"
        )
        sentence = (
            f"incomplete: {len(done)} of {len(plan.run_ids)} planned runs are finished in "
            f"{sweep}; run `{again}` to finish it (finished runs are kept)."
        )
        status = "incomplete"
        return Verdict(
            claim, status, sentence, {}, pd.DataFrame(), len(plan.run_ids), len(done), plan.profile
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRunWarning)  # only the planned runs matter here
        runs = load_runs(sweep)
    runs = runs[runs["run_id"].isin(set(plan.run_ids))].reset_index(drop=True)
    missing = missing_arms(claim.primary, runs)
    if missing:
        # e.g. `bnbench run -m experiment=X` alone: the claim's extra cells were never planned
        again = claims_run_command(claim, plan.profile or "full", results_root)
        sentence = (
            f"incomplete: {sweep}'s plan has no runs of the primary measure's "
            f"{' and '.join(missing)} arm{'s' if len(missing) > 1 else ''}; run `{again}`, "
            "which plans the claim's whole sweep (the runs it already has are kept)."
        )
        n = len(plan.run_ids)
        return Verdict(claim, "incomplete", sentence, {}, pd.DataFrame(), n, n, plan.profile)
    primary = judge_measure(claim.primary, runs, sweep)
    secondary = secondary_table(claim.secondary, runs, sweep)
    sentence = describe(claim, primary)
    n = len(plan.run_ids)
    return Verdict(claim, primary["outcome"], sentence, primary, secondary, n, n, plan.profile)


def claims_run_command(claim: Claim, profile: str, results_root: str | Path) -> str:
    """The command that plans and trains the claim's sweep whole: with every claim that
    shares it (claims 4 and 10), so none of their extra cells drops out of its plan."""
    names = [c.name for c in claims_of(claim.experiment)]
    names = names if claim.name in names else [claim.name]  # a claim not in the claims files
    return f"bnbench claims run {' '.join(names)} --profile {profile} results_dir={results_root}"


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
    for measure in measures:
        diffs = differences(measure, runs, sweep)
        several = diffs["cell"].nunique() > 1
        for cell, group in diffs.groupby("cell", sort=False):
            result = judge_paired(group["diff"], measure.direction, measure.delta, measure.ci)
            name = cell if several else measure.label  # a one-cell measure: its label says it
            about = {"name": name, "label": measure.label, "cell": cell, "unit": measure.unit}
            rows.append(about | {"direction": measure.direction} | result)
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = holm_adjust(table["p"])
        table["outcome_holm"] = [holm_outcome(row) for row in table.itertuples()]
    return table


def holm_outcome(row) -> str:
    """A secondary cell's outcome with its Holm-adjusted p in place of its own."""
    sign = 1 if row.direction == "higher" else -1
    if row.p_holm < ALPHA:
        return "supported" if sign * row.mean > 0 else "contradicted"
    equivalent = within_delta(row.n, row.lo90, row.hi90, row.delta)
    return "no effect" if equivalent else "inconclusive"
