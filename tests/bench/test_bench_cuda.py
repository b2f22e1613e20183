"""`bnbench bench --device cuda`: the same loops and rounds on a GPU, the GEMM timed between CUDA
events. Skipped without a CUDA device (tests marked `cuda`)."""

from __future__ import annotations

import pytest
import torch
from conftest import fake_fashion_mnist

from bnbench.bench.limit import cuda_gemm_gflops
from bnbench.bench.loops import BNBENCH, DEFAULT, PLAIN, TUTORIAL, BenchOptions, make_loops, quick
from bnbench.bench.throughput import run_bench
from bnbench.config.schema import Config
from bnbench.train.runtime import setup_runtime

pytestmark = pytest.mark.cuda


def cuda_options(tmp_path, **changes) -> BenchOptions:
    fake_fashion_mnist(tmp_path / "fm", n_train=600)
    opts = BenchOptions(
        device="cuda",
        norms=["batch"],
        out_dir=str(tmp_path / "out"),
        data_dir=str(tmp_path / "fm"),
        torchvision_dir=str(tmp_path / "tv"),
        **changes,
    )
    return quick(opts)


def test_the_cuda_matmul_ceiling_is_a_plausible_gpu_rate():
    setup_runtime(Config(device="cuda"))
    rates = [cuda_gemm_gflops(torch.device("cuda"), size=2048, repeats=20) for _ in range(2)]
    assert all(1_000 < rate < 200_000 for rate in rates)  # fp32 GFLOP/s of any recent GPU
    assert max(rates) / min(rates) < 1.5  # events around many GEMMs: a steady rate


def test_bench_on_cuda_runs_every_loop_below_the_gemm_rate(tmp_path):
    summary = run_bench(cuda_options(tmp_path, fused_optimizer=True), log=lambda line: None)
    assert summary["device"] == torch.cuda.get_device_name()
    (setting,) = summary["settings"]
    assert set(setting["images_per_s"]) == {BNBENCH, DEFAULT, PLAIN, TUTORIAL}
    assert 0 < setting["fraction_of_gemm"]["max"] < 1
    assert (tmp_path / "out" / "bench.json").exists()


def test_on_cuda_the_plain_loop_trains_as_bnbenchs_loop(tmp_path):
    opts = cuda_options(tmp_path, batch_size=32, widths=[8, 16])
    device = setup_runtime(Config(device="cuda"))  # fp32, deterministic cuDNN
    mine, plain, _ = make_loops(opts, "batch", device)
    for loop in (mine, plain):
        loop.time_steps()
        loop.time_steps()
    torch.testing.assert_close(plain.mean_losses, mine.mean_losses, rtol=1e-5, atol=1e-6)
