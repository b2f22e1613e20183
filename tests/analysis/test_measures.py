"""The claims' measures on hand-built run tables (and hand-written evals.csv / probes.csv),
each expected difference worked out by hand in the test: best settings chosen on validation,
diverged runs at chance, censoring, the floor of the LR grid, difference-in-differences."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnbench.analysis.measures import (
    MEASURES,
    difference_in_differences,
    final_metric,
    generalization_gap,
    gradient_ratio_growth,
    largest_trainable,
    probe_mean,
    spread,
    steps_to_target,
    trainable_range,
)
from bnbench.analysis.measures import (
    test_time as time_of_test,  # not named test_*: pytest collects those
)
from bnbench.analysis.pairing import best_setting, in_arm
from bnbench.store.files import EVALS_COLUMNS, PROBE_COLUMNS, run_path

BN, PLAIN = {"model.norm": "batch"}, {"model.norm": "none"}


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """A runs table as bnbench.analysis.tables.load_runs gives it: one row per finished run."""
    base = {"status": "completed", "chance_acc": 0.1}
    table = pd.DataFrame([base | row for row in rows])
    table.insert(0, "run_id", [f"r{i:02d}" for i in range(len(table))])
    return table


def diverged(row: dict) -> dict:
    """A diverged run: its accuracies are NaN in the table (it never finished evaluating)."""
    return row | {"status": "diverged", "val_acc": np.nan, "test_acc": np.nan}


def write_csv(sweep: Path, run_id: str, name: str, columns: list[str], rows: list[list]):
    directory = run_path(sweep, run_id)
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(directory / name, index=False)


def by_seed(diffs: pd.DataFrame) -> dict:
    return {int(s): round(float(d), 9) for s, d in zip(diffs["seed"], diffs["diff"], strict=True)}


def test_the_library_names_every_measure():
    assert set(MEASURES) == {
        "final_metric",
        "generalization_gap",
        "steps_to_target",
        "largest_trainable",
        "trainable_range",
        "metric_at_largest_trainable",
        "spread",
        "probe_mean",
        "percentile_drift",
        "gradient_ratio_growth",
        "difference_in_differences",
        "test_time",
    }


# --- arms and best settings ----------------------------------------------------------------


def test_in_arm_matches_values_lists_and_null():
    runs = runs_table(
        [
            {"model.norm": "batch", "model.ghost_batch_size": None},
            {"model.norm": "batch", "model.ghost_batch_size": 2.0},
            {"model.norm": "group", "model.ghost_batch_size": None},
            {"model.norm": "none", "model.ghost_batch_size": None},
        ]
    )
    assert in_arm(runs, {"model.norm": "batch"}).tolist() == [True, True, False, False]
    null = {"model.norm": "batch", "model.ghost_batch_size": None}
    assert in_arm(runs, null).tolist() == [True, False, False, False]
    assert in_arm(runs, {"model.norm": ["group", "none"]}).tolist() == [False, False, True, True]
    with pytest.raises(KeyError, match="model.widht"):
        in_arm(runs, {"model.widht": 8})


def test_best_setting_is_chosen_on_mean_validation_accuracy_with_diverged_at_chance():
    runs = runs_table(
        [
            # lr 1.0: the best single run (0.95) but one seed diverged: mean (0.95 + 0.1) / 2
            {"optim.lr": 1.0, "seed": 0, "val_acc": 0.95, "test_acc": 0.99},
            diverged({"optim.lr": 1.0, "seed": 1}),
            # lr 0.1: mean 0.6, the best once the diverged seed counts at chance
            {"optim.lr": 0.1, "seed": 0, "val_acc": 0.6, "test_acc": 0.1},
            {"optim.lr": 0.1, "seed": 1, "val_acc": 0.6, "test_acc": 0.1},
        ]
    )
    assert best_setting(runs, ["optim.lr"])["optim.lr"].unique().tolist() == [0.1]
    assert best_setting(runs, []) is runs  # nothing to choose


# --- final_metric --------------------------------------------------------------------------


def test_final_metric_takes_each_arm_at_its_best_lr_chosen_on_val_not_test():
    rows = []
    for seed in range(3):
        wobble = 0.01 * seed
        # BN: lr 0.1 is best on val (0.80 > 0.70), though lr 1.0 is best on test
        rows.append(
            BN | {"optim.lr": 0.1, "seed": seed, "val_acc": 0.80, "test_acc": 0.75 + wobble}
        )
        rows.append(BN | {"optim.lr": 1.0, "seed": seed, "val_acc": 0.70, "test_acc": 0.90})
        # no BN: lr 1.0 is best on val (0.65 > 0.60), though lr 0.1 is best on test
        rows.append(PLAIN | {"optim.lr": 0.1, "seed": seed, "val_acc": 0.60, "test_acc": 0.95})
        rows.append(PLAIN | {"optim.lr": 1.0, "seed": seed, "val_acc": 0.65, "test_acc": 0.70})
    diffs = final_metric(runs_table(rows), None, BN, PLAIN, metric="test_acc", over=["optim.lr"])
    # test points at the val-chosen settings: (75 + seed) - 70
    assert by_seed(diffs) == {0: 5.0, 1: 6.0, 2: 7.0}
    assert diffs["cell"].unique().tolist() == ["test_acc (norm batch vs none, LR 0.1 vs 1)"]


def test_final_metric_scores_a_diverged_run_at_chance():
    rows = []
    for seed in range(3):
        rows.append(BN | {"seed": seed, "val_acc": 0.8, "test_acc": 0.8})
        control = PLAIN | {"seed": seed, "val_acc": 0.7, "test_acc": 0.7}
        rows.append(diverged(control) if seed == 2 else control)
    runs = runs_table(rows)
    runs.loc[runs["model.norm"].eq("none"), "chance_acc"] = 0.25  # its own chance level
    diffs = final_metric(runs, None, BN, PLAIN, metric="test_acc")
    assert by_seed(diffs) == {0: 10.0, 1: 10.0, 2: 80.0 - 25.0}
    assert diffs["cell"].unique().tolist() == ["test_acc (norm batch vs none)"]


def test_final_metric_pairs_by_seed_and_splits_cells_by_key():
    rows = [
        BN | {"seed": s, "optim.lr": lr, "val_acc": v}
        for lr, vals in ((0.1, [0.8, 0.9, 0.7]), (1.0, [0.5, 0.5, 0.5]))
        for s, v in enumerate(vals)
    ]
    rows += [
        PLAIN | {"seed": s, "optim.lr": lr, "val_acc": v}
        for lr, vals in ((0.1, [0.6, 0.6, 0.6]), (1.0, [0.2, 0.3, 0.4]))
        for s, v in reversed(list(enumerate(vals)))  # row order does not pair runs
    ]
    rows.append(PLAIN | {"seed": 9, "optim.lr": 0.1, "val_acc": 0.6})  # no BN partner
    diffs = final_metric(runs_table(rows), None, BN, PLAIN, metric="val_acc", by=["optim.lr"])
    cells = {cell: by_seed(group) for cell, group in diffs.groupby("cell")}
    assert cells == {
        "LR 0.1 (norm batch vs none)": {0: 20.0, 1: 30.0, 2: 10.0},
        "LR 1 (norm batch vs none)": {0: 30.0, 1: 20.0, 2: 10.0},
    }


def test_final_metric_of_a_loss_is_not_scaled_to_points():
    rows = [BN | {"seed": 0, "val_loss": 0.5}, PLAIN | {"seed": 0, "val_loss": 0.75}]
    diffs = final_metric(runs_table(rows), None, BN, PLAIN, metric="val_loss")
    assert by_seed(diffs) == {0: -0.25}


def test_final_metric_over_two_keys_picks_the_best_pair_of_settings():
    rows = []
    for seed in range(2):
        rows.append(BN | {"seed": seed, "optim.lr": 0.1, "model.head_dropout": 0.0, "val_acc": 0.8})
        for lr, p, val in ((0.1, 0.0, 0.50), (0.1, 0.5, 0.55), (1.0, 0.0, 0.52), (1.0, 0.5, 0.6)):
            acc = val + 0.01 * seed
            rows.append(
                PLAIN | {"seed": seed, "optim.lr": lr, "model.head_dropout": p, "val_acc": acc}
            )
    diffs = final_metric(
        runs_table(rows), None, BN, PLAIN, metric="val_acc", over=["optim.lr", "model.head_dropout"]
    )
    assert by_seed(diffs) == {0: 20.0, 1: 19.0}  # the control at lr 1, dropout 0.5
    cell = "val_acc (norm batch vs none, LR 0.1 vs 1, head dropout 0 vs 0.5)"
    assert diffs["cell"].iloc[0] == cell


# --- generalization_gap --------------------------------------------------------------------


def test_generalization_gap_in_eval_mode_leaves_diverged_runs_out():
    rows = []
    for seed in range(3):
        rows.append(BN | {"seed": seed, "train_eval_acc": 0.90, "test_acc": 0.85, "val_acc": 0.85})
        control = PLAIN | {"seed": seed, "train_eval_acc": 1.00, "test_acc": 0.80 - 0.01 * seed}
        control["val_acc"] = 0.8
        rows.append(diverged(control) | {"train_eval_acc": np.nan} if seed == 1 else control)
    diffs = generalization_gap(runs_table(rows), None, BN, PLAIN)
    # BN's gap 5 points; no-BN's 20 + seed; seed 1 diverged: no gap, no pair
    assert by_seed(diffs) == {0: -15.0, 2: -17.0}


# --- steps_to_target -----------------------------------------------------------------------


def test_steps_to_target_at_each_arms_best_lr_with_censoring(tmp_path):
    steps = [8, 16, 24, 32, 40]  # validation every 8 steps; the budget is 40
    runs_and_curves = [
        # BN, lr 0.1: final val 0.80 (its best); lr 1.0 reaches any target at once but is worse
        (BN | {"optim.lr": 0.1, "seed": 0, "val_acc": 0.80}, [0.30, 0.50, 0.70, 0.80, 0.80]),
        (BN | {"optim.lr": 0.1, "seed": 1, "val_acc": 0.80}, [0.50, 0.60, 0.70, 0.80, 0.80]),
        (BN | {"optim.lr": 0.1, "seed": 2, "val_acc": 0.80}, [0.20, 0.30, 0.40, 0.50, 0.80]),
        (BN | {"optim.lr": 1.0, "seed": 0, "val_acc": 0.70}, [0.70] * 5),
        (BN | {"optim.lr": 1.0, "seed": 1, "val_acc": 0.70}, [0.70] * 5),
        (BN | {"optim.lr": 1.0, "seed": 2, "val_acc": 0.70}, [0.70] * 5),
        # no BN, lr 1.0: mean final val (0.70 + 0.38 + chance 0.10) / 3 = 0.3933, its best
        (PLAIN | {"optim.lr": 1.0, "seed": 0, "val_acc": 0.70}, [0.30, 0.35, 0.37, 0.46, 0.70]),
        (PLAIN | {"optim.lr": 1.0, "seed": 1, "val_acc": 0.38}, [0.20, 0.30, 0.35, 0.37, 0.38]),
        # diverged after reaching the target at step 8: censored all the same
        (diverged(PLAIN | {"optim.lr": 1.0, "seed": 2}), [0.50]),
        # no BN, lr 0.1: mean 0.30 < 0.3933, not chosen, though it reaches 30% at step 8
        (PLAIN | {"optim.lr": 0.1, "seed": 0, "val_acc": 0.30}, [0.30] * 5),
        (PLAIN | {"optim.lr": 0.1, "seed": 1, "val_acc": 0.30}, [0.30] * 5),
        (PLAIN | {"optim.lr": 0.1, "seed": 2, "val_acc": 0.30}, [0.30] * 5),
    ]
    runs = runs_table([row for row, _ in runs_and_curves])
    for run_id, (_, curve) in zip(runs["run_id"], runs_and_curves, strict=True):
        rows = [[s, 1, 1.0, acc] for s, acc in zip(steps, curve, strict=False)]
        write_csv(tmp_path, run_id, "evals.csv", EVALS_COLUMNS, rows)
    diffs = steps_to_target(runs, tmp_path, BN, PLAIN, over=["optim.lr"], margin=1.0)
    target = 100 * (0.70 + 0.38 + 0.10) / 3 - 1.0  # the weaker arm's mean at its best, - 1
    assert diffs["cell"].iloc[0].startswith(f"log2 steps to {target:.1f}% val acc")
    assert "(norm batch vs none, LR 0.1 vs 1)" in diffs["cell"].iloc[0]
    # BN reaches 38.3% at steps 16, 8, 24; no BN at 32, never (40), diverged (40)
    expected = {
        0: math.log2(16) - math.log2(32),
        1: math.log2(8) - math.log2(40),
        2: math.log2(24) - math.log2(40),
    }
    assert by_seed(diffs) == pytest.approx(expected)


def test_steps_to_target_with_a_shared_setting_and_a_margin(tmp_path):
    rows = [BN | {"seed": 0, "val_acc": 0.625}, PLAIN | {"seed": 0, "val_acc": 0.5}]
    runs = runs_table(rows)
    curves = {"r00": [0.375, 0.5, 0.625, 0.625], "r01": [0.25, 0.25, 0.37, 0.5]}
    for run_id, curve in curves.items():
        rows = [[s, 1, 1.0, acc] for s, acc in zip((10, 20, 30, 40), curve, strict=True)]
        write_csv(tmp_path, run_id, "evals.csv", EVALS_COLUMNS, rows)
    # target 50 - 12.5 = 37.5 (exact in binary): BN at step 10 (reaching it counts), no BN
    # at step 40 (37% is short of it)
    diffs = steps_to_target(runs, tmp_path, BN, PLAIN, margin=12.5)
    assert by_seed(diffs) == pytest.approx({0: math.log2(10) - math.log2(40)})


# --- largest_trainable ---------------------------------------------------------------------


def test_largest_trainable_lr_in_decades_with_a_floor_below_the_grid():
    rows = []
    for seed in range(3):
        for lr in (0.01, 0.1, 1.0, 10.0):
            # BN trains up to lr 1 (val 0.9; the sweep's best is 0.9); diverges at 10
            bn = BN | {"optim.lr": lr, "seed": seed, "val_acc": 0.9}
            rows.append(diverged(bn) if lr == 10.0 else bn)
            # no BN trains only at 0.01 for seeds 0 and 1; at 0.1 it completes at 0.45, below
            # halfway from chance to the best (0.1 + 0.5 * 0.8 = 0.5); seed 2 trains nowhere
            if lr == 0.01:
                val = 0.8 if seed < 2 else 0.3
                rows.append(PLAIN | {"optim.lr": lr, "seed": seed, "val_acc": val})
            elif lr == 0.1:
                rows.append(PLAIN | {"optim.lr": lr, "seed": seed, "val_acc": 0.45})
            else:
                rows.append(diverged(PLAIN | {"optim.lr": lr, "seed": seed}))
    diffs = largest_trainable(runs_table(rows), None, BN, PLAIN, factor="optim.lr")
    # BN: log10(1) = 0; no BN: log10(0.01) = -2, and seed 2 the floor -3 (one step below)
    assert by_seed(diffs) == pytest.approx({0: 2.0, 1: 2.0, 2: 3.0})
    assert diffs["cell"].unique().tolist() == ["log10 largest trainable LR (norm batch vs none)"]


def test_largest_trainable_on_a_half_decade_grid_floors_half_a_decade_below():
    rows = []
    for lr in (0.01, 0.0316227766, 0.1, 0.316227766):
        rows.append(BN | {"optim.lr": lr, "seed": 0, "val_acc": 0.9 if lr <= 0.1 else 0.2})
        rows.append(PLAIN | {"optim.lr": lr, "seed": 0, "val_acc": 0.15})  # never trains
    diffs = largest_trainable(runs_table(rows), None, BN, PLAIN, factor="optim.lr")
    assert by_seed(diffs) == pytest.approx({0: -1.0 - (-2.5)})


# --- trainable_range and spread ------------------------------------------------------------


def test_trainable_range_counts_the_decades_within_points_of_the_arms_best():
    scales = (0.01, 0.1, 1.0, 10.0, 100.0)
    bn_vals = {0: [0.86, 0.88, 0.90, 0.89, 0.50], 1: [0.70, 0.88, 0.90, 0.89, 0.86]}
    plain_vals = {0: [0.10, 0.30, 0.80, 0.20, 0.10], 1: [0.10, 0.78, 0.80, 0.20, 0.10]}
    rows = []
    for seed in (0, 1):
        for i, scale in enumerate(scales):
            for arm, vals in ((BN, bn_vals), (PLAIN, plain_vals)):
                row = arm | {"model.init_scale": scale, "seed": seed, "val_acc": vals[seed][i]}
                rows.append(row)
    rows[-1] = diverged(rows[-1])  # no BN, seed 1, scale 100: at chance either way
    diffs = trainable_range(runs_table(rows), None, BN, PLAIN, within=5.0)
    # BN seed 0: 0.01..10 (3 decades); seed 1: 0.1..100 (3); no BN: 1 only (0), 0.1..1 (1)
    assert by_seed(diffs) == pytest.approx({0: 3.0, 1: 2.0})


def test_a_half_decade_grid_written_to_six_digits_gives_exact_decades():
    """Gains as the configs write them (3.16228 for 10**0.5): the paired differences are
    exactly 0.5 and 0, so the sign-flip test sees the zeros as ties (unrounded they were
    +-4e-7 decades, counted as effects)."""
    rows = []
    for seed in range(8):
        for scale in (0.316228, 1.0, 3.16228):
            bn_trains = seed < 5 or scale < 3  # 1 decade in seeds 0-4, half a decade after
            plain_trains = scale > 0.5  # half a decade: 1 and 3.16228
            for arm, trains in ((BN, bn_trains), (PLAIN, plain_trains)):
                val = 0.9 if trains else 0.2
                rows.append(arm | {"model.init_scale": scale, "seed": seed, "val_acc": val})
    diffs = trainable_range(runs_table(rows), None, BN, PLAIN, within=5.0)
    assert by_seed(diffs) == {s: 0.5 if s < 5 else 0.0 for s in range(8)}  # exact, no approx


def test_spread_over_named_inits_per_seed():
    rows = []
    for seed in (0, 1):
        for init, bn, plain in (
            ("kaiming", 0.80, 0.70),
            ("xavier", 0.82, 0.50),
            ("normal", 0.81, 0.10),
        ):
            rows.append(BN | {"model.init": init, "seed": seed, "val_acc": bn + 0.01 * seed})
            rows.append(PLAIN | {"model.init": init, "seed": seed, "val_acc": plain})
    rows[-1] = diverged(rows[-1])  # no BN, normal, seed 1: chance, 0.1 as before
    diffs = spread(runs_table(rows), None, BN, PLAIN, over=["model.init"])
    assert by_seed(diffs) == pytest.approx({0: 2.0 - 60.0, 1: 2.0 - 60.0})


# --- probes: probe_mean, gradient_ratio_growth, test_time ----------------------------------


def test_probe_mean_one_minus_cos_over_layers_and_steps_without_the_first_layer(tmp_path):
    runs = runs_table([arm | {"seed": s} for s in (0, 1) for arm in (BN, PLAIN)])
    cos = {  # per run: {step: [cos of the layers after the first]}
        "r00": {0: [0.9, 0.8], 4: [0.7, 0.6]},  # BN seed 0: 1 - cos averages 0.25
        "r01": {0: [0.99, 0.97], 4: [0.95, 0.93]},  # no BN seed 0: 0.04
        "r02": {0: [0.5, 0.5], 4: [0.5, 0.5]},  # BN seed 1: 0.5
        "r03": {0: [0.9, 0.9], 4: [0.9, 0.9]},  # no BN seed 1: 0.1
    }
    for run_id, per_step in cos.items():
        rows = []
        for step, values in per_step.items():
            rows.append([step, "ics_cos", "0.0.conv", 1.0])  # the first layer: 1 by construction
            rows += [
                [step, "ics_cos", layer, v]
                for layer, v in zip(("1.0.conv", "2.1"), values, strict=True)
            ]
            rows.append([step, "ics_l2", "1.0.conv", 123.0])  # another probe: ignored
        write_csv(tmp_path, run_id, "probes.csv", PROBE_COLUMNS, rows)
    diffs = probe_mean(runs, tmp_path, BN, PLAIN, probe="ics_cos", transform="one_minus")
    assert by_seed(diffs) == pytest.approx({0: 0.25 - 0.04, 1: 0.5 - 0.1})
    assert diffs["cell"].iloc[0].startswith("1 - ics_cos")
    plain = probe_mean(runs, tmp_path, BN, PLAIN, probe="ics_cos")
    assert by_seed(plain) == pytest.approx({0: 0.04 - 0.25, 1: 0.1 - 0.5})


def test_probe_mean_takes_each_arm_at_its_best_lr_on_validation(tmp_path):
    """BN is best at LR 0.1 and no BN at 0.01 (mean val acc): each arm's probe comes from
    there, whatever the probe's values at the other LR."""
    val = {("batch", 0.1): 0.8, ("batch", 0.01): 0.7, ("none", 0.1): 0.1, ("none", 0.01): 0.6}
    rows = [
        arm | {"seed": seed, "optim.lr": lr, "val_acc": val[(arm["model.norm"], lr)]}
        for seed in (0, 1)
        for arm in (BN, PLAIN)
        for lr in (0.01, 0.1)
    ]
    runs = runs_table(rows)
    for _, run in runs.iterrows():
        value = 0.1 * run["seed"] + (0.5 if run["optim.lr"] == 0.1 else 0.2)
        write_csv(tmp_path, run["run_id"], "probes.csv", PROBE_COLUMNS, [[0, "p", "a", value]])
    diffs = probe_mean(runs, tmp_path, BN, PLAIN, probe="p", skip_first=False, over=["optim.lr"])
    assert by_seed(diffs) == pytest.approx({0: 0.5 - 0.2, 1: 0.5 - 0.2})
    assert "(norm batch vs none, LR 0.1 vs 0.01)" in diffs["cell"].iloc[0]


