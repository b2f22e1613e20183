"""Probes: measurements beyond the loss curve, for the claims about *why* BN helps.

Two entry points, called by the train loop:

- `step_probes` at step 0 (before any update) and every `probes.every` steps, on a fixed
  probe batch (x, y): `ics`, `percentiles`, `layer_stats`, `one_step`. They run on a copy
  of the model inside a forked RNG, so a run trains exactly as it would without probes.
  The copy is in train mode: dropout and BN noise active, BN normalising with the batch's
  statistics, BN running statistics never updated. Every forward pass of one call draws the
  same dropout masks (the RNG is rewound before each), so they differ in parameters only.
- `final_probes` once after training: `test_time`, `variance_shift`.

Both return long-format rows {"step", "probe", "layer", "value"} (PROBE_COLUMNS) for
probes.csv. Layers are named by module path, identical in BN and no-BN runs: with 3
stages of depth 1, "0.0.conv" is the first conv, "0.0.norm" its norm slot, "0.0.act" its
activation, "3.3" the head's linear layer. Where a probe is not per layer, `layer` holds
its sub-key.

config name    probe column        layer column                value
-------------  ------------------  --------------------------  ---------------------------------
ics            ics_l2              conv/linear ("0.0.conv")    ||G - G'||_2 (Santurkar Def. 2.1)
               ics_cos             conv/linear                 cos(G, G')
percentiles    act_p15/50/85       activation ("0.0.act")      percentile of the activation's input
layer_stats    grad_norm           conv/linear                 ||dL/dW||_2 of the layer's weight
               act_std             conv/linear                 std of the block output after its
                                                               activation (logits for the head)
one_step       one_step_rel_loss   "lr=<lr>" ("lr=0.1")        loss after one SGD step / before
test_time      test_time_acc       "running", "precise",       test accuracy (fraction)
                                   "batch_b<n>_shuffled",
                                   "batch_b<n>_sorted"
variance_shift var_shift           BN layer ("0.0.norm")       BN input variance, train / eval mode
               recalibrated_acc    "test", "test_running"      test accuracy, re-estimated BN
                                                               statistics / running statistics

Details:
- ics: G = dL/dW_i on (x, y); G' = the same gradient after every parameter before W_i in
  the network (earlier convs, their biases, earlier norm affine parameters) took the update
  the run's optimizer would make now with the gradient from the same batch (SGD with its
  momentum buffer and weight decay, or Adam with its moments, at the step's LR; a plain
  SGD step W <- W - lr * dL/dW where no optimizer is given), with W_i and everything above
  it unchanged. The same dropout masks and BN noise in every pass: G and G' differ by the
  update only. The first layer has nothing below it, so its G' is G: ics_l2 = 0,
  ics_cos = 1.
- percentiles: Ioffe & Szegedy 2015, Fig. 1 follow the input of a sigmoid; here the input
  of each block's activation function: the norm slot's output with `placement=pre` (after
  the dropout when it sits after the norm), the conv output with `placement=post`. The
  15th/50th/85th percentiles (nearest rank) over every value of the layer on the batch
  (examples, channels and positions pooled).
- layer_stats: act_std is likewise pooled over every value of the layer on the batch.
- one_step: Bjorck et al. 2018; for each LR in `probes.lrs`, all parameters take one plain
  SGD step on (x, y); inf or nan are recorded as they come (a diverging step is a result).
- test_time: "running" uses BN's running statistics; "precise" replaces them by the exact
  mean and unbiased variance (as BN's running_var) of each BN layer's input over the whole
  training split, dropout off (see bnbench.train.probe_models); "batch_b<n>_*" normalises each test
  batch of n by its own statistics (dropout, BN noise and ghost splitting off), with the
  test set in a fixed shuffled order and sorted by class (the last batch holds what is
  left over). A batch of 1 normalises each
  channel over its H x W positions only; that is what BN does. A batch BN cannot
  normalise (one value per channel) counts as nan accuracy.
- variance_shift: Li et al. 2019. For each BN layer, the mean per-channel variance of its
  input in train mode (dropout on, batch statistics) divided by the same in eval mode
  (dropout off, running statistics), both on the probe batch (the first `probes.batch_size`
  training examples). recalibrated_acc "test" is the test accuracy after re-estimating BN
  statistics with dropout off (the "precise" model), "test_running" the accuracy with the
  running ones. A model without BN layers gets the accuracies only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bnbench.config.schema import AFTER_TRAINING_PROBES, ProbeConfig
from bnbench.store.files import PROBE_COLUMNS
from bnbench.train.data import Splits
from bnbench.train.probe_models import (
    EVAL_CHUNK,
    accuracy,
    activations,
    batch_norms,
    batch_stat_model,
    block_output,
    channel_dims,
    cuda_devices,
    eval_copy,
    next_update,
    precise_bn_model,
    recording,
    rng_rewinder,
    training_copy,
    weight_layers,
)

PERCENTILES = (15, 50, 85)
SHUFFLE_SEED = 0  # the fixed shuffled test order of the batch-statistics evaluation

Measure = tuple[str, str, float]  # (probe, layer, value); the entry points add the step
Params = dict[str, Tensor]


# ----------------------------------------------------------------------------- entry points


def step_probes(
    cfg: ProbeConfig,
    model: nn.Module,
    lr: float,
    x: Tensor,
    y: Tensor,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[dict]:
    """The in-training probes named in cfg.names, on the probe batch; `model` (and the
    `optimizer` training it) are left as found."""
    measures: list[Measure] = []
    with torch.random.fork_rng(devices=cuda_devices(model)):
        probe_model = training_copy(model)
        rewind = rng_rewinder(x.device)
        if "ics" in cfg.names:
            measures += ics(probe_model, x, y, lr, rewind, optimizer)
        if "percentiles" in cfg.names:
            measures += percentiles(probe_model, x, rewind)
        if "layer_stats" in cfg.names:
            measures += layer_stats(probe_model, x, y, rewind)
        if "one_step" in cfg.names:
            measures += one_step(probe_model, x, y, cfg.lrs, rewind)
    return _rows(step, measures)


def final_probes(cfg: ProbeConfig, model: nn.Module, splits: Splits, step: int) -> list[dict]:
    """The after-training probes named in cfg.names; `model` is left as found."""
    if not set(cfg.names) & set(AFTER_TRAINING_PROBES):
        return []
    measures: list[Measure] = []
    with torch.random.fork_rng(devices=cuda_devices(model)):
        precise = precise_bn_model(model, splits.train_x)  # shared by both probes
        if "test_time" in cfg.names:
            measures += test_time(model, precise, splits, cfg.test_batch_sizes)
        if "variance_shift" in cfg.names:
            probe_x = splits.train_x[: cfg.batch_size]
            measures += variance_shift(model, precise, probe_x, splits)
    return _rows(step, measures)


def _rows(step: int, measures: list[Measure]) -> list[dict]:
    return [dict(zip(PROBE_COLUMNS, (step, *measure), strict=True)) for measure in measures]


# ----------------------------------------------------------------------- in-training probes


def ics(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    lr: float,
    rewind: Callable,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[Measure]:
    """Santurkar et al. 2018, Def. 2.1: how far layer i's gradient moves when the layers below
    it take their update first (same batch, same dropout masks and BN noise)."""
    params = _detached_params(model)
    names = list(params)
    _, grads = _loss_and_grads(model, params, x, y, rewind)
    update = next_update(optimizer, params, grads, lr)
    measures = []
    for layer in weight_layers(model):
        weight = f"{layer}.weight"
        earlier = set(names[: names.index(weight)])  # parameter order is forward order
        g = grads[weight]
        if earlier:
            moved = {n: p + update[n] if n in earlier else p for n, p in params.items()}
            g_moved = _loss_and_grads(model, moved, x, y, rewind, wrt=[weight])[1][weight]
        else:
            g_moved = g  # nothing below the first layer moves: G' is G by definition
        cos = F.cosine_similarity(g.flatten().double(), g_moved.flatten().double(), dim=0)
        cos = cos.clamp(-1, 1)  # rounding can put it a hair outside
        measures += [("ics_l2", layer, float((g - g_moved).norm())), ("ics_cos", layer, float(cos))]
    return measures


@torch.no_grad()
def percentiles(model: nn.Module, x: Tensor, rewind: Callable) -> list[Measure]:
    """Ioffe & Szegedy 2015, Fig. 1: the 15th/50th/85th percentiles of each activation's input."""
    with recording(activations(model)) as inputs:
        rewind()
        model(x)
    measures = []
    for name, values in inputs.items():
        flat = values.flatten().float().cpu().numpy()
        ranks = [round(q / 100 * (len(flat) - 1)) for q in PERCENTILES]
        # One linear-time partition finds all three ranks; a full sort is several times slower.
        chosen = np.partition(flat, ranks)[ranks]
        measures += [
            (f"act_p{q}", name, float(v)) for q, v in zip(PERCENTILES, chosen, strict=True)
        ]
    return measures


