"""The CNN: BN and no-BN differ only in normalization; every knob builds and runs."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from bnbench.config.schema import INITS, ModelConfig
from bnbench.train.model import GhostBatchNorm2d, NoisyBatchNorm2d, Uout, build_model, norm_layers


def layer_types(model: nn.Module) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in model.named_modules() if name]


def test_bn_and_no_bn_differ_only_in_the_norm_slot():
    bn = build_model(ModelConfig(norm="batch"), 1, 10, seed=3)
    plain = build_model(ModelConfig(norm="none"), 1, 10, seed=3)
    bn_layers, plain_layers = layer_types(bn), layer_types(plain)
    assert [n for n, _ in bn_layers] == [n for n, _ in plain_layers]  # same slots, same order
    differing = [(a, b) for a, b in zip(bn_layers, plain_layers, strict=True) if a != b]
    assert differing == [((n, "BatchNorm2d"), (n, "Identity")) for (n, _), _ in differing]
    assert len(differing) == 3  # one per stage at depth 1
    # Same starting weights; conv bias only where no BN follows the conv.
    bn_params, plain_params = dict(bn.named_parameters()), dict(plain.named_parameters())
    for name, weight in bn_params.items():
        if ".norm." not in name:
            assert torch.equal(weight, plain_params[name]), name
    extra = set(plain_params) - set(bn_params)
    assert extra == {n for n in plain_params if n.endswith("conv.bias")} and len(extra) == 3


@pytest.mark.parametrize(
    "placement, expected",
    [("pre", ["conv", "norm", "act"]), ("post", ["conv", "act", "norm"])],
)
def test_placement_orders_conv_norm_activation(placement, expected):
    model = build_model(ModelConfig(placement=placement), 1, 10, seed=0)
    block = model[0][0]
    order = [name for name, _ in block.named_children() if name != "drop"]
    assert order == expected
    assert (block.conv.bias is None) == (placement == "pre")  # BN right after cancels bias


@pytest.mark.parametrize("position", ["before_norm", "after_norm"])
def test_dropout_sits_next_to_the_norm(position):
    model = build_model(ModelConfig(dropout=0.3, dropout_position=position), 1, 10, seed=0)
    names = [name for name, _ in model[0][0].named_children()]
    expected = ["drop", "norm"] if position == "before_norm" else ["norm", "drop"]
    start = names.index(expected[0])
    assert names[start : start + 2] == expected


def test_head_norm_puts_a_batch_norm_before_the_classifier_only_when_asked():
    plain, normed = (build_model(ModelConfig(head_norm=h), 1, 10, seed=0) for h in (False, True))
    assert [type(m).__name__ for m in normed[-1]] == [
        "AdaptiveAvgPool2d",
        "Flatten",
        "BatchNorm1d",
        "Identity",
        "Linear",
    ]
    # Without it the head keeps the layer names of every earlier run (probes name layers).
    assert [type(m).__name__ for m in plain[-1]][2:] == ["Identity", "Linear"]


NORMS = ["none", "batch", "group", "noisy_batch"]
COMBOS = list(itertools.product(NORMS, ["pre", "post"], ["relu", "sigmoid", "tanh", "gelu"]))


@pytest.mark.parametrize("norm, placement, activation", COMBOS)
@pytest.mark.parametrize("kind", ["bernoulli", "uout"])
def test_forward_and_backward_for_every_combination(norm, placement, activation, kind):
    cfg = ModelConfig(
        norm=norm,
        placement=placement,
        activation=activation,
        widths=[8, 16],
        depth=2,
        groups=4,
        dropout=0.2,
        head_dropout=0.3,
        dropout_kind=kind,
    )
    model = build_model(cfg, 3, 7, seed=0)
    out = model(torch.randn(6, 3, 16, 16))
    assert out.shape == (6, 7) and torch.isfinite(out).all()
    out.sum().backward()
    model.eval()
    assert torch.isfinite(model(torch.randn(1, 3, 16, 16))).all()


@pytest.mark.parametrize("init", INITS)
def test_init_is_seeded_and_scaled(init):
    a = build_model(ModelConfig(init=init, init_scale=0.5), 1, 10, seed=1)
    b = build_model(ModelConfig(init=init, init_scale=0.5), 1, 10, seed=1)
    c = build_model(ModelConfig(init=init, init_scale=1.0), 1, 10, seed=1)
    wa, wb, wc = (m[1][0].conv.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert torch.allclose(wa.std(), wc.std() * 0.5, rtol=0.05)


def test_normal_init_uses_init_scale_as_sigma():
    model = build_model(ModelConfig(init="normal", init_scale=0.01), 1, 10, seed=0)
    assert model[1][0].conv.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_ghost_batch_norm_normalizes_each_sub_batch():
    bn = GhostBatchNorm2d(2, ghost_size=4, affine=False)
    x = torch.randn(8, 2, 3, 3)
    x[4:] = x[4:] * 5 + 10  # the two halves have very different statistics
    out = bn(x)
    for half in (out[:4], out[4:]):
        assert half.mean().abs() < 1e-5
        assert half.var(unbiased=False).item() == pytest.approx(1, abs=1e-3)


def test_noisy_batch_norm_adds_noise_only_in_training():
    torch.manual_seed(0)
    noisy, clean = NoisyBatchNorm2d(3, noise_std=0.5), nn.BatchNorm2d(3)
    x = torch.randn(16, 3, 4, 4)
    assert not torch.allclose(noisy(x), clean(x), atol=1e-3)
    noisy.eval(), clean.eval()
    assert torch.allclose(noisy(x), clean(x), atol=1e-6)


def test_uout_is_bounded_multiplicative_noise():
    torch.manual_seed(0)
    layer = Uout(0.3)
    x = torch.ones(1000)
    y = layer(x)
    assert y.min() >= 0.7 and y.max() <= 1.3 and y.std() > 0.1
    assert torch.equal(layer.eval()(x), x)


def test_norm_layers_lists_the_slots_in_order():
    model = build_model(ModelConfig(norm="group", groups=8, depth=2), 1, 10, seed=0)
    slots = norm_layers(model)
    assert len(slots) == 6 and all(isinstance(s, nn.GroupNorm) for s in slots)


@pytest.mark.parametrize("channels_last", [False, True])
def test_ghost_bn_normalizes_each_sub_batch_as_bn_would_and_keeps_their_mean_statistics(
    channels_last,
):
    """Ghost BN over sub-batches of 4 in a batch of 12: each sub-batch's output and input
    gradient are those of a BatchNorm2d seeing that sub-batch alone; the running statistics
    move toward the mean of the sub-batches' statistics."""
    torch.manual_seed(0)
    ghost = GhostBatchNorm2d(3, 4)
    with torch.no_grad():
        ghost.weight.uniform_(0.5, 1.5)
        ghost.bias.uniform_(-1, 1)
    x = 2 + 3 * torch.randn(12, 3, 5, 5)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = ghost(x)
    (grad,) = torch.autograd.grad(out.pow(3).sum(), x)

    running_mean, running_var = torch.zeros(3), torch.zeros(3)
    for part in range(3):
        bn = nn.BatchNorm2d(3, momentum=1.0)  # running stats := this sub-batch's
        bn.load_state_dict(
            {k: v for k, v in ghost.state_dict().items() if "running" not in k}, strict=False
        )
        chunk = x.detach()[4 * part : 4 * part + 4].clone().requires_grad_()
        expected = bn(chunk)
        (expected_grad,) = torch.autograd.grad(expected.pow(3).sum(), chunk)
        torch.testing.assert_close(out[4 * part : 4 * part + 4], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            grad[4 * part : 4 * part + 4], expected_grad, atol=1e-4, rtol=1e-4
        )
        running_mean += bn.running_mean / 3
        running_var += bn.running_var / 3
    torch.testing.assert_close(ghost.running_mean, 0.1 * running_mean)  # from 0, momentum 0.1
    torch.testing.assert_close(ghost.running_var, 0.9 + 0.1 * running_var)  # from 1
    ghost.eval()  # evaluation: the running statistics, whatever the batch
    torch.testing.assert_close(
        ghost(x.detach()[:4]),
        nn.functional.batch_norm(
            x.detach()[:4],
            ghost.running_mean,
            ghost.running_var,
            ghost.weight,
            ghost.bias,
            False,
            0.0,
            ghost.eps,
        ),
    )
