"""Claim verdicts on constructed tables: clear effect, reversed, overlapping, missing runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, bnbench

from bnbench.claims import (
    MEASURES,
    UnknownClaim,
    get_claim,
    higher_lr,
    init_robustness,
    judge,
    load_claims,
    overall,
    small_batch,
    verdict,
)


def pairs(diffs_by_cell: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"cell": cell, "seed": s, "diff": d}
        for cell, ds in diffs_by_cell.items()
        for s, d in enumerate(ds)
    ]
    return pd.DataFrame(rows)


def test_clear_effect_in_the_claimed_direction_is_supported():
    cells = judge(pairs({"a": [2.1, 1.9, 2.3, 2.0, 2.2]}), "higher")
    assert cells["verdict"].tolist() == ["supported"] and overall(cells) == "supported"
    assert cells.loc[0, "lo"] > 0 and cells.loc[0, "n"] == 5


def test_reversed_effect_is_contradicted():
    cells = judge(pairs({"a": [-2.1, -1.9, -2.3, -2.0, -2.2]}), "higher")
    assert overall(cells) == "contradicted"
    assert overall(judge(pairs({"a": [2.1, 1.9, 2.3, 2.0, 2.2]}), "lower")) == "contradicted"


def test_overlapping_zero_is_inconclusive():
    cells = judge(pairs({"a": [1.0, -1.2, 0.5, -0.4, 0.2]}), "higher")
    assert overall(cells) == "inconclusive" and cells.loc[0, "lo"] < 0 < cells.loc[0, "hi"]


def test_mixed_cells_are_inconclusive_and_holm_adjusts_across_cells():
    cells = judge(
        pairs({"up": [2.0, 2.1, 1.9, 2.2, 2.05], "down": [-2.0, -2.1, -1.9, -2.2, -2.05]}), "higher"
    )
    assert set(cells["verdict"]) == {"supported", "contradicted"}
    assert overall(cells) == "inconclusive"
    assert (cells["p_holm"] >= cells["p"]).all()


def test_a_borderline_cell_loses_significance_after_holm():
    # p just under 0.05 alone; with a second, null cell Holm doubles the smallest p
    borderline = [0.5, 1.5, 0.4, 1.0, 0.3]
    alone = judge(pairs({"a": borderline}), "higher")
    assert alone.loc[0, "p"] < 0.05 and overall(alone) == "supported"
    with_null = judge(pairs({"a": borderline, "b": [0.5, -0.5, 0.3, -0.3, 0.0]}), "higher")
    assert with_null.loc[0, "p_holm"] > 0.05 and overall(with_null) == "inconclusive"


def runs_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["run_id"] = [f"r{i}" for i in range(len(table))]
    table["chance_acc"] = 0.1
    table["dataset.name"] = "fashion_mnist"
    return table


def test_higher_lr_measures_the_largest_lr_that_trains_in_decades():
    rows = []
    for seed in range(3):
        for lr in (0.001, 0.01, 0.1, 1.0):
            bn_ok, plain_ok = lr <= 1.0, lr <= 0.01
            rows.append(
                {
                    "model.norm": "batch",
                    "optim.lr": lr,
                    "seed": seed,
                    "status": "completed",
                    "val_acc": 0.8 if bn_ok else 0.1,
                }
            )
            rows.append(
                {
                    "model.norm": "none",
                    "optim.lr": lr,
                    "seed": seed,
                    "status": "completed" if plain_ok else "diverged",
                    "val_acc": 0.8 if plain_ok else np.nan,
                }
            )
    measured = higher_lr(runs_table(rows), sweep=None)
    largest = measured[measured["cell"].str.startswith("largest")]
    assert largest["diff"].tolist() == [2.0, 2.0, 2.0]  # 1.0 vs 0.01: two decades
    assert overall(judge(measured, "higher")) == "supported"


def test_init_robustness_compares_spread_across_scales():
    rows = []
    for seed in range(4):
        for scale in (0.001, 0.1, 1.0):
            rows.append(
                {
                    "model.norm": "batch",
                    "model.init_scale": scale,
                    "seed": seed,
                    "status": "completed",
                    "val_acc": 0.85 + 0.001 * seed,
                }
            )
            rows.append(
                {
                    "model.norm": "none",
                    "model.init_scale": scale,
                    "seed": seed,
                    "status": "completed",
                    "val_acc": 0.1 if scale < 0.1 else 0.8,
                }
            )
    measured = init_robustness(runs_table(rows), sweep=None)
    assert measured["diff"].round(6).tolist() == [-70.0] * 4  # 0 vs 70 points of spread
    assert overall(judge(measured, "lower")) == "supported"


def test_small_batch_nets_out_group_norms_change_and_pairs_ghost_batches():
    rows = []
    for seed in range(4):
        wobble = 0.001 * seed  # seeds differ, and the small-batch BN arms by twice as much
        for norm, batch, ghost, acc in [
            ("batch", 128, None, 0.80),
            ("batch", 2, None, 0.60),  # BN loses 20 points at batch 2 ...
            ("group", 128, None, 0.70),
            ("group", 2, None, 0.65),  # ... group norm 5: BN's own loss is 15
            ("batch", 128, 2.0, 0.75),  # ghost batch 2 within batch 128: 5 points
        ]:
            rows.append(
                {
                    "model.norm": norm,
                    "train.batch_size": batch,
                    "optim.lr": 0.05 * batch / 128,  # scaled with the batch, as the arms do
                    "model.ghost_batch_size": ghost,
                    "seed": seed,
                    "status": "completed",
                    "val_acc": acc + wobble * (2 if ghost or (norm, batch) == ("batch", 2) else 1),
                }
            )
    measured = small_batch(runs_table(rows), sweep=None)
    by_cell = measured.groupby("cell")["diff"].apply(lambda d: d.round(6).tolist())
    extra = [0.0, 0.1, 0.2, 0.3]  # points: the BN arms' extra wobble
    did = by_cell["batch 2 vs 128 (LR scaled), BN's change - group norm's"]
    assert did == [round(-15 + e, 6) for e in extra]
    assert by_cell["ghost batch 2 vs whole batch of 128"] == [round(-5 + e, 6) for e in extra]
    assert overall(judge(measured, "lower")) == "supported"


def test_the_small_batch_arms_set_batch_lr_and_norm_together():
    from bnbench.plan import expand

    plan = expand(["experiment=claim_small_batch", "profile=quick"], multirun=True)
    arms = {
        (p.config.model.norm, p.config.train.batch_size, p.config.model.ghost_batch_size)
        for p in plan
    }
    assert len(plan) == 3 * len(arms) == 33
    assert ("group", 2, None) in arms and ("batch", 128, 2) in arms
    for p in plan:  # linear scaling: 0.05 at batch 128
        assert p.config.optim.lr == pytest.approx(0.05 * p.config.train.batch_size / 128)


def test_the_init_arms_add_kaiming_and_xavier_to_the_gaussian_scales():
    from bnbench.plan import expand

    plan = expand(["experiment=claim_init_robustness", "profile=quick"], multirun=True)
    inits = {(p.config.model.init, p.config.model.init_scale) for p in plan}
    assert len(plan) == 2 * 7 * 3  # norm x init x seed
    assert {("kaiming_normal", 1.0), ("xavier_normal", 1.0), ("normal", 0.0001)} <= inits


def test_every_claim_has_a_measure_and_a_quick_sweep_of_three_seeds():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bnbench.config import register_configs
    from bnbench.plan import CONF_DIR

    claims = load_claims()
    assert list(claims) == list(MEASURES) and len(claims) == 10
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for claim in claims.values():
            overrides = [f"experiment={claim.experiment}", "profile=quick"]
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
            assert str(cfg.hydra.sweeper.params.seed) == "0,1,2", claim.name
            assert cfg.sweep == claim.experiment and claim.direction in ("higher", "lower")
    GlobalHydra.instance().clear()


def test_missing_runs_give_incomplete_not_a_verdict(tmp_path):
    result = verdict("placement", tmp_path, "quick")
    assert result.status == "incomplete" and result.n_done == 0 and result.n_planned == 12
    assert "make claim-placement PROFILE=quick" in result.sentence


def test_unknown_claim_names_the_known_ones():
    with pytest.raises(UnknownClaim, match="unknown claim 'nope'; known: faster-convergence"):
        get_claim("nope")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(load_claims()))
def test_every_claim_end_to_end_on_a_tiny_sweep(tmp_path, name):
    """Each claim's experiment through the real CLI on the tiny config, then its verdict."""

    claim = get_claim(name)
    args = [
        "run",
        "-m",
        f"experiment={claim.experiment}",
        "profile=quick",
        f"results_dir={tmp_path}",
        *TINY,
    ]
    bnbench(*args, cwd=tmp_path)
    result = verdict(name, tmp_path, "quick", tuple(TINY))
    assert result.status in ("supported", "contradicted", "inconclusive")
    assert result.n_done == result.n_planned and (result.cells["n"] == 3).all()
    assert name.split("-")[0] in result.sentence or claim.metric[:20] in result.sentence
    # Without being told, the verdict plans the sweep as it was launched (multirun.yaml).
    inferred = verdict(name, tmp_path)
    assert (inferred.profile, inferred.status) == ("quick", result.status)
    pd.testing.assert_frame_equal(inferred.cells, result.cells)


def test_a_results_root_report_indexes_the_claims_verdicts(tmp_path):
    """`bnbench report ROOT` reports each sweep and writes an index with each claim's verdict."""
    from bnbench.report import build_report

    claim = get_claim("placement")
    args = ["run", "-m", f"experiment={claim.experiment}", "profile=quick", *TINY]
    bnbench(*args, f"results_dir={tmp_path}", cwd=tmp_path)
    bnbench("run", *TINY, f"results_dir={tmp_path}", cwd=tmp_path)  # sweep `default`
    result = build_report(tmp_path)
    status = verdict("placement", tmp_path).status
    index = (tmp_path / "REPORT.md").read_text()
    assert f"| 9. placement | {status} |" in index
    assert "claim_placement/REPORT.md" in index and "default/REPORT.md" in index
    assert result.n_runs == 13 and (tmp_path / "claim_placement" / "figures" / "claim.png").exists()
    assert (tmp_path / "default" / "REPORT.md").exists()
