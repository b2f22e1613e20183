"""How a verdict reads: a few seeds give a preview that says which way the effect points and
why it cannot decide; p on the exact test's floor says so; one p format throughout."""

from __future__ import annotations

import pandas as pd

from bnbench.analysis.stats import judge_paired
from bnbench.claims.display import describe
from bnbench.claims.registry import load_claims

CLAIM = load_claims()["regularization"]  # claimed direction: higher


def primary(diffs: list[float]) -> dict:
    p = CLAIM.primary
    result = judge_paired(diffs, p.direction, p.delta, p.ci)
    return result | {"cell": "test_acc", "unit": p.unit, "label": p.label, "direction": "higher"}


def test_three_seeds_give_a_preview_not_a_bare_inconclusive():
    said = describe(CLAIM, primary([18.3, 11.9, 24.7]))
    assert said.startswith("PREVIEW, direction as claimed: ")
    assert "3 seeds cannot decide (the exact test's smallest p at n=3 is 0.250)" in said
    against = describe(CLAIM, primary([-2.0, -1.0, -3.0]))
    assert against.startswith("PREVIEW, direction against the claim: ")
    zero = describe(CLAIM, primary([0.0, 0.0, 0.0]))  # e.g. both arms hit the target together
    assert zero.startswith("PREVIEW, no direction (an effect of zero): ")


def test_p_on_the_exact_tests_floor_is_named_and_written_as_in_the_tables():
    said = describe(CLAIM, primary([3.0, 2.5, 3.5, 2.8, 3.1, 2.9, 3.3, 2.7, 3.2, 3.0]))
    assert said.startswith("SUPPORTED (claimed: higher)")
    assert "exact p=0.002 (the exact test's floor at n=10)" in said
    mixed = describe(CLAIM, primary([3.0, -2.5, 3.5, 2.8, 3.1, 2.9, 3.3, 2.7, 3.2, 3.0]))
    assert "floor" not in mixed


def test_runs_without_what_the_primary_reads_are_incomplete_not_an_error(tmp_path):
    """Runs recorded under an older protocol (here: without single-image test statistics)
    give an incomplete verdict that says why, so `bnbench report` still draws the rest."""
    from bnbench.claims.verdict import verdict
    from bnbench.store.files import PROBE_COLUMNS, run_path
    from bnbench.store.planfile import Plan, write_plan
    from tests.claims.test_claims import write_run

    sweep, ids = tmp_path / "claim_test_time_stats", []
    for seed in range(3):
        ids.append(f"bn-{seed}")
        write_run(sweep, ids[-1], {"model.norm": "batch", "seed": seed, "optim.lr": 0.05}, 0.8, 0.8)
        rows = [[-1, "test_time_acc", c, 0.8] for c in ("running", "precise")]
        pd.DataFrame(rows, columns=PROBE_COLUMNS).to_csv(
            run_path(sweep, ids[-1]) / "probes.csv", index=False
        )
    write_plan(sweep, Plan("full", [], ids))
    result = verdict("test-time-stats", tmp_path)
    assert result.status == "incomplete"
    assert "do not hold what the primary measure reads" in result.sentence


def test_a_claim_name_that_could_be_a_path_is_refused():
    import copy

    import pytest

    from bnbench.claims.registry import ClaimFileError, parse_claim
    from tests.claims.test_claims import PLACEMENT_LIKE

    for name in ("../../evil", "Evil", "a/b", "", "café"):
        with pytest.raises(ClaimFileError, match="lowercase letters, digits"):
            parse_claim(name, copy.deepcopy(PLACEMENT_LIKE))
    assert parse_claim("gn-matches-bn", copy.deepcopy(PLACEMENT_LIKE)).name == "gn-matches-bn"
