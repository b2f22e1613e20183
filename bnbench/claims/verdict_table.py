"""Verdicts as data: one row per claim and measure (the primary, then each secondary cell),
for `verdicts.csv` at a results root (written with its report), `bnbench claims verdict
--json` and `bnbench.load_verdicts(root)`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bnbench.analysis.stats import within_delta
from bnbench.store.files import write_atomic

VERDICTS_FILE = "verdicts.csv"
VERDICT_COLUMNS = [
    "claim",  # its name in conf/claims.yaml
    "number",
    "role",  # primary | secondary
    "label",  # what the measure compares, in words
    "cell",  # the measure's cell: a `by` value, what the arms differ in, their `over` settings
    "unit",
    "mean",  # treatment - control, per seed, averaged
    "lo",  # 95% CI
    "hi",
    "n",  # seeds paired
    "p",  # exact sign-flip p (a secondary's own)
    "p_holm",  # secondaries: Holm-adjusted among the claim's secondary cells
    "delta",  # the smallest effect of interest, in `unit`
    "direction",  # the sign the claim predicts: higher | lower
    "outcome",  # supported | contradicted | no effect | inconclusive (| incomplete)
    "within_delta",  # the 90% CI inside +-delta: a decided effect too small to matter
    "kind",  # confirmatory | exploratory
    "reasons",  # why exploratory, "; "-joined
    "seeds",  # the seeds judged, e.g. "100-109"
    "profile",
]


def verdict_rows(result) -> list[dict]:
    """The verdict's rows: its primary measure, then every secondary cell (Holm outcome)."""
    from bnbench.claims.preregistration import seed_range

    claim = result.claim
    about = {
        "claim": claim.name,
        "number": claim.number,
        "kind": result.kind.kind,
        "reasons": "; ".join(result.kind.reasons),
        "seeds": seed_range(result.seeds),
        "profile": result.profile,
    }
    if result.status == "incomplete":
        return [about | {"role": "primary", "label": claim.primary.label, "outcome": "incomplete"}]
    p = result.primary
    keys = ("label", "cell", "unit", "mean", "lo", "hi", "n", "p", "delta", "direction")
    primary = {"role": "primary", "outcome": p["outcome"], "within_delta": too_small(p)}
    rows = [about | primary | {k: p[k] for k in keys}]
    for row in result.secondary.to_dict("records"):
        cell = {k: row[k] for k in keys} | {"p_holm": row["p_holm"], "within_delta": too_small(row)}
        rows.append(about | {"role": "secondary", "outcome": row["outcome_holm"]} | cell)
    return rows


def too_small(measure: dict) -> bool:
    return within_delta(measure["n"], measure["lo90"], measure["hi90"], measure["delta"])


def verdicts_frame(results) -> pd.DataFrame:
    rows = [row for result in results for row in verdict_rows(result)]
    frame = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    return frame.sort_values(["number", "role"], kind="stable", ignore_index=True)


def write_verdicts(root: Path, results) -> Path:
    """verdicts.csv at a results root: every claim judged there, in claim order."""
    path = Path(root) / VERDICTS_FILE
    write_atomic(path, verdicts_frame(results).to_csv(index=False))
    return path


def load_verdicts(root: str | Path) -> pd.DataFrame:
    """The verdicts table a report wrote at a results root (`bnbench report ROOT`)."""
    path = Path(root) / VERDICTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {VERDICTS_FILE} in {root}: run `bnbench report {root}`")
    return pd.read_csv(path)


def verdict_json(result) -> str:
    """The verdict as JSON: its sentence and its rows (NaN as null)."""
    rows = [{k: _plain(v) for k, v in row.items()} for row in verdict_rows(result)]
    return json.dumps({"sentence": result.sentence, "status": result.status, "rows": rows})


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value
