"""Statistics on small known tables: CIs by hand, Holm, pairing by seed, diverged at chance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bnbench.stats import (
    best_cells,
    bootstrap_ci,
    ci_mean,
    effects,
    holm,
    mean_difference,
    paired_differences,
    scored,
    summarize,
)

T_975_3DOF = 3.182446  # t quantile for a 95% interval with n = 4


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """A minimal runs table, as bnbench.aggregate.load_runs returns it."""
    base = {"status": "completed", "chance_acc": 0.1, "optim.lr": 0.1, "train_acc": 0.9}
    table = pd.DataFrame([base | row for row in rows])
    table["run_id"] = [f"r{i}" for i in range(len(table))]
    return table


def test_ci_mean_matches_hand_computation():
    mean, lo, hi, n = ci_mean([1, 2, 3, 4])
    sd = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # 1.2910
    half = T_975_3DOF * sd / math.sqrt(4)
    assert (mean, n) == (2.5, 4)
    assert lo == pytest.approx(2.5 - half, rel=1e-5)
    assert hi == pytest.approx(2.5 + half, rel=1e-5)


def test_ci_mean_drops_nan_and_gives_no_interval_for_one_value():
    assert ci_mean([3.0, np.nan])[3] == 1
    mean, lo, hi, n = ci_mean([3.0])
    assert mean == 3.0 and math.isnan(lo) and math.isnan(hi) and n == 1
    assert ci_mean([])[3] == 0


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    values = [0.1, 0.4, 0.35, 0.8, 0.2, 0.5]
    first, second = bootstrap_ci(values), bootstrap_ci(values)
    assert first == second
    mean, lo, hi, n = first
    assert lo < mean < hi and n == 6
    assert bootstrap_ci([2.0, 2.0, 2.0])[:3] == (2.0, 2.0, 2.0)


def test_mean_difference_uses_t_for_small_n_and_bootstrap_for_skewed_large_n():
    small = mean_difference([0.01, 0.02, 0.5])
    assert small["method"] == "t"
    assert small["p"] == pytest.approx(sps.ttest_1samp([0.01, 0.02, 0.5], 0).pvalue)
    skewed = [0.01] * 11 + [0.6]  # one pair where the control diverged
    assert mean_difference(skewed)["method"] == "bootstrap"
    assert mean_difference(np.linspace(-1, 1, 12) + 0.1)["method"] == "t"  # symmetric


def test_holm_on_known_pvalues():
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    with_nan = holm([0.02, np.nan, 0.5])
    np.testing.assert_allclose(with_nan, [0.04, np.nan, 0.5])
    assert holm([0.9, 0.8])[0] == 1.0  # capped at 1


def test_paired_differences_match_by_seed_not_by_row_order():
    runs = runs_table(
        [
            {"model.norm": "batch", "seed": 0, "val_acc": 0.80},
            {"model.norm": "batch", "seed": 1, "val_acc": 0.90},
            {"model.norm": "none", "seed": 1, "val_acc": 0.50},
            {"model.norm": "none", "seed": 0, "val_acc": 0.70},
            {"model.norm": "none", "seed": 2, "val_acc": 0.60},  # no BN partner: no pair
        ]
    )
    pairs = paired_differences(runs, "val_acc").sort_values("seed")
    assert pairs["seed"].tolist() == [0, 1]
    np.testing.assert_allclose(pairs["diff"], [0.10, 0.40])


def test_pairs_never_cross_other_config_keys():
    runs = runs_table(
        [
            {"model.norm": "batch", "seed": 0, "optim.lr": 0.1, "val_acc": 0.8},
            {"model.norm": "none", "seed": 0, "optim.lr": 1.0, "val_acc": 0.3},
        ]
    )
    assert paired_differences(runs, "val_acc").empty


def test_diverged_runs_count_at_chance_and_are_counted():
    runs = runs_table(
        [
            {"model.norm": "none", "seed": 0, "val_acc": 0.70},
            {"model.norm": "none", "seed": 1, "val_acc": np.nan, "status": "diverged"},
            {"model.norm": "batch", "seed": 0, "val_acc": 0.80},
            {"model.norm": "batch", "seed": 1, "val_acc": 0.90},
        ]
    )
    assert scored(runs, "val_acc").tolist() == [0.70, 0.1, 0.80, 0.90]
    table = summarize(runs, ["val_acc"]).set_index("model.norm")
    assert table.loc["none", "n"] == 2 and table.loc["none", "n_diverged"] == 1
    assert table.loc["none", "val_acc_mean"] == pytest.approx((0.70 + 0.1) / 2)
    pairs = paired_differences(runs, "val_acc").sort_values("seed")
    np.testing.assert_allclose(pairs["diff"], [0.10, 0.80])  # the diverged seed pairs at chance


def test_effects_per_cell_with_holm_and_diverged_counts():
    rows = []
    for lr, (bn, none) in {
        0.01: ([0.8, 0.82, 0.81], [0.7, 0.74, 0.69]),
        1.0: ([0.8] * 3, [0.1] * 3),
    }.items():
        for seed in range(3):
            rows.append({"model.norm": "batch", "optim.lr": lr, "seed": seed, "val_acc": bn[seed]})
            rows.append({"model.norm": "none", "optim.lr": lr, "seed": seed, "val_acc": none[seed]})
    runs = runs_table(rows)
    runs.loc[runs["optim.lr"].eq(1.0) & runs["model.norm"].eq("none"), "status"] = "diverged"
    table = effects(runs, ["val_acc"]).set_index("optim.lr")
    assert table["n"].tolist() == [3, 3]
    assert table.loc[1.0, "mean"] == pytest.approx(0.7)
    assert table.loc[1.0, "n_diverged_control"] == 3 and table.loc[0.01, "n_diverged_control"] == 0
    assert (table["p_holm"] >= table["p"]).all()
    assert table.loc[0.01, "lo"] > 0  # every seed favours BN by ~0.1


def test_best_cells_choose_each_norm_by_validation_accuracy():
    runs = runs_table(
        [
            {"model.norm": "batch", "optim.lr": 0.1, "seed": 0, "val_acc": 0.9},
            {"model.norm": "batch", "optim.lr": 1.0, "seed": 0, "val_acc": 0.5},
            {"model.norm": "none", "optim.lr": 0.1, "seed": 0, "val_acc": 0.4},
            {"model.norm": "none", "optim.lr": 1.0, "seed": 0, "val_acc": 0.6},
        ]
    )
    best = best_cells(runs).set_index("model.norm")["optim.lr"]
    assert best.to_dict() == {"batch": 0.1, "none": 1.0}