def test_gradient_ratio_growth_in_decades_from_the_shallowest_to_the_deepest(tmp_path):
    # log10(first / last) per run: BN 0 at depth 1; at depth 8 +0.2 (relu) and -0.4 (sigmoid);
    # no BN 1 at depth 1; at depth 8 -3 (relu) and -5 (sigmoid), plus 0.1 * seed
    def ratio(norm: str, depth: int, act: str, seed: int) -> float:
        if depth == 2:
            return 99.0  # between the shallowest and the deepest: not used
        if norm == "batch":
            return 0.0 if depth == 1 else {"relu": 0.2, "sigmoid": -0.4}[act]
        return 1.0 if depth == 1 else {"relu": -3.0, "sigmoid": -5.0}[act] + 0.1 * seed

    rows = [
        arm | {"model.depth": d, "model.activation": a, "seed": s}
        for arm in (BN, PLAIN)
        for d in (1, 2, 8)
        for a in ("relu", "sigmoid")
        for s in (0, 1)
    ]
    runs = runs_table(rows)
    for row in runs.to_dict("records"):
        keys = ("model.norm", "model.depth", "model.activation", "seed")
        r = ratio(*(row[k] for k in keys))
        lines = []
        for step, offset in ((0, 0.5), (5, -0.5)):  # the two steps average to r
            lines.append([step, "grad_norm", "0.0.conv", 10 ** (r + offset)])  # first
            lines.append([step, "grad_norm", "1.0.conv", 1e6])  # a middle layer: ignored
            lines.append([step, "grad_norm", "3.3", 1.0])  # last
            lines.append([step, "act_std", "0.0.conv", 7.0])  # another probe: ignored
        write_csv(tmp_path, row["run_id"], "probes.csv", PROBE_COLUMNS, lines)
    relu, sigmoid = {"model.activation": "relu"}, {"model.activation": "sigmoid"}
    diffs = gradient_ratio_growth(runs, tmp_path, BN | relu, PLAIN | relu)
    # ReLU: BN moves |0.2 - 0| = 0.2; no BN |-3 + 0.1 s - 1| = 4 - 0.1 s
    assert by_seed(diffs) == pytest.approx({0: 0.2 - 4.0, 1: 0.2 - 3.9})
    assert "depth 1 to 8" in diffs["cell"].iloc[0]
    # signed, sigmoid: BN -0.4; no BN -6 + 0.1 s: the direction is kept
    signed = gradient_ratio_growth(runs, tmp_path, BN | sigmoid, PLAIN | sigmoid, signed=True)
    assert by_seed(signed) == pytest.approx({0: -0.4 + 6.0, 1: -0.4 + 5.9})
    # at initialization only (step 0, where each ratio is r + 0.5): the same moves here
    init = gradient_ratio_growth(runs, tmp_path, BN | relu, PLAIN | relu, steps="init")
    assert by_seed(init) == pytest.approx({0: 0.2 - 4.0, 1: 0.2 - 3.9})


