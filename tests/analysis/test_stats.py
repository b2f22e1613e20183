"""Statistics on small known tables: CIs by hand, Holm, pairing by seed, diverged at chance;
the verdict's test: exact sign-flip p-values, intervals, power and the four outcomes."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bnbench.analysis.columns import scored
from bnbench.analysis.run_stats import (
    best_cells,
    effects,
    paired_differences,
    summarize,
    train_accuracy,
)
from bnbench.analysis.stats import (
    EXACT_MAX_N,
    MIN_DECISIVE_N,
    MONTE_CARLO_PATTERNS,
    OUTCOMES,
    bootstrap_ci,
    ci_mean,
    detectable,
    holm,
    interval,
    judge_paired,
    mean_difference,
    seeds_needed,
    sign_flip_pvalue,
)

T_975_3DOF = 3.182446  # t quantile for a 95% interval with n = 4


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """A minimal runs table, as bnbench.analysis.tables.load_runs returns it."""
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


def test_a_key_only_one_norm_reads_is_blank_for_the_others_and_not_matched_on():
    """Noisy BN at two noise levels each pairs with the one plain run per seed, whose noise
    level (a default it never reads) the run table leaves blank."""
    from bnbench.analysis.tables import applicable

    plain = applicable({"model.norm": "none", "model.noise_std": 0.5, "model.groups": 8})
    assert plain == {"model.norm": "none", "model.noise_std": None, "model.groups": None}
    noisy = {"model.norm": "noisy_batch", "model.noise_std": 0.2, "model.groups": 8}
    assert applicable(noisy)["model.noise_std"] == 0.2
    rows = [
        {"model.norm": "none", "model.noise_std": None, "seed": s, "val_acc": 0.5} for s in (0, 1)
    ]
    for level, acc in ((0.1, 0.8), (0.2, 0.7)):
        rows += [
            {"model.norm": "noisy_batch", "model.noise_std": level, "seed": s, "val_acc": acc}
            for s in (0, 1)
        ]
    table = effects(runs_table(rows), ["val_acc"], treatment="noisy_batch").set_index(
        "model.noise_std"
    )
    assert table["n"].tolist() == [2, 2]
    assert table.loc[0.1, "mean"] == pytest.approx(0.3) and table.loc[0.2, "mean"] == pytest.approx(
        0.2
    )


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


# --- the verdict's test: exact sign-flip p, intervals, power, the four outcomes ------------

T_975_7DOF, T_80_7DOF = 2.3646243, 0.8960296  # t quantiles for power at n = 8
T_95_7DOF = 1.8945786  # the 90% interval's quantile at n = 8


def exact_sign_flip(diffs) -> float:
    """Brute force over every sign pattern: the definition, written independently."""
    observed = abs(sum(diffs))
    patterns = list(product((1, -1), repeat=len(diffs)))
    sums = [abs(sum(s * d for s, d in zip(p, diffs, strict=True))) for p in patterns]
    extreme = sum(total >= observed - 1e-9 for total in sums)
    return extreme / len(patterns)


def integer_sign_flip(diffs: list[int]) -> float:
    """Exact p for integer differences by counting sums (dynamic programming): no
    enumeration, so it reaches n = 20 where the engine switches to Monte Carlo."""
    counts = {0: 1}
    for d in diffs:
        step: dict[int, int] = {}
        for total, ways in counts.items():
            for signed in (d, -d):
                step[total + signed] = step.get(total + signed, 0) + ways
        counts = step
    observed = abs(sum(diffs))
    return sum(w for total, w in counts.items() if abs(total) >= observed) / 2 ** len(diffs)


def test_exact_p_at_n5_all_positive_is_2_of_32():
    assert sign_flip_pvalue([2.1, 1.9, 2.3, 2.0, 2.2]) == pytest.approx(2 / 32)
    assert sign_flip_pvalue([-0.3, -5.0, -1.0, -2.0, -0.01]) == pytest.approx(2 / 32)


def test_exact_p_counts_patterns_by_hand():
    # [1, 1, 1, -1]: |sum| = 2; a pattern reaches |sum| >= 2 with 0, 1, 3 or 4 plus signs:
    # 1 + 4 + 4 + 1 = 10 of 16 patterns
    assert sign_flip_pvalue([1.0, 1.0, 1.0, -1.0]) == pytest.approx(10 / 16)
    # [1, 2, 3, 4, -5]: enumerate; [3, -1, 2]: |sum| 4 reached by (+,-,+), (+,+,+) and negatives
    assert sign_flip_pvalue([1, 2, 3, 4, -5]) == pytest.approx(exact_sign_flip([1, 2, 3, 4, -5]))
    assert sign_flip_pvalue([3.0, -1.0, 2.0]) == pytest.approx(4 / 8)
    # every sum of +-{1.0, 1.2, 0.5, 0.4, 0.2} is an odd multiple of 0.1: none is below |0.1|
    assert sign_flip_pvalue([1.0, -1.2, 0.5, -0.4, 0.2]) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, EXACT_MAX_N])
def test_equal_nonzero_differences_get_the_smallest_exact_p_never_0(n):
    p = sign_flip_pvalue([0.7] * n)
    assert p == pytest.approx(2 / 2**n) and p > 0


def test_all_zero_differences_give_p_1():
    assert sign_flip_pvalue([0.0] * 5) == 1.0
    assert sign_flip_pvalue([0.0, np.nan, 0.0]) == 1.0  # NaN dropped
    assert math.isnan(sign_flip_pvalue([])) and math.isnan(sign_flip_pvalue([np.nan]))


def test_nan_differences_are_dropped_before_counting_patterns():
    assert sign_flip_pvalue([1.0, np.nan, 2.0, 3.0]) == pytest.approx(2 / 8)


def test_monte_carlo_beyond_16_is_deterministic_never_0_and_close_to_exact():
    n = EXACT_MAX_N + 4
    assert n == 20
    strong = list(range(1, n + 1))  # every sign positive: exact p = 2 / 2^20
    p = sign_flip_pvalue(strong)
    assert p == sign_flip_pvalue(strong) > 0
    assert p >= 1 / (MONTE_CARLO_PATTERNS + 1)
    assert sign_flip_pvalue([0.7] * n) > 0  # zero variance, Monte Carlo branch
    mixed = [3, -1, 4, 1, -5, 9, 2, -6, 5, 3, -5, 8, 9, -7, 9, 3, 2, -3, 8, 4]
    exact = integer_sign_flip(mixed)
    assert 0.01 < exact < 0.5
    assert sign_flip_pvalue(mixed) == pytest.approx(exact, abs=0.01)  # 100 000 patterns
    assert sign_flip_pvalue(mixed) == sign_flip_pvalue(mixed)  # seeded
    assert sign_flip_pvalue(mixed, seed=1) == pytest.approx(exact, abs=0.01)


def test_exact_branch_matches_brute_force_on_random_differences():
    rng = np.random.default_rng(3)
    for n in (2, 4, 7, 10):
        diffs = rng.normal(0.5, 1.0, n).round(3).tolist()
        assert sign_flip_pvalue(diffs) == pytest.approx(exact_sign_flip(diffs))


def test_t_interval_by_hand():
    lo, hi = interval([1, 2, 3, 4], 0.95, "t")
    half = T_975_3DOF * math.sqrt(5 / 3) / 2
    assert (lo, hi) == (pytest.approx(2.5 - half, rel=1e-6), pytest.approx(2.5 + half, rel=1e-6))


def test_bca_interval_falls_back_to_t_below_3_values_or_without_spread():
    for values in ([1.0, 2.0], [1.0, np.nan, 2.0], [2.0, 2.0, 2.0]):
        assert interval(values, 0.95, "bca") == interval(values, 0.95, "t")
    assert interval([2.0, 2.0, 2.0], 0.95, "bca") == (2.0, 2.0)
    lo, hi = interval([1.0], 0.95, "bca")
    assert math.isnan(lo) and math.isnan(hi)


def test_bca_interval_is_deterministic_and_brackets_the_mean():
    values = [0.1, 0.3, 0.2, 3.0, 0.25, 0.15, 0.4, 0.2]  # skewed
    first = interval(values, 0.95, "bca")
    assert first == interval(values, 0.95, "bca")
    assert first != interval(values, 0.95, "t")
    assert first[0] < np.mean(values) < first[1]
    lo90, hi90 = interval(values, 0.90, "bca")
    assert first[0] <= lo90 and hi90 <= first[1]  # the 90% interval sits inside the 95%


def test_judge_supported_in_the_claimed_direction():
    diffs = [2.1, 1.9, 2.3, 2.0, 2.2, 2.05, 1.95, 2.15]  # n = 8: exact p = 2/256
    result = judge_paired(diffs, "higher", delta=1.0)
    assert result["outcome"] == "supported"
    assert result["p"] == pytest.approx(2 / 256) and result["n"] == 8
    assert result["mean"] == pytest.approx(np.mean(diffs)) and result["lo"] > 0
    assert result["delta"] == 1.0
    assert judge_paired([-d for d in diffs], "lower", 1.0)["outcome"] == "supported"
    assert judge_paired(diffs, "higher", 1.0, ci="bca")["outcome"] == "supported"


def test_judge_contradicted_when_significant_the_other_way():
    diffs = [2.1, 1.9, 2.3, 2.0, 2.2, 2.05, 1.95, 2.15]
    assert judge_paired(diffs, "lower", 1.0)["outcome"] == "contradicted"
    assert judge_paired([-d for d in diffs], "higher", 1.0)["outcome"] == "contradicted"


def test_significance_comes_before_equivalence():
    # a consistent effect smaller than delta is still significant: supported, as the rule reads
    tiny = [0.1, 0.11, 0.09, 0.1, 0.12, 0.1, 0.08, 0.1]
    result = judge_paired(tiny, "higher", delta=1.0)
    assert -1.0 < result["lo90"] < result["hi90"] < 1.0
    assert result["outcome"] == "supported"


def test_at_n5_nothing_is_significant_so_a_clear_effect_is_not_supported():
    # the smallest exact two-sided p at n = 5 is 2/32 = 0.0625 > 0.05
    result = judge_paired([2.1, 1.9, 2.3, 2.0, 2.2], "higher", delta=1.0)
    assert result["p"] == pytest.approx(0.0625)
    assert result["outcome"] == "inconclusive"


def test_judge_no_effect_when_the_90_percent_ci_lies_inside_delta():
    diffs = [0.1, -0.1, 0.05, -0.05, 0.0, 0.02, -0.02, 0.01]
    result = judge_paired(diffs, "higher", delta=1.0)
    mean, sd = np.mean(diffs), np.std(diffs, ddof=1)
    half90 = T_95_7DOF * sd / math.sqrt(8)
    assert result["lo90"] == pytest.approx(mean - half90, rel=1e-6)
    assert result["hi90"] == pytest.approx(mean + half90, rel=1e-6)
    assert result["lo"] < result["lo90"] and result["hi90"] < result["hi"]
    assert result["p"] == pytest.approx(1.0)  # every sign pattern keeps |sum| >= 0.01
    assert result["outcome"] == "no effect"
    # the same differences against a delta the 90% CI crosses: inconclusive
    assert judge_paired(diffs, "higher", delta=0.03)["outcome"] == "inconclusive"


def test_judge_inconclusive_gives_mde_and_seeds_for_delta():
    diffs = [1.0, -1.2, 0.5, -0.4, 0.2, 0.3, -0.6, 0.9]
    result = judge_paired(diffs, "higher", delta=0.5)
    sd = np.std(diffs, ddof=1)
    assert result["outcome"] == "inconclusive" and result["hi90"] > 0.5
    assert result["p"] == pytest.approx(exact_sign_flip(diffs)) and result["p"] > 0.05
    assert result["sd"] == pytest.approx(sd)
    assert result["mde"] == pytest.approx((T_975_7DOF + T_80_7DOF) * sd / math.sqrt(8), rel=1e-5)
    seeds = result["seeds_for_delta"]
    assert math.isfinite(seeds) and seeds > 8 and seeds == int(seeds)
    # the count is the first n at which delta becomes detectable
    assert detectable(sd, int(seeds)) <= 0.5 < detectable(sd, int(seeds) - 1)
    # a larger effect of interest needs fewer seeds; a larger spread needs more
    by_delta = [seeds_needed(sd, d) for d in (0.25, 0.5, 1.0, 2.0)]
    assert by_delta == sorted(by_delta, reverse=True) and by_delta[0] > by_delta[-1]
    assert seeds_needed(2 * sd, 0.5) > seeds
    # the minimum detectable effect shrinks with n
    assert detectable(sd, 20) < detectable(sd, 10) < detectable(sd, 8)


def test_judge_with_one_or_no_difference_is_inconclusive():
    one = judge_paired([3.0], "higher", 1.0)
    assert one["outcome"] == "inconclusive" and one["n"] == 1 and one["p"] == 1.0
    assert math.isnan(one["mde"]) and math.isnan(one["seeds_for_delta"])
    none = judge_paired([np.nan], "higher", 1.0)
    assert none["outcome"] == "inconclusive" and none["n"] == 0


def test_every_outcome_is_one_of_the_four():
    rng = np.random.default_rng(0)
    for _ in range(20):
        diffs = rng.normal(rng.normal(), 1.0, rng.integers(2, 12))
        assert judge_paired(diffs, "higher", 0.5)["outcome"] in OUTCOMES


def test_the_power_line_never_names_a_seed_count_the_exact_test_cannot_reject_at():
    # below 6 seeds the smallest exact p, 2/2^n, is at least 0.0625: nothing is detectable
    assert MIN_DECISIVE_N == 6 and 2 / 2**6 < 0.05 <= 2 / 2**5
    assert seeds_needed(0.1, 1.0) == 6  # the t approximation alone would say 2
    assert detectable(1.0, 5) == math.inf and math.isfinite(detectable(1.0, 6))
    result = judge_paired([0.2, -0.1, 0.3], "higher", 1.0)
    assert result["mde"] == math.inf and result["seeds_for_delta"] >= 6


def test_holm_within_one_family_by_hand():
    # sorted 0.01, 0.02, 0.03 times 3, 2, 1 = 0.03, 0.04, 0.03 -> running max 0.03, 0.04, 0.04
    np.testing.assert_allclose(holm([0.03, 0.01, 0.02]), [0.04, 0.03, 0.04])
    # a single p-value is its own family: unchanged
    np.testing.assert_allclose(holm([0.02]), [0.02])
    # 2/32 and 1.0 (a cell of zeros): 2 * 0.0625 and 1.0
    np.testing.assert_allclose(holm([2 / 32, 1.0]), [0.125, 1.0])


def test_the_effect_table_adjusts_each_metric_as_its_own_family():
    """Holm within one metric: the same cell's val and test rows are not one family."""
    lifts = {  # BN - no-BN per seed, for each (metric, lr): four different p-values
        ("val_acc", 0.01): [0.02, -0.01, 0.03, 0.00, 0.01, 0.04],
        ("val_acc", 0.1): [0.05, 0.04, 0.06, 0.03, 0.05, 0.02],
        ("test_acc", 0.01): [0.01, -0.02, 0.02, 0.00, -0.01, 0.03],
        ("test_acc", 0.1): [0.03, 0.01, 0.02, -0.01, 0.04, 0.02],
    }
    rows = []
    for seed in range(6):
        for norm in ("batch", "none"):
            for lr in (0.01, 0.1):
                row = {"run_id": f"{norm}{lr}{seed}", "status": "completed", "seed": seed}
                row |= {"model.norm": norm, "optim.lr": lr, "chance_acc": 0.1}
                for metric in ("val_acc", "test_acc"):
                    row[metric] = 0.5 + (lifts[metric, lr][seed] if norm == "batch" else 0.0)
                rows.append(row)
    table = effects(pd.DataFrame(rows))
    assert len(table) == 4 and table["p"].nunique() == 4
    for _, family in table.groupby("metric"):
        assert family["p_holm"].tolist() == pytest.approx(holm(family["p"]).tolist())
    assert table["p_holm"].tolist() != pytest.approx(holm(table["p"]).tolist())  # not one family


def test_a_gap_is_taken_from_eval_mode_train_accuracy_where_every_completed_run_has_it():
    runs = pd.DataFrame(
        {
            "status": ["completed", "completed", "diverged"],
            "train_acc": [0.90, 0.80, 0.10],
            "train_eval_acc": [0.95, 0.85, np.nan],  # a diverged run has none
            "chance_acc": 0.1,
        }
    )
    assert train_accuracy(runs)[0] == "train_eval_acc"
    assert scored(runs, "train_eval_acc").tolist() == [0.95, 0.85, 0.1]  # diverged at chance
    assert train_accuracy(runs.assign(train_eval_acc=[0.95, np.nan, np.nan]))[0] == "train_acc"
    assert train_accuracy(runs.drop(columns="train_eval_acc"))[0] == "train_acc"
