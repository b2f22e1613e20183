"""Typed run configuration, registered with Hydra's ConfigStore.

The dataclasses are the schema: Hydra refuses unknown keys and wrong types while
composing; bnbench.config.validation then refuses values that are well-typed but
meaningless (negative LR, a ghost batch that does not divide the batch, ...), before any
training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
LOGGERS = ("none", "tensorboard", "mlflow")
# What a sweeper's trial returns (summary.json's final metrics, and the best epoch's val_acc):
# hyperparameters are chosen on validation or training data, never on test.
OBJECTIVES = ("val_acc", "val_loss", "best_val_acc", "train_acc", "train_loss")

# Training-set sizes, known without loading the data, so a batch size can be checked up front.
TRAIN_SIZES = {"fashion_mnist": 60_000, "mnist": 60_000, "cifar10": 50_000}
TEST_SIZES = {"fashion_mnist": 10_000, "mnist": 10_000, "cifar10": 10_000}
NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10, "synthetic": 4}
IMAGE_SIZES = {"fashion_mnist": 28, "mnist": 28, "cifar10": 32}  # square; synthetic: its own


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
    # Training batches only: random crop of the image padded by 4 (with the mean colour) and
    # a horizontal flip half the time, the standard CIFAR-10 augmentation.
    augment: bool = False


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
    # Speed switches, off by default: the numbers equal the default path's within float32
    # rounding, so like channels_last they stay out of the run id. Kept only where measured
    # faster (docs/performance.md).
    fused_optimizer: bool = False  # the optimizer step as one fused kernel (default: foreach)
    compile: bool = False  # torch.compile of the training step's model; evaluation stays eager


IN_TRAINING_PROBES = ("ics", "percentiles", "layer_stats", "one_step")  # every probes.every steps
AFTER_TRAINING_PROBES = ("test_time", "variance_shift")  # once, on the trained model
PROBES = IN_TRAINING_PROBES + AFTER_TRAINING_PROBES


@dataclass
class ProbeConfig:
    """Measurements beyond the loss curve, written to probes.csv (see bnbench/probes.py)."""

    names: list[str] = field(default_factory=list)  # any of PROBES; empty = no probes
    every: int = 50  # steps between in-training probes (ics, percentiles, layer_stats)
    batch_size: int = 256  # the fixed probe batch, the first examples of the training split
    lrs: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 3.0])
    test_batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 8, 32, 256])


@dataclass
class LoggerConfig:
    """Where a run's rows also go while it trains, besides its CSVs (conf/logger/)."""

    name: str = "none"  # none | tensorboard (event files in the run directory) | mlflow
    tracking_uri: str | None = None  # mlflow only; null: the file store results_dir/mlruns


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
    # The claims' protocols this run was planned under, "claim:hash" (bnbench claims run sets
    # them; the pre-registration lock compares them). A record, not part of what it computes.
    protocols: list[str] = field(default_factory=list)
    objective: str = "val_acc"  # what a run returns to a sweeper that tunes (Optuna's)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


class ConfigError(ValueError):
    """A refused value: the message is one line naming key, value and what is allowed."""


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