def test_test_time_compares_batch_statistics_with_running_ones(tmp_path):
    runs = runs_table([arm | {"seed": s} for s in (0, 1, 2) for arm in (BN, PLAIN)])
    for row in runs.itertuples(index=False):
        seed = row.seed
        accs = {"running": 0.80, "precise": 0.81, "batch_b32_shuffled": 0.78 - 0.01 * seed}
        accs["batch_b1_shuffled"] = 0.10
        lines = [[-1, "test_time_acc", layer, v] for layer, v in accs.items()]
        lines.append([-1, "var_shift", "0.0.norm", 1.5])
        write_csv(tmp_path, row.run_id, "probes.csv", PROBE_COLUMNS, lines)
    run = dict(condition="batch_b32_shuffled", reference="running")
    diffs = time_of_test(runs, tmp_path, BN, BN, **run)
    assert by_seed(diffs) == pytest.approx({0: -2.0, 1: -3.0, 2: -4.0})  # only the BN runs
    assert diffs["cell"].unique().tolist() == ["b32 shuffled vs running statistics"]
    single = time_of_test(runs, tmp_path, BN, BN, condition="batch_b1_shuffled")  # vs precise
    assert by_seed(single) == pytest.approx({0: -71.0, 1: -71.0, 2: -71.0})
    precise = time_of_test(runs, tmp_path, BN, BN, condition="precise", reference="running")
    assert by_seed(precise) == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})


