"""The benchmark compares like with like: same data, same model, same loss on the same batch;
its anchors train the same model, and its ratios are taken round by round."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import bnbench, fake_fashion_mnist

from bnbench.bench.limit import training_flops
from bnbench.bench.loops import (
    BNBENCH,
    DEFAULT,
    PLAIN,
    TUTORIAL,
    BenchOptions,
    make_loops,
    quick,
    reference_dataset,
    torchvision_root,
    warm_up,
)
from bnbench.bench.throughput import round_row, run_bench, steps_to_repay, table, thread_counts
from bnbench.config.machine import available_cores
from bnbench.config.schema import ModelConfig
from bnbench.train import data
from bnbench.train.model import build_model

CPU = torch.device("cpu")


def small_options(tmp_path, **changes) -> BenchOptions:
    """Quick rounds of a small CNN on fake Fashion-MNIST files, everything under tmp_path."""
    fake_fashion_mnist(tmp_path / "fm", n_train=600)
    opts = BenchOptions(
        batch_size=32,
        norms=["batch"],
        widths=[8, 16],
        out_dir=str(tmp_path / "out"),
        data_dir=str(tmp_path / "fm"),
        torchvision_dir=str(tmp_path / "tv"),
    )
    return quick(BenchOptions(**{**vars(opts), **changes}))


def test_reference_and_runner_give_the_same_loss_on_the_same_first_batch(tmp_path):
    fake_fashion_mnist(tmp_path / "fm", n_train=64)
    reference = reference_dataset(torchvision_root(str(tmp_path / "fm"), tmp_path / "tv"))
    data.load_raw.cache_clear()
    runner_x, runner_y, *_ = data.load_raw("fashion_mnist", str(tmp_path / "fm"), 0, 0, 0)

    batch = [reference[i] for i in range(16)]
    ref_x = torch.stack([x for x, _ in batch])
    ref_y = torch.tensor([y for _, y in batch])
    assert torch.equal(ref_y, runner_y[:16])
    torch.testing.assert_close(ref_x, runner_x[:16])

    model = build_model(ModelConfig(norm="batch"), 1, 10, seed=0)
    ref_loss = F.cross_entropy(model(ref_x), ref_y)
    fast = model.to(memory_format=torch.channels_last)
    runner_loss = F.cross_entropy(
        fast(runner_x[:16].contiguous(memory_format=torch.channels_last)), runner_y[:16]
    )
    torch.testing.assert_close(runner_loss, ref_loss)


def test_training_flops_match_a_hand_count_for_one_conv():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.Flatten())
    # forward: 2 FLOPs per multiply-add; backward of a first layer: the weight gradient only
    # (the input needs no gradient), as much again.
    per_image = training_flops(model, batch=2, device=torch.device("cpu"))
    assert per_image == 2 * (2 * 28 * 28 * 4 * 9)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_the_plain_loop_trains_the_same_model_as_bnbenchs_loop(tmp_path, norm):
    opts = small_options(tmp_path, norms=[norm])
    mine, plain, tutorial = make_loops(opts, norm, CPU)
    assert [mine.name, plain.name, tutorial.name] == [BNBENCH, PLAIN, TUTORIAL]
    # the same CNN: the same parameters to begin with and the same FLOPs per image
    start = {key: value.clone() for key, value in mine.model.state_dict().items()}
    for other in (plain, tutorial):
        for key, value in other.model.state_dict().items():
            assert torch.equal(value, start[key]), key
    flops = {training_flops(copy.deepcopy(loop.model), 4, CPU) for loop in (mine, plain, tutorial)}
    assert len(flops) == 1
    # the same data in the same order: the same losses and weights within float32 rounding
    for loop in (mine, plain):
        warm_up(loop)
        loop.time_steps()
    assert len(mine.mean_losses) == 3
    torch.testing.assert_close(plain.mean_losses, mine.mean_losses, rtol=1e-5, atol=1e-6)
    trained = plain.model.state_dict()
    for key, value in mine.model.state_dict().items():
        torch.testing.assert_close(trained[key], value, rtol=1e-4, atol=1e-6, msg=key)
    assert not torch.equal(trained["0.0.conv.weight"], start["0.0.conv.weight"])


def test_a_quick_bench_records_every_loop_in_every_round(tmp_path):
    opts = small_options(tmp_path, norms=["batch", "none"])
    lines = []
    summary = run_bench(opts, log=lines.append)
    assert len(lines) == 2 * opts.rounds and "x plain" in lines[0]
    with open(tmp_path / "out" / "bench.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(r["norm"], r["round"], r["loop"]) for r in rows] == [
        (norm, str(round_), loop)
        for norm in ("batch", "none")
        for round_ in (1, 2)
        for loop in (BNBENCH, PLAIN, TUTORIAL)
    ]
    assert {r["threads"] for r in rows} == {"1"}
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["rows"][0]["loop"] == BNBENCH
    batch, plain_net = summary["settings"]
    assert (batch["norm"], batch["threads"]) == ("batch", 1) and plain_net["norm"] == "none"
    for key in ("ratio_to_plain", "ratio_to_tutorial", "fraction_of_gemm", "gemm_gflops"):
        assert len(batch[key]["per_round"]) == opts.rounds
        assert batch[key]["min"] <= batch[key]["median"] <= batch[key]["max"]
    assert set(batch["images_per_s"]) == {BNBENCH, PLAIN, TUTORIAL}
    assert "ratio_to_bnbench_default" not in batch
    # FlopCounterMode counts the convolutions and the head, not BN's elementwise passes
    assert batch["flops_per_image"] == plain_net["flops_per_image"] > 0


def test_with_a_switch_on_the_default_loop_runs_beside_it(tmp_path):
    summary = run_bench(small_options(tmp_path, fused_optimizer=True), log=lambda line: None)
    (setting,) = summary["settings"]
    assert set(setting["images_per_s"]) == {BNBENCH, DEFAULT, PLAIN, TUTORIAL}
    assert len(setting[f"ratio_to_{DEFAULT}"]["per_round"]) == 2 and "steps_to_repay" in setting
    columns, (row,) = table(summary)
    assert columns[-2:] == ["x default", "repaid after steps"] and len(row) == len(columns)


def test_each_round_is_divided_by_the_same_rounds_references_and_gemm():
    measured = {BNBENCH: 200.0, PLAIN: 100.0, TUTORIAL: 50.0}
    row = round_row(1, "batch", 3, BNBENCH, measured, flops=2e6, gemm=0.8)
    assert row["ratio_to_plain"] == 2.0 and row["ratio_to_tutorial"] == 4.0
    assert row["gflops"] == pytest.approx(0.4) and row["fraction_of_gemm"] == pytest.approx(0.5)
    assert f"ratio_to_{DEFAULT}" not in row


def test_a_switchs_one_off_cost_is_repaid_after_the_steps_it_saves():
    images = {DEFAULT: {"median": 100.0}, BNBENCH: {"median": 200.0}}  # 5 ms an image saved
    assert steps_to_repay(images, {BNBENCH: 11.0, DEFAULT: 1.0}, batch=10) == pytest.approx(200)
    slower = {DEFAULT: {"median": 200.0}, BNBENCH: {"median": 100.0}}
    assert steps_to_repay(slower, {BNBENCH: 1.0, DEFAULT: 1.0}, batch=10) is None


def test_the_bench_runs_at_one_thread_and_at_every_core():
    assert thread_counts(BenchOptions()) == list(dict.fromkeys([1, available_cores()]))
    assert thread_counts(BenchOptions(threads=[2, 2, 1])) == [2, 1]


def test_bench_refuses_widths_that_are_not_positive_integers(tmp_path):
    result = bnbench("bench", "--widths", "16,x", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "invalid --widths='16,x'" in result.stderr


@pytest.mark.slow
def test_bench_command_writes_its_figures(tmp_path):
    if data.find_fashion_mnist(None) is None:
        pytest.skip("Fashion-MNIST not installed (make data)")
    args = ["bench", "--quick", "--norm", "batch", "--out", str(tmp_path)]
    out = bnbench(*args, cwd=tmp_path)
    assert "x plain" in out.stdout and "% of GEMM" in out.stdout
    summary = json.loads((tmp_path / "bench.json").read_text())
    (setting,) = summary["settings"]
    assert setting["ratio_to_plain"]["median"] > 0 and setting["gemm_gflops"]["median"] > 0
    assert 0 < setting["fraction_of_gemm"]["median"]
    header = "threads,norm,round,loop,images_per_s,gflops,gemm_gflops,fraction_of_gemm"
    assert (tmp_path / "bench.csv").read_text().startswith(header)


def test_the_sweep_bench_times_the_same_runs_both_ways_and_charges_old_its_steps(tmp_path):
    from bnbench.bench.sweep import OLD_EVAL, commands
    from bnbench.claims.registry import get_claim

    claims = [get_claim("placement"), get_claim("regularization")]
    ways = commands(tmp_path, claims, seeds=2)
    old = [" ".join(command[3:]) for command in ways["old"]]
    runs = [c for c in old if c.startswith("run -m")]
    # every experiment file of the claims, extra cells before the main grids (their plans kept)
    assert [c.split()[2] for c in runs] == [
        "experiment=claim_regularization_no_bn",
        "experiment=claim_placement",
        "experiment=claim_regularization",
    ]
    assert all(" ".join(OLD_EVAL) in c and "seed=0,1" in c for c in runs)
    assert [c for c in old if c.startswith("report")] == [
        f"report {tmp_path / 'old' / 'claim_placement'}",
        f"report {tmp_path / 'old' / 'claim_regularization'}",
    ]
    # a verdict where one run -m plans the sweep whole (claim 4's has an extra cell)
    assert [c for c in old if c.startswith("claims verdict")] == [
        f"claims verdict placement {tmp_path / 'old'}"
    ]
    (new,) = ways["new"]
    assert new[3:7] == ["claims", "run", "placement", "regularization"]
    assert "seed=0,1" in new and f"results_dir={tmp_path / 'new'}" in new
    assert all(any(a == "device=auto" for a in c) for c in [new, *ways["old"][:3]])
    on_gpu = commands(tmp_path, claims, seeds=1, device="cuda")
    assert all("device=cuda" in c for c in on_gpu["new"] + on_gpu["old"] if "run" in c)


def test_the_sweep_breakdown_splits_the_workers_time_into_parts_that_add_up(tmp_path):
    from bnbench.bench.sweep import breakdown

    timings = [
        {"setup_s": 1.0, "train_s": 6.0, "eval_s": 2.0, "probes_s": 0.0},
        {"setup_s": 1.0, "train_s": 10.0, "eval_s": 2.0, "probes_s": 1.0},
    ]
    for n, timing in enumerate(timings):
        run = tmp_path / f"claim_{n % 2}" / "runs" / f"run{n}"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"timing": timing}))
    result = breakdown(tmp_path, wall=15.0, workers=2)  # 30 worker-seconds
    assert result["runs"] == 2 and result["runs_per_hour"] == pytest.approx(480)
    assert result["seconds"]["train_s"] == 16.0 and result["seconds"]["outside_s"] == 7.0
    assert result["fractions"]["train"] == pytest.approx(16 / 30)
    assert sum(result["fractions"].values()) == pytest.approx(1.0)


def test_the_sweep_bench_refuses_an_unknown_claim(tmp_path):
    result = bnbench("bench", "--sweep", "--claim", "nonsense", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "unknown claim 'nonsense'" in result.stderr
