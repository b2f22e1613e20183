"""How a verdict is shown, defined once for the terminal (`bnbench claims verdict`) and the
reports (bnbench.report): the effect text, the rows of the verdict table, the index row,
and the verdict in words (`describe`)."""

from __future__ import annotations

import math

from bnbench.analysis.formats import fmt_p, quantity, signed_alike
from bnbench.analysis.stats import ALPHA, within_delta
from bnbench.claims.preregistration import Kind, seed_range
from bnbench.claims.registry import Claim

# A verdict's p is the exact sign-flip test's; a sweep's paired-effect table gives another
# test's, so each header names its test.
P_EXACT = "p (exact sign-flip)"
HEADER = [
    "measure",
    "effect [95% CI]",
    "n",
    P_EXACT,
    "p (exact sign-flip, Holm)",
    "delta",
    "outcome",
]


def outcome_text(outcome: str, n: int, lo90: float, hi90: float, delta: float) -> str:
    """The outcome as shown: a significant effect whose 90% CI lies inside +-delta is also
    smaller than any effect of interest (both tests pass), and the word says so."""
    decided = outcome in ("supported", "contradicted")
    return (
        f"{outcome}, within ±delta" if decided and within_delta(n, lo90, hi90, delta) else outcome
    )


def effect_text(mean: float, lo: float, hi: float, unit: str) -> str:
    """'+2.49 [-2.94, +7.92] points': the effect in its own unit, its CI at its decimals."""
    mean, lo, hi = signed_alike(mean, lo, hi)
    return f"{mean} [{lo}, {hi}] {unit}"


def primary_row(result) -> list[str]:
    p = result.primary
    return [
        f"PRIMARY: {p['label']} ({p['cell']})",
        effect_text(p["mean"], p["lo"], p["hi"], p["unit"]),
        str(p["n"]),
        fmt_p(p["p"]),
        "-",
        f"{p['delta']:g}",
        outcome_text(p["outcome"], p["n"], p["lo90"], p["hi90"], p["delta"]),
    ]


def secondary_rows(result) -> list[list[str]]:
    rows = []
    for row in result.secondary.itertuples():
        rows.append(
            [
                row.name,
                effect_text(row.mean, row.lo, row.hi, row.unit),
                str(row.n),
                fmt_p(row.p),
                fmt_p(row.p_holm),
                f"{row.delta:g}",
                outcome_text(row.outcome_holm, row.n, row.lo90, row.hi90, row.delta),
            ]
        )
    return rows


def kind_text(kind: Kind, seeds: list[int]) -> str:
    """'Confirmatory (seeds 100-109).' or 'Exploratory (seeds 0-9): <why>.'"""
    on = f"seeds {seed_range(seeds)}" if seeds else "no runs"
    if not kind.reasons:
        return f"{kind.kind.capitalize()} ({on})."
    return f"{kind.kind.capitalize()} ({on}): {'; '.join(kind.reasons)}."


def index_row(result) -> list[str]:
    """For the root index: claim, outcome, kind, primary effect [CI] with its unit, n, p,
    delta."""
    name = f"{result.claim.number}. {result.claim.name}"
    if result.status == "incomplete":
        return [name, "incomplete", "-", "-", "-", "-", "-", "-"]
    p = result.primary
    return [
        name,
        outcome_text(result.status, p["n"], p["lo90"], p["hi90"], p["delta"]),
        result.kind.kind,
        p["label"],
        effect_text(p["mean"], p["lo"], p["hi"], p["unit"]),
        str(p["n"]),
        fmt_p(p["p"]),
        quantity(p["delta"], p["unit"]),
    ]


INDEX_HEADER = [
    "claim",
    "outcome",
    "kind",
    "primary measure",
    "effect [95% CI]",
    "n",
    P_EXACT,
    "delta",
]


def is_preview(primary: dict) -> bool:
    """Too few seeds for the exact test to decide anything (the quick profile)."""
    return primary["outcome"] == "inconclusive" and primary["n"] < MIN_DECISIVE_N


def preview_direction(claim: Claim, mean: float) -> str:
    """Which way a too-small sample points; an effect of exactly zero points nowhere."""
    if mean == 0:
        return "no direction (an effect of zero)"
    sign = 1 if claim.primary.direction == "higher" else -1
    return "direction as claimed" if sign * mean > 0 else "direction against the claim"


def describe(claim: Claim, primary: dict) -> str:
    """The outcome in one or two sentences, no stronger than the data."""
    unit, delta = primary["unit"], primary["delta"]
    mean, lo, hi = signed_alike(primary["mean"], primary["lo"], primary["hi"])
    lo90, hi90 = signed_alike(primary["lo90"], primary["hi90"])
    effect = (
        f"{primary['cell']}: {mean} {unit} [95% CI {lo}, {hi}], n={primary['n']}, "
        f"exact p={fmt_p(primary['p'])}{p_floor(primary)}, delta={quantity(delta, unit)}"
    )
    outcome = primary["outcome"]
    if is_preview(primary):
        return (
            f"PREVIEW, {preview_direction(claim, primary['mean'])}: {effect}. "
            f"{primary['n']} seeds cannot decide (the "
            f"exact test's smallest p at n={primary['n']} is {fmt_p(2 / 2 ** primary['n'])}); "
            f"the confirmatory profile's {CONFIRMATORY_N} seeds do."
        )
    if outcome == "no effect":
        return (
            f"NO EFFECT larger than {quantity(delta, unit)} (90% CI "
            f"{lo90}, {hi90} inside +-{delta:g}): {effect}."
        )
    if outcome == "inconclusive":
        needed = f"detecting {quantity(delta, unit)} would take about "
        needed += _count(primary["seeds_for_delta"])
        if math.isinf(primary["mde"]):
            power = (
                f"At n={primary['n']} the exact test cannot reach p < {ALPHA} whatever the "
                f"effect (its smallest p is {fmt_p(2 / 2 ** primary['n'])}); {needed} seeds."
            )
        else:
            power = (
                f"At n={primary['n']} the smallest effect detectable with 80% power is "
                f"{primary['mde']:.3g} {unit}; {needed} seeds."
            )
        return f"INCONCLUSIVE: {effect}. {power}"
    # Significant, and also equivalent: smaller than any effect of interest.
    if within_delta(primary["n"], primary["lo90"], primary["hi90"], delta):
        size = (
            f" Its 90% CI [{lo90}, {hi90}] lies inside "
            f"+-{quantity(delta, unit)}: no effect larger than delta either."
        )
    elif abs(primary["mean"]) < delta:
        size = f" The effect is smaller than delta ({quantity(delta, unit)})."
    else:
        size = ""
    return f"{outcome.upper()} (claimed: {claim.primary.direction}): {effect}.{size}"


MIN_DECISIVE_N = 6  # below it the exact two-sided test cannot reach p < 0.05 (2/2^5 > 0.05)
CONFIRMATORY_N = 10


def p_floor(primary: dict) -> str:
    """' (the floor at n=10)' where p is the exact test's smallest possible value."""
    n = primary["n"]
    return f" (the exact test's floor at n={n})" if primary["p"] <= 2 / 2**n * 1.0001 else ""


def _count(value: float) -> str:
    return "?" if value is None or math.isnan(value) else f"{int(value)}"