# --- difference_in_differences -------------------------------------------------------------


def test_difference_in_differences_nets_out_the_controls_change():
    rows = []
    levels = {  # val accuracy per (norm, batch size)
        ("batch", 128): 0.80,
        ("batch", 8): 0.75,
        ("batch", 2): 0.60,  # BN loses 20 points at batch 2 and 5 at batch 8 ...
        ("group", 128): 0.70,
        ("group", 8): 0.69,
        ("group", 2): 0.65,  # ... group norm 5 and 1: BN's own loss is 15 and 4
    }
    for seed in range(3):
        for (norm, batch), val in levels.items():
            extra = 0.01 * seed if (norm, batch) == ("batch", 2) else 0.0
            row = {"model.norm": norm, "train.batch_size": batch, "seed": seed}
            rows.append(row | {"model.ghost_batch_size": None, "val_acc": val + extra})
        # ghost batches within batch 128: not in the BN arm (ghost_batch_size null)
        ghost = {"model.norm": "batch", "train.batch_size": 128, "model.ghost_batch_size": 2.0}
        rows.append(ghost | {"seed": seed, "val_acc": 0.2})
    runs = runs_table(rows)
    treatment = {"model.norm": "batch", "model.ghost_batch_size": None}
    control = {"model.norm": "group"}
    diffs = difference_in_differences(
        runs, None, treatment, control, factor="train.batch_size", base=128, at=[2, 8]
    )
    cells = {cell: by_seed(group) for cell, group in diffs.groupby("cell", sort=False)}
    assert cells == {
        "batch size 2 vs 128: change minus the control's change (norm batch vs group)": {
            0: -15.0,
            1: -14.0,
            2: -13.0,
        },
        "batch size 8 vs 128: change minus the control's change (norm batch vs group)": {
            0: -4.0,
            1: -4.0,
            2: -4.0,
        },
    }
    one = difference_in_differences(runs, None, treatment, control, at=2)  # a scalar `at`
    assert by_seed(one) == {0: -15.0, 1: -14.0, 2: -13.0}


