"""Verdicts as data, through the real commands: `claims verdict --json`, the verdicts.csv a
report writes at its results root (claims in number order, one row per measure, the kind of
each verdict), and the loaders `bnbench.load_verdicts`, `load_steps`, `load_evals`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import bnbench
from bnbench.claims.verdict_table import VERDICT_COLUMNS
from tests.conftest import TINY
from tests.conftest import bnbench as run_bnbench


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdicts")
    run_bnbench(
        "claims", "run", "test-time-stats", "faster-convergence", "--profile", "quick",
        *TINY, f"results_dir={root}", cwd=root,
    )  # fmt: skip
    return root


def test_claims_verdict_json_has_the_sentence_and_one_row_per_measure(judged):
    out = run_bnbench("claims", "verdict", "test-time-stats", str(judged), "--json", cwd=judged)
    said = json.loads(out.stdout)
    roles = [row["role"] for row in said["rows"]]
    assert roles[0] == "primary" and set(roles[1:]) == {"secondary"}
    primary = said["rows"][0]
    assert set(primary) <= set(VERDICT_COLUMNS) and primary["n"] == 3
    assert primary["kind"] == "exploratory" and "seeds 0-2" in said["sentence"]
    assert said["sentence"].startswith(("PREVIEW", said["status"].upper()))


def test_the_report_writes_verdicts_csv_in_claim_order_and_the_loaders_read_it(judged):
    verdicts = bnbench.load_verdicts(judged)
    assert list(verdicts.columns) == VERDICT_COLUMNS
    assert verdicts["number"].tolist() == sorted(verdicts["number"])
    primaries = verdicts[verdicts["role"].eq("primary")]
    assert primaries["claim"].tolist() == ["faster-convergence", "test-time-stats"]
    assert set(verdicts["kind"]) == {"exploratory"}
    assert {"load_verdicts", "load_steps", "load_evals"} <= set(dir(bnbench))
    steps = bnbench.load_steps(judged / "claim_faster_convergence")
    evals = bnbench.load_evals(judged / "claim_faster_convergence")
    assert {"run_id", "step", "train_loss"} <= set(steps.columns)
    assert {"run_id", "step", "val_acc"} <= set(evals.columns)
    # 30 runs (5 LRs x 2 norms x 3 seeds); one that diverges before validating has no evals
    assert steps["run_id"].nunique() == 30
    assert 0 < evals["run_id"].nunique() <= 30 and set(evals["run_id"]) <= set(steps["run_id"])


def test_load_verdicts_names_the_command_when_there_is_none(tmp_path):
    with pytest.raises(FileNotFoundError, match="bnbench report"):
        bnbench.load_verdicts(tmp_path)


def test_within_delta_marks_a_decided_effect_too_small_to_matter() -> None:
    """The column REPORT.md prints as "supported, within ±delta": the 90% CI inside ±delta."""
    import pandas as pd

    from bnbench.claims.verdict_table import verdict_rows

    def measure(lo90, hi90):
        return dict(
            label="m", cell="c", unit="points", mean=(lo90 + hi90) / 2, lo=lo90 - 0.1,
            hi=hi90 + 0.1, lo90=lo90, hi90=hi90, n=10, p=0.002, delta=1.0, direction="higher",
        )  # fmt: skip

    claim = SimpleNamespace(name="x", number=1, primary=SimpleNamespace(label="m"))
    secondary = pd.DataFrame([measure(1.2, 2.0) | {"p_holm": 0.01, "outcome_holm": "supported"}])
    result = SimpleNamespace(
        claim=claim, kind=SimpleNamespace(kind="confirmatory", reasons=[]), seeds=list(range(10)),
        profile="confirmatory", status="judged", secondary=secondary,
        primary=measure(0.2, 0.6) | {"outcome": "supported"},
    )  # fmt: skip
    rows = verdict_rows(result)
    assert [row["within_delta"] for row in rows] == [True, False]
    assert set(rows[0]) <= set(VERDICT_COLUMNS)


def test_declared_readings_are_said_when_their_secondaries_call_for_them() -> None:
    """claim 9's readings: opposite decided cells -> `split`; a supported primary whose
    control secondary is not supported -> `unconfirmed`. Known answers on small tables."""
    import pandas as pd

    from bnbench.claims.registry import ClaimFileError, parse_claim
    from bnbench.claims.verdict import readings_met

    measure = dict(
        measure="final_metric", treatment={"model.norm": "batch"}, control={"model.norm": "none"},
        label="m", unit="points", direction="higher", delta=0.5,
    )  # fmt: skip
    fields = dict(
        number=9, text="t", source="s", experiment="e", anchor="a", why="w", primary=measure,
        secondary=[measure, measure],
        readings=[
            {"kind": "split", "secondary": 0, "text": "depends"},
            {"kind": "unconfirmed", "secondary": 1, "text": "head"},
        ],
    )  # fmt: skip
    claim = parse_claim("x", fields)

    def table(means, p_holm, outcomes):
        return pd.DataFrame(
            {"secondary": [0, 0, 1], "mean": means, "p_holm": p_holm, "outcome_holm": outcomes}
        )

    supported = {"outcome": "supported"}
    split = table([+1.0, -1.0, 0.2], [0.01, 0.02, 0.5], ["", "", "inconclusive"])
    assert readings_met(claim, supported, split) == ["depends", "head"]
    one_undecided = table([+1.0, -1.0, 0.8], [0.01, 0.2, 0.01], ["", "", "supported"])
    assert readings_met(claim, supported, one_undecided) == []
    assert readings_met(claim, {"outcome": "inconclusive"}, split) == ["depends"]
    explained = parse_claim(
        "x", fields | {"readings": [{"kind": "explained", "secondary": 1, "text": "e"}]}
    )
    closed = table([0.1, 0.1, 0.0], [1.0, 1.0, 1.0], ["", "", "no effect"])
    assert readings_met(explained, {"outcome": "contradicted"}, closed) == ["e"]
    assert readings_met(explained, {"outcome": "inconclusive"}, closed) == []
    assert readings_met(explained, {"outcome": "supported"}, split) == []  # inconclusive: not
    bad = fields | {"readings": [{"kind": "split", "secondary": 2, "text": "t"}]}
    with pytest.raises(ClaimFileError, match="secondary must be 0..1"):
        parse_claim("x", bad)