def layer_stats(model: nn.Module, x: Tensor, y: Tensor, rewind: Callable) -> list[Measure]:
    """Per conv/linear layer: its weight's gradient norm and the std of the block's output."""
    layers = weight_layers(model)
    outputs_of = {name: block_output(model, name, layer) for name, layer in layers.items()}
    weights = [f"{name}.weight" for name in layers]
    with recording(outputs_of, outputs=True) as outputs:
        _, grads = _loss_and_grads(model, _detached_params(model), x, y, rewind, wrt=weights)
    measures = []
    for name in layers:
        measures.append(("grad_norm", name, float(grads[f"{name}.weight"].norm())))
        measures.append(("act_std", name, float(outputs[name].float().std())))
    return measures


def one_step(
    model: nn.Module, x: Tensor, y: Tensor, lrs: list[float], rewind: Callable
) -> list[Measure]:
    """Bjorck et al. 2018: loss after one plain SGD step on (x, y) / loss before, per LR."""
    params = _detached_params(model)
    _, grads = _loss_and_grads(model, params, x, y, rewind)
    with torch.no_grad():
        # Before and after through the same code path, so lr=0 gives exactly 1.
        rewind()
        before = _loss(model, params, x, y)
        measures = []
        for lr in lrs:
            rewind()
            after = _loss(model, {n: p - lr * grads[n] for n, p in params.items()}, x, y)
            measures.append(("one_step_rel_loss", f"lr={lr:g}", float(after / before)))
    return measures


