"""The benchmark compares like with like: same data, same model, same loss on the same batch."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import bnbench, fake_fashion_mnist

from bnbench.bench.throughput import reference_dataset, torchvision_root, training_flops
from bnbench.config.schema import ModelConfig
from bnbench.train import data
from bnbench.train.model import build_model


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


@pytest.mark.slow
def test_bench_command_writes_its_figures(tmp_path):
    if data.find_fashion_mnist(None) is None:
        pytest.skip("Fashion-MNIST not installed (make data)")
    args = ["bench", "--rounds", "1", "--steps", "2", "--norm", "batch", "--out", str(tmp_path)]
    out = bnbench(*args, cwd=tmp_path)
    assert "ratio" in out.stdout and "% of matmul" in out.stdout
    summary = json.loads((tmp_path / "bench.json").read_text())
    assert summary["batch"]["ratio_median"] > 0 and summary["matmul_gflops"] > 0
    assert 0 < summary["batch"]["fraction_of_matmul"]
    assert (tmp_path / "bench.csv").read_text().startswith("round,norm,loop,images_per_s")


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
