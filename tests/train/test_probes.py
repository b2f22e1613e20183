"""Probes measure what they claim, and never change the run they observe."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnbench.config.schema import PROBES, DatasetConfig, ModelConfig, ProbeConfig
from bnbench.train.data import load_splits
from bnbench.train.model import build_model
from bnbench.train.probe_models import (
    batch_stat_model,
    eval_copy,
    precise_bn_model,
    predict,
    training_copy,
)
from bnbench.train.probes import PROBE_COLUMNS, final_probes, step_probes

SPLITS = load_splits(DatasetConfig(name="synthetic", val_size=64))  # 8x8, 4 classes, 448 train
X, Y = SPLITS.train_x[:64], SPLITS.train_y[:64]  # the probe batch
STEP = ["ics", "percentiles", "layer_stats", "one_step"]
FINAL = ["test_time", "variance_shift"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and do not fight a concurrent test run for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**changes) -> nn.Sequential:
    return build_model(ModelConfig(widths=[4, 8], **changes), 1, 4, seed=0)


def trained(**changes) -> nn.Sequential:
    """A tiny model after a few epochs of SGD, so BN running statistics mean something."""
    return copy.deepcopy(_trained(tuple(changes.items())))


@functools.cache
def _trained(changes: tuple, epochs: int = 5) -> nn.Sequential:
    model = tiny(**dict(changes))
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(SPLITS.train_y))
        for start in range(0, len(order) - 31, 32):
            sgd_step(model, optimizer, order[start : start + 32])
    return model


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, idx: torch.Tensor) -> None:
    loss = F.cross_entropy(model(SPLITS.train_x[idx]), SPLITS.train_y[idx])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def values(rows: list[dict], probe: str) -> dict[str, float]:
    return {r["layer"]: r["value"] for r in rows if r["probe"] == probe}


@pytest.mark.parametrize("norm", ["batch", "noisy_batch"])
def test_ics_is_zero_below_the_first_layer_and_at_lr_zero(norm):
    # Dropout and BN noise on: G and G' must still see the same masks and noise.
    model = tiny(norm=norm, dropout=0.3, head_dropout=0.2)
    moved = step_probes(ProbeConfig(names=["ics"]), model, 0.1, X, Y, step=0)
    l2, cos = values(moved, "ics_l2"), values(moved, "ics_cos")
    assert list(l2) == list(cos) == ["0.0.conv", "1.0.conv", "2.3"]
    assert l2["0.0.conv"] == 0.0 and cos["0.0.conv"] == pytest.approx(1.0, abs=1e-12)
    assert l2["1.0.conv"] > 0 and l2["2.3"] > 0 and cos["2.3"] < 1

    still = step_probes(ProbeConfig(names=["ics"]), model, 0.0, X, Y, step=0)
    assert set(values(still, "ics_l2").values()) == {0.0}
    assert values(still, "ics_cos") == pytest.approx(dict.fromkeys(l2, 1.0), abs=1e-12)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_the_ics_update_is_the_step_the_optimizer_would_take(name):
    """G' moves the lower layers by the run's actual next update (momentum buffer, weight
    decay, Adam's moments), computed without touching the optimizer."""
    from bnbench.config.schema import OptimConfig
    from bnbench.train.loop import make_optimizer
    from bnbench.train.probe_models import next_update

    model = tiny(norm="batch")
    optimizer = make_optimizer(OptimConfig(name=name, lr=0.05, weight_decay=1e-3), model)
    for start in (0, 32):  # two real steps: the momentum buffers / moments are not empty
        sgd_step(model, optimizer, torch.arange(start, start + 32))
    state = copy.deepcopy(optimizer.state_dict())
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = F.cross_entropy(model(X), Y)
    grads = dict(zip(params, torch.autograd.grad(loss, list(model.parameters())), strict=True))

    update = next_update(optimizer, params, grads, lr=0.02)
    after = optimizer.state_dict()
    assert after["param_groups"][0]["lr"] == 0.05  # the optimizer itself is left as found
    for index, entry in state["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(after["state"][index][key], value, rtol=0, atol=0)
    for group in optimizer.param_groups:
        group["lr"] = 0.02
    for p, g in zip(model.parameters(), grads.values(), strict=True):
        p.grad = g
    optimizer.step()  # the real step, after next_update: it must not have moved the state
    for n, p in model.named_parameters():
        torch.testing.assert_close(update[n], p.detach() - params[n], rtol=1e-5, atol=1e-7)
    assert not torch.equal(update["0.0.conv.weight"], -0.02 * grads["0.0.conv.weight"])
    assert next_update(None, params, grads, lr=0.02)["2.3.bias"].equal(-0.02 * grads["2.3.bias"])


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},  # params and buffers
        "grads": {k: p.grad.clone() for k, p in model.named_parameters()},
        "modes": [m.training for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_step_probes_leave_the_model_and_rng_as_found(mode):
    model = tiny(norm="noisy_batch", dropout=0.3, dropout_position="before_norm")
    sgd_step(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.arange(32))  # grads set
    model.train(mode == "train")
    before = snapshot(model)
    rows = step_probes(ProbeConfig(names=STEP, lrs=[0.1, 3.0]), model, 0.1, X, Y, step=0)
    after = snapshot(model)
    assert rows
    for key in ("state", "grads"):
        assert before[key].keys() == after[key].keys()
        for name in before[key]:
            assert torch.equal(before[key][name], after[key][name]), name
    assert before["modes"] == after["modes"] and torch.equal(before["rng"], after["rng"])


def test_training_with_probes_matches_training_without():
    runs = []
    for with_probes in (False, True):
        model = tiny(dropout=0.3, head_dropout=0.2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        torch.manual_seed(0)
        for step in range(4):
            if with_probes:
                step_probes(ProbeConfig(names=STEP), model, 0.05, X, Y, step)
            sgd_step(model, optimizer, torch.arange(step * 32, (step + 1) * 32))
        runs.append(model.state_dict())
    for name, tensor in runs[0].items():
        assert torch.equal(tensor, runs[1][name]), name


def test_precise_stats_are_the_exact_moments_of_each_bn_input():
    model = trained()
    running = model[1][0].norm.running_var.clone()
    precise = precise_bn_model(model, SPLITS.train_x, chunk=100)  # 448: chunks of 100 and 48
    # The first BN's input is the first conv's output over the whole training split.
    first = model[0][0].conv(SPLITS.train_x).detach().double()
    bn = precise[0][0].norm
    torch.testing.assert_close(bn.running_mean, first.mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(bn.running_var, first.var(dim=(0, 2, 3)).float())  # unbiased
    # The second BN's input, with the first BN already using its precise statistics.
    with torch.no_grad():
        second = precise[1][0].conv(precise[0](SPLITS.train_x)).double()
    bn = precise[1][0].norm
    torch.testing.assert_close(bn.running_mean, second.mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(bn.running_var, second.var(dim=(0, 2, 3)).float())
    assert torch.equal(model[1][0].norm.running_var, running)  # the trained model untouched


def test_the_bn_before_the_classifier_gets_precise_and_batch_statistics_too():
    model = trained(head_norm=True)
    precise = precise_bn_model(model, SPLITS.train_x, chunk=100)
    with torch.no_grad():
        pooled = precise[-1][1](precise[-1][0](precise[:-1](SPLITS.train_x))).double()
    head_bn = precise[-1][2]
    torch.testing.assert_close(head_bn.running_mean, pooled.mean(dim=0).float())
    torch.testing.assert_close(head_bn.running_var, pooled.var(dim=0).float())
    rows = final_probes(ProbeConfig(names=FINAL, test_batch_sizes=[8]), model, SPLITS, step=9)
    assert values(rows, "var_shift").keys() == {"0.0.norm", "1.0.norm", "2.2"}
    assert 0 < values(rows, "test_time_acc")["batch_b8_shuffled"] <= 1


def test_batch_statistics_at_test_batch_one_matter_only_with_bn():
    cfg = ProbeConfig(names=["test_time"], test_batch_sizes=[1, 64])
    x = SPLITS.test_x
    bn = trained(norm="batch")
    accs = values(final_probes(cfg, bn, SPLITS, step=70), "test_time_acc")
    assert accs["batch_b1_shuffled"] != accs["running"]
    assert accs["batch_b1_shuffled"] == accs["batch_b1_sorted"]  # one example: order is moot
    assert not torch.equal(predict(batch_stat_model(bn, 1), x), predict(eval_copy(bn), x))

    plain = trained(norm="none", dropout=0.3)  # dropout must be off in both
    accs = values(final_probes(cfg, plain, SPLITS, step=70), "test_time_acc")
    assert len(set(accs.values())) == 1  # running, precise and every batch layout agree
    assert torch.equal(predict(batch_stat_model(plain, 1), x), predict(eval_copy(plain), x))


@pytest.mark.parametrize("n", [1, 3, 64])
def test_batch_statistics_match_train_mode_bn_on_each_test_batch(n):
    # One forward pass over a chunk of several test batches (256 = 85 * 3 + 1 at n=3: a
    # partial last batch) gives what train-mode BN gives on each test batch on its own.
    model = trained(dropout=0.3, head_dropout=0.2)
    reference = training_copy(model)  # batch statistics, running ones never updated
    for module in reference.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    x, running = SPLITS.test_x, model[0][0].norm.running_mean.clone()
    with torch.no_grad():
        expected = torch.cat([reference(x[i : i + n]) for i in range(0, len(x), n)])
    batch_model = batch_stat_model(model, n)
    torch.testing.assert_close(predict(batch_model, x, batch_size=10 * n), expected)
    assert torch.equal(model[0][0].norm.running_mean, running)  # the model itself untouched


def test_test_time_reports_every_layout():
    cfg = ProbeConfig(names=["test_time"], test_batch_sizes=[1, 8])
    accs = values(final_probes(cfg, tiny(), SPLITS, step=0), "test_time_acc")
    assert list(accs) == [
        "running",
        "precise",
        "batch_b1_shuffled",
        "batch_b1_sorted",
        "batch_b8_shuffled",
        "batch_b8_sorted",
    ]
    assert all(0 <= a <= 1 for a in accs.values())


def test_one_step_at_lr_zero_is_exactly_one():
    model = tiny(norm="noisy_batch", dropout=0.3, head_dropout=0.2)
    cfg = ProbeConfig(names=["one_step"], lrs=[0.0, 0.1, 1e4])
    ratios = values(step_probes(cfg, model, 0.1, X, Y, step=0), "one_step_rel_loss")
    assert list(ratios) == ["lr=0", "lr=0.1", "lr=10000"]
    assert ratios["lr=0"] == 1.0 and ratios["lr=0.1"] < 1  # a small step on the same batch helps


def test_percentiles_are_ordered():
    rows = step_probes(ProbeConfig(names=["percentiles"]), tiny(), 0.1, X, Y, step=0)
    p15, p50, p85 = (values(rows, f"act_p{q}") for q in (15, 50, 85))
    assert list(p15) == ["0.0.act", "1.0.act"]
    for layer in p15:
        assert p15[layer] <= p50[layer] <= p85[layer]
        assert p15[layer] < p85[layer]


def test_layer_stats_cover_every_weight_layer():
    rows = step_probes(ProbeConfig(names=["layer_stats"]), tiny(), 0.1, X, Y, step=0)
    for probe in ("grad_norm", "act_std"):
        stats = values(rows, probe)
        assert list(stats) == ["0.0.conv", "1.0.conv", "2.3"]
        assert all(v > 0 for v in stats.values())


def test_variance_shift_comes_from_dropout_before_the_norm():
    cfg = ProbeConfig(names=["variance_shift"], batch_size=256)
    clean = values(final_probes(cfg, trained(), SPLITS, step=70), "var_shift")
    assert list(clean) == ["0.0.norm", "1.0.norm"]
    assert clean["0.0.norm"] == pytest.approx(1.0)  # same conv output in both modes
    assert clean["1.0.norm"] == pytest.approx(1.0, abs=0.1)  # running vs batch statistics

    model = trained(dropout=0.5, dropout_position="before_norm")
    rows = final_probes(cfg, model, SPLITS, step=70)
    assert all(v > 1.5 for v in values(rows, "var_shift").values())
    assert list(values(rows, "recalibrated_acc")) == ["test", "test_running"]


def test_variance_shift_without_bn_gives_the_accuracies_only():
    rows = final_probes(ProbeConfig(names=["variance_shift"]), tiny(norm="none"), SPLITS, step=0)
    assert {r["probe"] for r in rows} == {"recalibrated_acc"}
    acc = values(rows, "recalibrated_acc")
    assert acc["test"] == acc["test_running"]


def test_rows_have_exactly_the_probe_columns():
    cfg = ProbeConfig(names=list(PROBES), batch_size=64, test_batch_sizes=[2])
    model = tiny(dropout=0.2)
    rows = step_probes(cfg, model, 0.1, X, Y, step=3) + final_probes(cfg, model, SPLITS, step=9)
    assert {r["probe"] for r in rows} == {
        "ics_l2",
        "ics_cos",
        "act_p15",
        "act_p50",
        "act_p85",
        "grad_norm",
        "act_std",
        "one_step_rel_loss",
        "test_time_acc",
        "var_shift",
        "recalibrated_acc",
    }
    for row in rows:
        assert list(row) == PROBE_COLUMNS
        assert isinstance(row["step"], int) and isinstance(row["layer"], str)
        assert isinstance(row["value"], float)
    # Each entry point runs only its own probes, and only those named.
    assert step_probes(ProbeConfig(names=FINAL), model, 0.1, X, Y, step=0) == []
    assert final_probes(ProbeConfig(names=STEP), model, SPLITS, step=0) == []
