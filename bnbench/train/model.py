"""The one CNN: conv blocks (conv, norm, activation, dropout) per stage, max-pool, linear head.

Every normalisation choice fills the same slot of the same block, so a `norm=none`
network is the `norm=batch` network with that slot an identity (and conv bias on,
since no BN cancels it). Weights are initialised from per-layer generators seeded by
the run's seed, so a BN/no-BN pair starts from the same conv and linear weights.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from bnbench.config.schema import ModelConfig


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from sub-batches of `ghost_size` examples."""

    def __init__(self, num_features: int, ghost_size: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.ghost_size = ghost_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, g = x.shape[0], self.ghost_size
        if not self.training or n <= g or n % g:
            return super().forward(x)
        k, c, spatial = n // g, x.shape[1], x.shape[2:]
        # The sub-batch index moved into the channel dim, (g, k*C, H, W): one fused
        # batch_norm normalizes each sub-batch's channels (twice as fast as elementwise ops).
        y = x.reshape(k, g, c, *spatial).transpose(0, 1).reshape(g, k * c, *spatial)
        weight, bias = (self.weight.repeat(k), self.bias.repeat(k)) if self.affine else (None, None)
        track = self.track_running_stats
        stats = (x.new_zeros(k * c), x.new_ones(k * c)) if track else (None, None)
        # momentum 1: `stats` become each sub-batch's mean and unbiased variance
        out = F.batch_norm(y, *stats, weight, bias, True, 1.0, self.eps)
        if track:
            with torch.no_grad():  # the average of the sub-batch statistics, as BN would keep
                self.running_mean.lerp_(stats[0].view(k, c).mean(0), self.momentum)
                self.running_var.lerp_(stats[1].view(k, c).mean(0), self.momentum)
                self.num_batches_tracked += 1
        return out.reshape(g, k, c, *spatial).transpose(0, 1).reshape(x.shape)


class NoisyBatchNorm2d(nn.BatchNorm2d):
    """BN followed, in training, by a per-channel random scale and shift drawn anew each step.

    This injects a distribution shift after normalisation (Santurkar et al. 2018, Sec. 2.1):
    if BN worked by removing covariate shift, this network should train worse.
    """

    def __init__(self, num_features: int, noise_std: float, **kwargs):
        super().__init__(num_features, **kwargs)
        self.noise_std = noise_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if not self.training or self.noise_std == 0:
            return out
        shape = (1, x.shape[1], 1, 1)
        scale = torch.exp(self.noise_std * torch.randn(shape, device=x.device, dtype=x.dtype))
        shift = self.noise_std * torch.randn(shape, device=x.device, dtype=x.dtype)
        return out * scale + shift


class Uout(nn.Module):
    """Uniform multiplicative noise x * (1 + u), u ~ U(-rate, rate) (Li et al. 2019)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        return x * (1 + self.rate * (2 * torch.rand_like(x) - 1))


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}
BN_NORMS = ("batch", "noisy_batch")


def make_norm(cfg: ModelConfig, width: int) -> nn.Module:
    if cfg.norm == "none":
        return nn.Identity()
    if cfg.norm == "group":
        return nn.GroupNorm(cfg.groups, width, affine=cfg.affine)
    bn_args = dict(momentum=cfg.bn_momentum, affine=cfg.affine)
    if cfg.norm == "noisy_batch":
        return NoisyBatchNorm2d(width, cfg.noise_std, **bn_args)
    if cfg.ghost_batch_size is not None:
        return GhostBatchNorm2d(width, cfg.ghost_batch_size, **bn_args)
    return nn.BatchNorm2d(width, **bn_args)


def make_dropout(kind: str, rate: float) -> nn.Module:
    if rate == 0:
        return nn.Identity()
    return Uout(rate) if kind == "uout" else nn.Dropout(rate)


def conv_block(cfg: ModelConfig, in_width: int, out_width: int) -> nn.Sequential:
    """conv -> norm -> act (pre) or conv -> act -> norm (post); dropout next to the norm."""
    bias = not (cfg.placement == "pre" and cfg.norm in BN_NORMS)  # BN right after cancels it
    layers = {"conv": nn.Conv2d(in_width, out_width, 3, padding=1, bias=bias)}
    drop = make_dropout(cfg.dropout_kind, cfg.dropout)
    norm_part = {"drop": drop, "norm": make_norm(cfg, out_width)}
    if cfg.dropout_position == "after_norm":
        norm_part = {"norm": norm_part["norm"], "drop": drop}
    act = {"act": ACTIVATIONS[cfg.activation]()}
    layers.update({**norm_part, **act} if cfg.placement == "pre" else {**act, **norm_part})
    return nn.Sequential(OrderedDict(layers))


def build_model(cfg: ModelConfig, in_channels: int, num_classes: int, seed: int) -> nn.Sequential:
    """Stages of `depth` conv blocks and a 2x2 max-pool; head: global avg pool, (BN,) dropout,
    linear."""
    stages, width_in = [], in_channels
    for width in cfg.widths:
        blocks = [conv_block(cfg, width_in if i == 0 else width, width) for i in range(cfg.depth)]
        stages.append(nn.Sequential(*blocks, nn.MaxPool2d(2)))
        width_in = width
    # Only a head_norm net gets the extra module: the others keep their layer names.
    head_norm = [nn.BatchNorm1d(width_in, momentum=cfg.bn_momentum)] if cfg.head_norm else []
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        *head_norm,
        make_dropout(cfg.dropout_kind, cfg.head_dropout),
        nn.Linear(width_in, num_classes),
    )
    model = nn.Sequential(*stages, head)
    initialize(model, cfg, seed)
    return model


def initialize(model: nn.Module, cfg: ModelConfig, seed: int) -> None:
    """Weights of conv and linear layers by the configured scheme; biases zero."""
    gain_name = cfg.activation if cfg.activation in ("relu", "tanh", "sigmoid") else "relu"
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for index, layer in enumerate(layers):
        g = torch.Generator().manual_seed(seed * 1_000 + index)
        w, scale = layer.weight, cfg.init_scale
        with torch.no_grad():
            if cfg.init == "torch_default":
                nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g).mul_(scale)
            elif cfg.init == "kaiming_normal":
                nn.init.kaiming_normal_(w, nonlinearity=gain_name, generator=g).mul_(scale)
            elif cfg.init == "kaiming_uniform":
                nn.init.kaiming_uniform_(w, nonlinearity=gain_name, generator=g).mul_(scale)
            elif cfg.init == "xavier_normal":
                nn.init.xavier_normal_(w, gain=scale, generator=g)
            elif cfg.init == "xavier_uniform":
                nn.init.xavier_uniform_(w, gain=scale, generator=g)
            elif cfg.init == "orthogonal":
                nn.init.orthogonal_(w, gain=scale, generator=g)
            else:  # normal
                nn.init.normal_(w, std=scale, generator=g)
            if layer.bias is not None:
                layer.bias.zero_()


def norm_layers(model: nn.Module) -> list[nn.Module]:
    """The normalisation slots in network order (Identity where norm=none)."""
    return [
        block.norm
        for block in model.modules()
        if isinstance(block, nn.Sequential) and hasattr(block, "norm")
    ]
