"""The models the probes measure: copies of a trained model in train mode (batch statistics,
running ones untouched), eval mode, per-test-batch BN and exact-statistics ("precise") BN;
their predictions and accuracy; its layers by module path and where each block ends; the
update its optimizer would make next (from a twin of the optimizer); what the forward passes
run inside `recording` feed a layer; and the random state the passes draw from, rewound.

Each copy leaves the model it was made from as found. bnbench.train.probes says what is
measured on them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EVAL_CHUNK = 1000  # examples per forward pass wherever the chunk size cannot change the result


def training_copy(model: nn.Module) -> nn.Module:
    """A train-mode copy whose BN layers use batch statistics but never update running ones."""
    probe = copy.deepcopy(model).train()
    for name in batch_norms(probe):
        probe.get_submodule(name).track_running_stats = False  # train mode: batch stats only
    return probe


def eval_copy(model: nn.Module) -> nn.Module:
    """A copy as it runs at test time: dropout off, BN with its running statistics."""
    return copy.deepcopy(model).eval()


def batch_stat_model(model: nn.Module, batch_size: int) -> nn.Module:
    """An eval-mode copy (dropout off) whose BN layers normalise every group of `batch_size`
    consecutive examples by that group's own mean and variance, as train-mode BN does for a
    batch of that size (no ghost splitting, no noise), running statistics untouched.

    Grouping inside the layer lets one forward pass evaluate many small test batches: the
    convolutions run on the whole chunk, only the normalisation sees the groups."""
    probe = eval_copy(model)
    for name in batch_norms(probe):
        parent, _, child = name.rpartition(".")
        bn = probe.get_submodule(name)
        setattr(probe.get_submodule(parent), child, _GroupBatchNorm(bn, batch_size))
    return probe


class _GroupBatchNorm(nn.Module):
    """BN with batch statistics, computed separately for each group of `size` examples."""

    def __init__(self, bn: nn.BatchNorm2d, size: int):
        super().__init__()
        self.bn, self.size = bn, size

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bn
        return torch.cat(
            [
                F.batch_norm(group, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
                for group in x.split(self.size)
            ]
        )


def precise_bn_model(model: nn.Module, train_x: Tensor, chunk: int = EVAL_CHUNK) -> nn.Module:
    """An eval-mode copy whose BN running statistics are the exact mean and unbiased variance
    of each BN layer's input over train_x, with dropout and BN noise off.

    Layers go in network order, each measured with the layers below it already using their
    exact statistics: what one train-mode pass over all of train_x as a single batch would
    give (up to n/(n-1)), without holding the split in memory. A model without BN is
    returned as an eval-mode copy."""
    precise = eval_copy(model)
    for name in batch_norms(precise):
        bn = precise.get_submodule(name)
        mean, var = _input_moments(precise, bn, train_x, chunk)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return precise


class _StopForward(Exception):
    """Raised by a hook once it has what it needs: the layers above need not run."""


@torch.no_grad()
def _input_moments(model: nn.Module, module: nn.Module, x: Tensor, chunk: int):
    """Per-channel mean and unbiased variance of `module`'s input over all of x.

    Each chunk's mean and centred sum of squares are merged in float64 (Chan et al.'s
    parallel update): exact up to float32 rounding within a chunk, and no cancellation."""
    count, mean, m2 = 0, 0.0, 0.0

    def take(_module: nn.Module, args: tuple) -> None:
        nonlocal count, mean, m2
        values = args[0]
        n = values.numel() // values.shape[1]
        var_c, mean_c = torch.var_mean(values, dim=channel_dims(values), correction=0)
        delta = mean_c.double() - mean
        m2 = m2 + var_c.double() * n + delta.square() * count * n / (count + n)
        mean = mean + delta * n / (count + n)
        count += n
        raise _StopForward

    handle = module.register_forward_pre_hook(take)
    try:
        for start in range(0, len(x), chunk):
            try:
                model(x[start : start + chunk])
            except _StopForward:
                pass
    finally:
        handle.remove()
    return mean, m2 / (count - 1)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = EVAL_CHUNK) -> float:
    """Fraction of x classified as y, in batches of batch_size, in the model's current mode."""
    try:
        predicted = predict(model, x, batch_size).argmax(1)
    except ValueError:  # train-mode BN with one value per channel: no statistics to use
        return math.nan
    return (predicted == y).float().mean().item()


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = EVAL_CHUNK) -> Tensor:
    """The logits for x, computed in batches of batch_size, in the model's current mode."""
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers by module path, in network order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def activations(model: nn.Module) -> dict[str, nn.Module]:
    """Each conv block's activation function by module path ("0.0.act")."""
    return {
        f"{name}.act": block.act
        for name, block in model.named_modules()
        if isinstance(block, nn.Sequential) and hasattr(block, "act")
    }


def batch_norms(model: nn.Module) -> list[str]:
    """The module paths of the BN layers (plain, ghost or noisy, and the BN before the
    classifier of model.head_norm), in network order."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d)
    return [name for name, m in model.named_modules() if isinstance(m, kinds)]


def channel_dims(values: Tensor) -> tuple[int, ...]:
    """The dimensions BN pools over: all but the channels (dim 1)."""
    return (0, *range(2, values.dim()))


def next_update(
    optimizer: torch.optim.Optimizer | None,
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    lr: float,
) -> dict[str, Tensor]:
    """The change of each parameter if `optimizer` stepped now with `grads` at `lr`: a twin
    optimizer over copies of the parameters, with the same state (momentum buffers, Adam's
    moments), takes the step. Without an optimizer, a plain SGD step -lr * grad."""
    if optimizer is None:
        return {n: -lr * g for n, g in grads.items()}
    copies = [p.clone().requires_grad_(True) for p in params.values()]
    twin = type(optimizer)(copies, **optimizer.defaults)
    twin.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # by position: same order
    for group in twin.param_groups:
        group["lr"] = lr
    for c, name in zip(copies, params, strict=True):
        c.grad = grads[name].clone()
    twin.step()
    return {n: c.detach() - p for (n, p), c in zip(params.items(), copies, strict=True)}


def block_output(model: nn.Module, name: str, layer: nn.Module) -> nn.Module:
    """Where a layer's block ends: its activation in a conv block, the layer itself in the head."""
    parent = model.get_submodule(name.rpartition(".")[0])
    return parent.act if hasattr(parent, "act") else layer


@contextmanager
def recording(modules: dict[str, nn.Module], outputs: bool = False) -> Iterator[dict]:
    """Keep each module's input (or output) from the forward passes run inside, by name."""
    seen: dict[str, Tensor] = {}

    def keeper(name: str) -> Callable:
        if outputs:
            return lambda _m, _args, out: seen.__setitem__(name, out.detach())
        return lambda _m, args: seen.__setitem__(name, args[0].detach())

    handles = [
        (m.register_forward_hook if outputs else m.register_forward_pre_hook)(keeper(name))
        for name, m in modules.items()
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def cuda_devices(model: nn.Module) -> list[int]:
    """The CUDA devices whose RNG a forward pass of the model can advance."""
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def rng_rewinder(device: torch.device) -> Callable[[], None]:
    """A function that puts the RNG back where it is now: each forward pass after calling it
    draws the same dropout masks and BN noise."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def rewind() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)

    return rewind
