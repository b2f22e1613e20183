"""Typed run configuration, registered with Hydra's ConfigStore, and its validation.

The dataclasses are the schema: Hydra refuses unknown keys and wrong types while
composing; `validate` then refuses values that are well-typed but meaningless
(negative LR, a ghost batch that does not divide the batch, ...), before any training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

NORMS = ("none", "batch", "group", "noisy_batch")
PLACEMENTS = ("pre", "post")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
INITS = (
    "torch_default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "orthogonal",
    "normal",
)
DROPOUT_KINDS = ("bernoulli", "uout")
DROPOUT_POSITIONS = ("before_norm", "after_norm")
DATASETS = ("fashion_mnist", "mnist", "cifar10", "synthetic")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda")

# Training-set sizes, known without loading the data, so a batch size can be checked up front.
TRAIN_SIZES = {"fashion_mnist": 60_000, "mnist": 60_000, "cifar10": 50_000}
NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10, "synthetic": 4}


@dataclass
class DatasetConfig:
    name: str = "fashion_mnist"
    data_dir: str | None = None  # looked in first; not part of the run id
    val_size: int = 5000  # held out of the training set, for choosing hyperparameters
    train_subset: int | None = None  # train on the first N shuffled training examples
    test_subset: int | None = None  # evaluate on the first N test examples
    # The train/val split and the training subset are drawn with this seed; null: the run's
    # own seed, so each seed is its own data draw (BN and no-BN of one seed share it).
    split_seed: int | None = None
    # synthetic only: sizes of a deterministic, learnable toy problem
    synthetic_train: int = 512
    synthetic_test: int = 256
    synthetic_image_size: int = 8


@dataclass
class ModelConfig:
    norm: str = "batch"
    placement: str = "pre"
    activation: str = "relu"
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    depth: int = 1  # conv layers per stage
    ghost_batch_size: int | None = None  # BN statistics over sub-batches of this size
    bn_momentum: float = 0.1
    affine: bool = True
    groups: int = 8  # group norm only
    noise_std: float = 0.5  # noisy_batch only: spread of the per-step scale and shift noise
    dropout: float = 0.0  # in every conv block
    head_dropout: float = 0.0  # before the linear head
    head_norm: bool = False  # BN over the pooled features before the head (claim 9's control)
    dropout_position: str = "after_norm"
    dropout_kind: str = "bernoulli"
    init: str = "kaiming_normal"
    init_scale: float = 1.0  # sigma for `normal`, a gain multiplier otherwise


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam only
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_size: int = 10  # step schedule: epochs between decays
    gamma: float = 0.1  # step schedule: decay factor


@dataclass
class TrainConfig:
    epochs: int = 4
    batch_size: int = 128
    log_every: int = 20  # steps between rows of steps.csv
    channels_last: bool = True  # NHWC: about 1.4x faster on CPU (max-pool 5-15x) than NCHW
    diverge_factor: float = 10.0  # loss above this multiple of its first value = diverged
    checkpoint: bool = False  # save the state every epoch; a killed run resumes from it
    amp: bool = False  # CUDA only: bf16 autocast for training steps, normalization in fp32
    # What is evaluated: validation after every val_every_epochs-th epoch and the last, on the
    # first val_subset images (all when fewer), and every val_every steps when set (evals.csv);
    # the test set at the last epoch (every validated epoch with test_every_epoch, which no
    # measure needs).
    val_subset: int | None = None
    val_every_epochs: int = 1
    val_every: int | None = None
    test_every_epoch: bool = False
    eval_train: bool = False  # after the last epoch: eval-mode loss/accuracy on the training set


PROBES = ("ics", "percentiles", "layer_stats", "one_step", "test_time", "variance_shift")


@dataclass
class ProbeConfig:
    """Measurements beyond the loss curve, written to probes.csv (see bnbench/probes.py)."""

    names: list[str] = field(default_factory=list)  # any of PROBES; empty = no probes
    every: int = 50  # steps between in-training probes (ics, percentiles, layer_stats)
    batch_size: int = 256  # the fixed probe batch, the first examples of the training split
    lrs: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 3.0])
    test_batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 8, 32, 256])


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    seed: int = 0
    sweep: str = "default"  # results/<sweep>/
    results_dir: str = "results"
    device: str = "auto"
    threads: int | None = None  # torch threads; default: cores / parallel jobs
    progress: bool = True


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


class ConfigError(ValueError):
    """A refused value: the message is one line naming key, value and what is allowed."""


def _refuse(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"invalid {key}={value!r}: {allowed}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _refuse(key, value, "allowed: " + " | ".join(choices))


MAX_LR = 1000.0  # far above any LR that trains; inf or 1e308 only overflows into "diverged"
MAX_SEED = 2**32 - 1  # numpy's limit, and what every seeded generator here accepts


def _check_finite(node: Any, prefix: str = "") -> None:
    """Every float setting, lists included, is a finite number: inf and nan never train.
    (Walks the fields directly: asdict copies every value, too slow for 10,000 runs.)"""
    for name, value in vars(node).items():
        if isinstance(value, float):
            bad = not math.isfinite(value)
        elif isinstance(value, list):
            bad = any(isinstance(v, float) and not math.isfinite(v) for v in value)
        else:
            if hasattr(value, "__dataclass_fields__"):
                _check_finite(value, f"{prefix}{name}.")
            continue
        if bad:
            _refuse(f"{prefix}{name}", value, "must be a finite number")


def _check_sweep_name(name: str) -> None:
    """results/<sweep>/ must stay inside results_dir: a plain directory name."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        allowed = "must be a plain directory name inside results_dir (no /, no .., not empty)"
        _refuse("sweep", name, allowed)


