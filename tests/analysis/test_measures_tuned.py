"""The measures' protocol-v3 options on hand-built run tables, each expected value worked out
by hand: a fixed steps-to-target priced in steps or seconds with the LR chosen on training
loss, the metric at each arm's largest trainable LR, ranges and spreads with the LR tuned per
setting, pooled cells (the mean of per-activation differences), union arms, probe points
after initialization, and the activation-input percentile drift."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bnbench.analysis.measures import (
    final_metric,
    metric_at_largest_trainable,
    spread,
    steps_to_target,
    trainable_range,
)
from bnbench.analysis.pairing import best_setting, in_arm
from bnbench.analysis.probe_measures import gradient_ratio_growth, percentile_drift, probe_mean
from bnbench.store.files import EVALS_COLUMNS, PROBE_COLUMNS
from tests.analysis.test_measures import BN, PLAIN, by_seed, diverged, runs_table, write_csv


def test_in_arm_of_a_list_of_arms_is_any_of_them():
    runs = runs_table(
        [
            BN | {"model.dropout": 0.0, "model.head_dropout": 0.5},
            BN | {"model.dropout": 0.1, "model.head_dropout": 0.0},
            BN | {"model.dropout": 0.0, "model.head_dropout": 0.0},
        ]
    )
    arm = [{"model.head_dropout": [0.2, 0.5]}, {"model.dropout": [0.05, 0.1]}]
    assert in_arm(runs, arm).tolist() == [True, True, False]


def test_best_setting_on_a_loss_takes_the_lowest_and_a_diverged_run_as_worst():
    rows = [
        {"optim.lr": 0.1, "seed": 0, "train_loss": 0.2},
        diverged({"optim.lr": 0.1, "seed": 1, "train_loss": np.nan}),  # mean: infinite
        {"optim.lr": 0.01, "seed": 0, "train_loss": 0.5},
        {"optim.lr": 0.01, "seed": 1, "train_loss": 0.6},
    ]
    chosen = best_setting(runs_table(rows), ["optim.lr"], "train_loss")
    assert set(chosen["optim.lr"]) == {0.01}


def test_steps_to_a_fixed_target_with_the_lr_chosen_on_training_loss(tmp_path):
    steps = [8, 16, 24, 32]
    runs_and_curves = [
        # BN lr 0.1: lowest train loss, chosen although lr 1.0 has the higher final val
        (
            BN | {"optim.lr": 0.1, "seed": 0, "train_loss": 0.3, "val_acc": 0.7},
            [0.5, 0.7, 0.7, 0.7],
        ),
        (BN | {"optim.lr": 1.0, "seed": 0, "train_loss": 0.9, "val_acc": 0.9}, [0.9] * 4),
        (
            PLAIN | {"optim.lr": 0.1, "seed": 0, "train_loss": 0.4, "val_acc": 0.7},
            [0.1, 0.2, 0.3, 0.6],
        ),
    ]
    runs = runs_table([row | {"train_s": 64.0, "wall_time_s": 99.0} for row, _ in runs_and_curves])
    for run_id, (_, curve) in zip(runs["run_id"], runs_and_curves, strict=True):
        rows = [[s, 1, 1.0, acc] for s, acc in zip(steps, curve, strict=True)]
        write_csv(tmp_path, run_id, "evals.csv", EVALS_COLUMNS, rows)
    args = {"over": ["optim.lr"], "select": "train_loss", "target": 60.0}
    diffs = steps_to_target(runs, tmp_path, BN, PLAIN, **args)
    # BN reaches 60% at step 16; no BN at step 32: log2(16) - log2(32) = -1
    assert by_seed(diffs) == pytest.approx({0: -1.0})
    assert (
        diffs["cell"]
        .iloc[0]
        .startswith("log2 steps to 60% val acc (norm batch vs none, LR 0.1 in both)")
    )
    # priced in seconds of training steps: 64 s over 32 steps = 2 s a step for both
    clock = steps_to_target(runs, tmp_path, BN, PLAIN, clock=True, **args)
    assert by_seed(clock) == pytest.approx({0: math.log2(32) - math.log2(64)})
    assert clock["cell"].iloc[0].startswith("log2 seconds to 60%")


def test_metric_at_the_largest_trainable_lr_per_seed():
    rows = []
    for seed in (0, 1):
        for lr, bn, plain in ((0.01, 0.70, 0.72), (0.1, 0.75, 0.74), (1.0, 0.60, 0.10)):
            rows.append(BN | {"optim.lr": lr, "seed": seed, "val_acc": 0.8, "test_acc": bn})
            val = 0.8 if plain > 0.1 else 0.1  # no BN at lr 1 does not train
            rows.append(PLAIN | {"optim.lr": lr, "seed": seed, "val_acc": val, "test_acc": plain})
    diffs = metric_at_largest_trainable(runs_table(rows), None, BN, PLAIN, factor="optim.lr")
    # BN's largest trainable LR is 1.0 (test 60%), no BN's 0.1 (74%)
    assert by_seed(diffs) == pytest.approx({0: 60.0 - 74.0, 1: 60.0 - 74.0})


def test_trainable_range_with_the_lr_tuned_at_each_scale():
    rows = []
    # at each scale the arm's best LR (on mean val over seeds) is the one listed first
    for seed in (0, 1):
        for scale, good, bad in ((0.1, 0.88, 0.10), (1.0, 0.90, 0.50), (10.0, 0.87, 0.10)):
            rows.append(
                BN | {"model.init_scale": scale, "optim.lr": 0.1, "seed": seed, "val_acc": good}
            )
            rows.append(
                BN | {"model.init_scale": scale, "optim.lr": 1.0, "seed": seed, "val_acc": bad}
            )
        for scale, val in ((0.1, 0.10), (1.0, 0.80), (10.0, 0.10)):
            rows.append(
                PLAIN | {"model.init_scale": scale, "optim.lr": 0.1, "seed": seed, "val_acc": val}
            )
    runs = runs_table(rows)
    tuned = trainable_range(runs, None, BN, PLAIN, within=5.0, over=["optim.lr"])
    # BN at its best LR is within 5 points of 0.90 at every scale: 2 decades; no BN: 0
    assert by_seed(tuned) == pytest.approx({0: 2.0, 1: 2.0})
    # untuned, BN's lr 1.0 runs are in the arm too but never near its best: the same here
    assert by_seed(trainable_range(runs, None, BN, PLAIN, within=5.0)) == by_seed(tuned)


def test_spread_with_each_scheme_at_the_arms_best_lr():
    rows = []
    for init, (bn_good, bn_bad), plain in (
        ("kaiming", (0.80, 0.2), 0.70),
        ("xavier", (0.82, 0.3), 0.50),
    ):
        rows.append(BN | {"model.init": init, "optim.lr": 0.1, "seed": 0, "val_acc": bn_good})
        rows.append(BN | {"model.init": init, "optim.lr": 1.0, "seed": 0, "val_acc": bn_bad})
        rows.append(PLAIN | {"model.init": init, "optim.lr": 0.1, "seed": 0, "val_acc": plain})
    diffs = spread(runs_table(rows), None, BN, PLAIN, over=["model.init"], tune=["optim.lr"])
    assert by_seed(diffs) == pytest.approx({0: 2.0 - 20.0})


def test_final_metric_pooled_over_activations_averages_the_per_activation_differences():
    rows = []
    for seed, (relu, tanh) in enumerate(((+2.0, -1.0), (+4.0, -3.0))):
        for act, diff in (("relu", relu), ("tanh", tanh)):
            post = {"model.placement": "post", "model.activation": act, "seed": seed}
            pre = post | {"model.placement": "pre"}
            rows.append(post | {"test_acc": 0.80 + diff / 100, "val_acc": 0.8})
            rows.append(pre | {"test_acc": 0.80, "val_acc": 0.8})
    post, pre = {"model.placement": "post"}, {"model.placement": "pre"}
    diffs = final_metric(runs_table(rows), None, post, pre, pool=["model.activation"])
    assert diffs["cell"].nunique() == 1
    assert by_seed(diffs) == pytest.approx({0: 0.5, 1: 0.5})


def test_probe_mean_from_step_one_leaves_the_probe_at_initialization_out(tmp_path):
    runs = runs_table([BN | {"seed": 0}, PLAIN | {"seed": 0}])
    cos = {"r00": {0: 0.0, 10: 0.9, 20: 0.7}, "r01": {0: 0.9, 10: 0.9, 20: 0.9}}
    for run_id, by_step in cos.items():
        rows = [[step, "ics_cos", "0.0.conv", 1.0] for step in by_step]  # the first layer
        rows += [[step, "ics_cos", "1.0.conv", c] for step, c in by_step.items()]
        write_csv(tmp_path, run_id, "probes.csv", PROBE_COLUMNS, rows)
    args = {"probe": "ics_cos", "transform": "one_minus"}
    later = probe_mean(runs, tmp_path, BN, PLAIN, from_step=1, **args)
    assert by_seed(later) == pytest.approx({0: 0.2 - 0.1})  # (0.1 + 0.3) / 2 - 0.1
    every = probe_mean(runs, tmp_path, BN, PLAIN, **args)
    assert by_seed(every) == pytest.approx({0: (1.0 + 0.1 + 0.3) / 3 - 0.1})


def write_ratios(tmp_path, runs: pd.DataFrame, ratio) -> None:
    for row in runs.to_dict("records"):
        r = ratio(row)
        lines = [[0, "grad_norm", "0.0.conv", 10**r], [0, "grad_norm", "3.3", 1.0]]
        write_csv(tmp_path, row["run_id"], "probes.csv", PROBE_COLUMNS, lines)


def test_gradient_ratio_growth_pooled_takes_each_activations_size_then_the_mean(tmp_path):
    rows = [
        arm | {"model.depth": d, "model.activation": a, "seed": 0, "optim.lr": lr, "val_acc": v}
        for arm in (BN, PLAIN)
        for d in (1, 8)
        for a in ("relu", "sigmoid")
        for lr, v in ((0.1, 0.8), (1.0, 0.3))
    ]
    runs = runs_table(rows)

    def ratio(row) -> float:
        if row["optim.lr"] == 1.0:
            return 50.0  # the worse LR: never chosen
        if row["model.depth"] == 1:
            return 0.0
        moves = {"batch": {"relu": 0.2, "sigmoid": -0.4}, "none": {"relu": 3.0, "sigmoid": -5.0}}
        return moves[row["model.norm"]][row["model.activation"]]

    write_ratios(tmp_path, runs, ratio)
    args = {"over": ["optim.lr"], "pool": ["model.activation"]}
    diffs = gradient_ratio_growth(runs, tmp_path, BN, PLAIN, **args)
    # sizes averaged: BN (0.2 + 0.4) / 2 = 0.3; no BN (3 + 5) / 2 = 4; signed ones would cancel
    assert by_seed(diffs) == pytest.approx({0: 0.3 - 4.0})
    signed = gradient_ratio_growth(runs, tmp_path, BN, PLAIN, signed=True, **args)
    assert by_seed(signed) == pytest.approx({0: -0.1 - (-1.0)})


def test_percentile_drift_in_units_of_the_initial_spread(tmp_path):
    runs = runs_table([BN | {"seed": 0}, PLAIN | {"seed": 0}])
    percentiles = {  # run: {step: (p15, p50, p85)} of one layer; the first spread is 2
        "r00": {0: (-1.0, 0.0, 1.0), 10: (-1.0, 0.0, 1.0), 20: (-0.4, 0.6, 1.6)},
        "r01": {0: (-1.0, 0.0, 1.0), 10: (1.0, 2.0, 3.0), 20: (3.0, 4.0, 5.0)},
    }
    for run_id, by_step in percentiles.items():
        rows = [
            [step, f"act_p{q}", "0.0.act", value]
            for step, values in by_step.items()
            for q, value in zip((15, 50, 85), values, strict=True)
        ]
        write_csv(tmp_path, run_id, "probes.csv", PROBE_COLUMNS, rows)
    diffs = percentile_drift(runs, tmp_path, BN, PLAIN)
    # BN: moves 0 then 0.6, / 2 -> mean 0.15; no BN: 2 then 4, / 2 -> mean 1.5
    assert by_seed(diffs) == pytest.approx({0: 0.15 - 1.5})


def test_trainable_range_is_the_longest_unbroken_stretch_of_the_grid():
    scales = (0.01, 0.1, 1.0, 10.0, 100.0)
    vals = [0.88, 0.89, 0.50, 0.90, 0.89]  # a bad scale in the middle breaks the range
    rows = [
        arm | {"model.init_scale": scale, "seed": 0, "val_acc": v if arm is BN else 0.1}
        for arm in (BN, PLAIN)
        for scale, v in zip(scales, vals, strict=True)
    ]
    rows[7]["val_acc"] = 0.8  # no BN trains at 1.0 only
    diffs = trainable_range(runs_table(rows), None, BN, PLAIN, within=5.0)
    assert by_seed(diffs) == pytest.approx({0: 1.0 - 0.0})  # 10..100 (or 0.01..0.1): 1 decade


def test_a_gradient_that_underflowed_to_zero_counts_as_an_extreme_not_infinity(tmp_path):
    rows = [arm | {"model.depth": d, "seed": 0} for arm in (BN, PLAIN) for d in (1, 8)]
    runs = runs_table(rows)
    first = {("batch", 1): 1.0, ("batch", 8): 10.0, ("none", 1): 1.0, ("none", 8): 0.0}
    for row in runs.to_dict("records"):
        value = first[(row["model.norm"], row["model.depth"])]
        lines = [[0, "grad_norm", "0.0.conv", value], [0, "grad_norm", "3.3", 1.0]]
        write_csv(tmp_path, row["run_id"], "probes.csv", PROBE_COLUMNS, lines)
    diffs = gradient_ratio_growth(runs, tmp_path, BN, PLAIN)
    assert by_seed(diffs) == pytest.approx({0: 1.0 - 38.0})  # no BN: -inf censored at 38