def test_difference_in_differences_counts_a_diverged_small_batch_run_at_chance():
    rows = [
        {"model.norm": "batch", "train.batch_size": 128, "seed": 0, "val_acc": 0.8},
        diverged({"model.norm": "batch", "train.batch_size": 2, "seed": 0}),
        {"model.norm": "group", "train.batch_size": 128, "seed": 0, "val_acc": 0.7},
        {"model.norm": "group", "train.batch_size": 2, "seed": 0, "val_acc": 0.7},
    ]
    diffs = difference_in_differences(runs_table(rows), None, BN, {"model.norm": "group"})
    assert by_seed(diffs) == {0: (10.0 - 80.0) - 0.0}


def test_gradient_ratio_growth_never_borrows_another_layers_gradient(tmp_path):
    rows = [arm | {"model.depth": d, "seed": 0} for arm in (BN, PLAIN) for d in (1, 8)]
    runs = runs_table(rows)
    for run_id in runs["run_id"]:
        lines = [
            [0, "grad_norm", "0.0.conv", 10.0],  # log10(10 / 1) = 1 at step 0 everywhere
            [0, "grad_norm", "1.0.conv", 1e6],
            [0, "grad_norm", "3.3", 1.0],
        ]
        if run_id == "r03":  # no BN, depth 8: a later step whose first layer is NaN
            lines += [
                [5, "grad_norm", "0.0.conv", np.nan],
                [5, "grad_norm", "1.0.conv", 1e6],
                [5, "grad_norm", "3.3", 1.0],
            ]
        write_csv(tmp_path, run_id, "probes.csv", PROBE_COLUMNS, lines)
    diffs = gradient_ratio_growth(runs, tmp_path, BN, PLAIN)
    # the NaN step has no ratio: every run's ratio is 1, no change with depth in either arm
    # (borrowing the middle layer's 1e6 gives no BN a ratio of (1 + 6) / 2 = 3.5 at depth 8)
    assert by_seed(diffs) == pytest.approx({0: 0.0})