# -------------------------------------------------------------------- after-training probes


def test_time(
    model: nn.Module, precise: nn.Module, splits: Splits, batch_sizes: list[int]
) -> list[Measure]:
    """Test accuracy with running, precise and per-test-batch BN statistics (Ioffe Alg. 2)."""
    x, y = splits.test_x, splits.test_y
    measures = [
        ("test_time_acc", "running", accuracy(eval_copy(model), x, y)),
        ("test_time_acc", "precise", accuracy(precise, x, y)),
    ]
    shuffle = torch.Generator().manual_seed(SHUFFLE_SEED)
    orders = {
        "shuffled": torch.randperm(len(y), generator=shuffle).to(y.device),
        "sorted": torch.argsort(y, stable=True),  # every batch (nearly) one class
    }
    for n in batch_sizes:
        batch_model = batch_stat_model(model, n)
        chunk = n * max(1, EVAL_CHUNK // n)  # whole test batches per forward pass
        for order_name, order in orders.items():
            acc = accuracy(batch_model, x[order], y[order], batch_size=chunk)
            measures.append(("test_time_acc", f"batch_b{n}_{order_name}", acc))
    return measures


def variance_shift(
    model: nn.Module, precise: nn.Module, probe_x: Tensor, splits: Splits
) -> list[Measure]:
    """Li et al. 2019: dropout makes BN's input wider in training than at test time."""
    norms = batch_norms(model)
    train_var = _input_variances(training_copy(model), norms, probe_x)
    eval_var = _input_variances(eval_copy(model), norms, probe_x)
    measures = [("var_shift", name, float(train_var[name] / eval_var[name])) for name in norms]
    x, y = splits.test_x, splits.test_y
    measures.append(("recalibrated_acc", "test", accuracy(precise, x, y)))
    measures.append(("recalibrated_acc", "test_running", accuracy(eval_copy(model), x, y)))
    return measures


@torch.no_grad()
def _input_variances(model: nn.Module, names: list[str], x: Tensor) -> dict[str, Tensor]:
    """Mean over channels of the per-channel variance of each named module's input."""
    modules = {name: model.get_submodule(name) for name in names}
    with recording(modules) as inputs:
        model(x)
    return {name: inputs[name].float().var(dim=channel_dims(inputs[name])).mean() for name in names}


# ---------------------------------------------------------------------------------- helpers


def _detached_params(model: nn.Module) -> Params:
    return {name: p.detach() for name, p in model.named_parameters()}


def _loss(model: nn.Module, params: Params, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def _loss_and_grads(
    model: nn.Module,
    params: Params,
    x: Tensor,
    y: Tensor,
    rewind: Callable,
    wrt: list[str] | None = None,
) -> tuple[Tensor, Params]:
    """Loss at `params` and its gradient w.r.t. the named ones (all by default)."""
    wrt = list(params) if wrt is None else wrt
    # Fresh leaves: autograd differentiates only what is asked, and no .grad is touched.
    leaves = {n: p.detach().requires_grad_(n in wrt) for n, p in params.items()}
    rewind()
    loss = _loss(model, leaves, x, y)
    grads = torch.autograd.grad(loss, [leaves[n] for n in wrt])
    return loss.detach(), dict(zip(wrt, grads, strict=True))