def train_size(cfg: Config) -> int:
    """How many examples one epoch trains on, known without loading the data."""
    d = cfg.dataset
    total = d.synthetic_train if d.name == "synthetic" else TRAIN_SIZES[d.name]
    available = total - d.val_size
    return min(available, d.train_subset) if d.train_subset is not None else available


def validate(cfg: Config) -> None:
    """Refuse any value that would make a run meaningless; raises ConfigError."""
    d, m, o, t = cfg.dataset, cfg.model, cfg.optim, cfg.train
    _check_choice("dataset.name", d.name, DATASETS)
    _check_choice("model.norm", m.norm, NORMS)
    _check_choice("model.placement", m.placement, PLACEMENTS)
    _check_choice("model.activation", m.activation, ACTIVATIONS)
    _check_choice("model.init", m.init, INITS)
    _check_choice("model.dropout_kind", m.dropout_kind, DROPOUT_KINDS)
    _check_choice("model.dropout_position", m.dropout_position, DROPOUT_POSITIONS)
    _check_choice("optim.name", o.name, OPTIMIZERS)
    _check_choice("optim.schedule", o.schedule, SCHEDULES)
    _check_choice("device", cfg.device, DEVICES)
    _check_sweep_name(cfg.sweep)
    _check_finite(cfg)
    if not 0 <= cfg.seed <= MAX_SEED:
        _refuse("seed", cfg.seed, f"must be in [0, {MAX_SEED}]")

    total = d.synthetic_train if d.name == "synthetic" else TRAIN_SIZES[d.name]
    if not 0 <= d.val_size < total:
        _refuse("dataset.val_size", d.val_size, f"must be in [0, {total}) for {d.name}")
    if d.train_subset is not None and d.train_subset < 1:
        _refuse("dataset.train_subset", d.train_subset, "must be >= 1 (or null for all)")
    if d.test_subset is not None and d.test_subset < 1:
        _refuse("dataset.test_subset", d.test_subset, "must be >= 1 (or null for all)")

    if not m.widths or any(w < 1 for w in m.widths):
        _refuse("model.widths", list(m.widths), "must be a non-empty list of positive ints")
    if m.depth < 1:
        _refuse("model.depth", m.depth, "must be >= 1")
    for key in ("dropout", "head_dropout"):
        rate = getattr(m, key)
        if not 0 <= rate < 1:
            _refuse(f"model.{key}", rate, "must be in [0, 1)")
    if m.init_scale <= 0:
        _refuse("model.init_scale", m.init_scale, "must be > 0")
    if not 0 <= m.bn_momentum <= 1:
        _refuse("model.bn_momentum", m.bn_momentum, "must be in [0, 1]")
    if m.noise_std < 0:
        _refuse("model.noise_std", m.noise_std, "must be >= 0")
    if m.norm == "group" and (m.groups < 1 or any(w % m.groups for w in m.widths)):
        _refuse("model.groups", m.groups, f"must divide every width in {list(m.widths)}")

    if not o.lr > 0:
        _refuse("optim.lr", o.lr, "must be > 0")
    if o.lr > MAX_LR:
        _refuse("optim.lr", o.lr, f"must be at most {MAX_LR:g}")
    if not 0 <= o.momentum < 1:
        _refuse("optim.momentum", o.momentum, "must be in [0, 1)")
    if o.weight_decay < 0:
        _refuse("optim.weight_decay", o.weight_decay, "must be >= 0")
    if o.warmup_epochs < 0:
        _refuse("optim.warmup_epochs", o.warmup_epochs, "must be >= 0")
    if o.step_size < 1:
        _refuse("optim.step_size", o.step_size, "must be >= 1")
    if not 0 < o.gamma <= 1:  # a decay factor: 0 stops training, < 0 flips the LR's sign
        _refuse("optim.gamma", o.gamma, "must be in (0, 1]")
    if not all(0 <= b < 1 for b in o.betas) or len(o.betas) != 2:
        _refuse("optim.betas", list(o.betas), "must be two numbers in [0, 1)")

    if t.epochs < 1:
        _refuse("train.epochs", t.epochs, "must be >= 1")
    if t.log_every < 1:
        _refuse("train.log_every", t.log_every, "must be >= 1")
    if not t.diverge_factor > 1:  # at or below 1, ordinary noise reads as divergence
        _refuse("train.diverge_factor", t.diverge_factor, "must be > 1")
    if t.val_subset is not None and t.val_subset < 1:
        _refuse("train.val_subset", t.val_subset, "must be >= 1 (or null for all)")
    if t.val_every_epochs < 1:
        _refuse("train.val_every_epochs", t.val_every_epochs, "must be >= 1")
    if t.val_every is not None and t.val_every < 1:
        _refuse("train.val_every", t.val_every, "must be >= 1 (or null)")
    n_train = train_size(cfg)
    if not 1 <= t.batch_size <= n_train:
        _refuse("train.batch_size", t.batch_size, f"must be in [1, {n_train}] (training examples)")
    if m.ghost_batch_size is not None:
        g = m.ghost_batch_size
        if g < 1 or t.batch_size % g:
            _refuse("model.ghost_batch_size", g, f"must divide train.batch_size={t.batch_size}")
    for name in cfg.probes.names:
        _check_choice("probes.names", name, PROBES)
    if cfg.probes.every < 1:
        _refuse("probes.every", cfg.probes.every, "must be >= 1")
    if not 1 <= cfg.probes.batch_size <= n_train:
        _refuse("probes.batch_size", cfg.probes.batch_size, f"must be in [1, {n_train}]")
    if any(lr <= 0 for lr in cfg.probes.lrs):
        _refuse("probes.lrs", list(cfg.probes.lrs), "must all be > 0")
    if t.amp and cfg.device == "cpu":
        _refuse("train.amp", t.amp, "needs device=cuda (or auto on a machine with a GPU)")
    if cfg.threads is not None and cfg.threads < 1:
        _refuse("threads", cfg.threads, "must be >= 1 (or null for automatic)")


def to_config(cfg: DictConfig | Config) -> Config:
    """A composed Hydra config as the typed dataclass (hydra keys dropped)."""
    if isinstance(cfg, Config):
        return cfg
    node = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), node))


# Config keys that only runs of one norm read: in the run tables they are blank for the
# other norms, so a BN or plain run is not listed (nor paired) under noisy BN's noise level.
NORM_ONLY_KEYS = {"model.noise_std": "noisy_batch", "model.groups": "group"}


def validated(epoch: int, epochs: int, val_every_epochs: int) -> bool:
    """Whether a run of `epochs` epochs validates after `epoch`: every val_every_epochs-th
    epoch and the last (the final metrics every measure reads)."""
    return epoch == epochs or epoch % val_every_epochs == 0