# --- how a cell names its arms ------------------------------------------------------------


def test_a_cell_names_the_arms_by_what_differs_not_by_what_they_share():
    rows = []
    for seed in range(2):
        for placement, lr, val in (("post", 0.1, 0.8), ("post", 1.0, 0.6), ("pre", 0.1, 0.7)):
            config = {"model.norm": "batch", "model.placement": placement, "optim.lr": lr}
            rows.append(config | {"seed": seed, "val_acc": val, "test_acc": val})
    runs = runs_table(rows)
    post = {"model.norm": "batch", "model.placement": "post"}
    pre = {"model.norm": "batch", "model.placement": "pre"}
    # both arms at LR 0.1: the LR is said once; the norm both share is not said at all
    diffs = final_metric(runs, None, post, pre, over=["optim.lr"])
    assert diffs["cell"].unique().tolist() == [
        "test_acc (BN placement post vs pre, LR 0.1 in both)"
    ]
    # an arm of several values, not chosen among: the values its runs have
    either = {"model.placement": "post", "optim.lr": [0.1, 1.0]}
    diffs = final_metric(runs, None, either, {"model.placement": "pre"})
    assert diffs["cell"].unique().tolist() == [
        "test_acc (BN placement post vs pre, LR 0.1 or 1 vs 0.1)"
    ]
    # arms that differ in nothing the runs record: the cell alone
    diffs = final_metric(runs, None, post, post)
    assert diffs["cell"].unique().tolist() == ["test_acc"]
