"""Validation: every value a run reads, checked once before any training, refused in one
line that names the key, the value and what is allowed (bnbench.config.schema holds the
settings themselves)."""

from __future__ import annotations

import math
import os
from typing import Any

from bnbench.config.schema import (
    ACTIVATIONS,
    DATASETS,
    DEVICES,
    DROPOUT_KINDS,
    DROPOUT_POSITIONS,
    IMAGE_SIZES,
    INITS,
    LOGGERS,
    NORMS,
    OBJECTIVES,
    OPTIMIZERS,
    PLACEMENTS,
    PROBES,
    SCHEDULES,
    TEST_SIZES,
    TRAIN_SIZES,
    Config,
    ConfigError,
)


def _refuse(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"invalid {key}={value!r}: {allowed}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _refuse(key, value, "allowed: " + " | ".join(choices))


MAX_LR = 1000.0  # far above any LR that trains; inf or 1e308 only overflows into "diverged"
MAX_SEED = 2**32 - 1  # numpy's limit, and what every seeded generator here accepts
MAX_EPOCHS = 100_000  # years of training; a larger count is a typo
MAX_THREADS = 1024  # more torch threads than this fail to start (or oversubscribe any node)
MAX_RESULTS_DIR_BYTES = 3000  # PATH_MAX is 4096: room for /<sweep>/runs/<id>/<temp file>
NAME_MAX = 255  # bytes in one file or directory name


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
    if len(os.fsencode(name)) > NAME_MAX:
        raise ConfigError(f"invalid sweep (a name of {len(os.fsencode(name))} bytes): {LONG}")


LONG = f"a name may have at most {NAME_MAX} bytes"


def _check_results_dir(path: str) -> None:
    """A directory path the file system can hold, with room for the runs inside it."""
    if not path:
        _refuse("results_dir", path, "must be a directory path (not empty)")
    encoded = os.fsencode(path)
    if len(encoded) > MAX_RESULTS_DIR_BYTES or any(len(n) > NAME_MAX for n in encoded.split(b"/")):
        raise ConfigError(
            f"invalid results_dir (a path of {len(encoded)} bytes): must be at most "
            f"{MAX_RESULTS_DIR_BYTES} bytes; {LONG}"
        )


def train_size(cfg: Config) -> int:
    """How many examples one epoch trains on, known without loading the data."""
    d = cfg.dataset
    total = d.synthetic_train if d.name == "synthetic" else TRAIN_SIZES[d.name]
    available = total - d.val_size
    return min(available, d.train_subset) if d.train_subset is not None else available


def n_test(cfg: Config) -> int:
    """How many examples a test evaluation reads, known without loading the data."""
    d = cfg.dataset
    total = d.synthetic_test if d.name == "synthetic" else TEST_SIZES[d.name]
    return min(total, d.test_subset) if d.test_subset is not None else total


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
    _check_choice("logger.name", cfg.logger.name, LOGGERS)
    _check_choice("objective", cfg.objective, OBJECTIVES)
    _check_sweep_name(cfg.sweep)
    _check_results_dir(cfg.results_dir)
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
    if d.split_seed is not None and not 0 <= d.split_seed <= MAX_SEED:
        _refuse("dataset.split_seed", d.split_seed, f"must be in [0, {MAX_SEED}] (or null)")
    for key in ("synthetic_test", "synthetic_image_size"):
        if getattr(d, key) < 1:
            _refuse(f"dataset.{key}", getattr(d, key), "must be >= 1")
    size = d.synthetic_image_size if d.name == "synthetic" else IMAGE_SIZES[d.name]
    if m.widths and size >> len(m.widths) < 1:  # each stage's 2x2 max-pool halves the image
        stages = f"at most {size.bit_length() - 1} stages (widths) for {size}x{size} images"
        _refuse("model.widths", list(m.widths), stages)

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

    if not 1 <= t.epochs <= MAX_EPOCHS:
        _refuse("train.epochs", t.epochs, f"must be in [1, {MAX_EPOCHS}]")
    if o.warmup_epochs > t.epochs:
        _refuse("optim.warmup_epochs", o.warmup_epochs, f"must be at most train.epochs={t.epochs}")
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
    if any(b < 1 for b in cfg.probes.test_batch_sizes):
        _refuse("probes.test_batch_sizes", list(cfg.probes.test_batch_sizes), "must all be >= 1")
    if t.amp and cfg.device == "cpu":
        _refuse("train.amp", t.amp, "needs device=cuda (or auto on a machine with a GPU)")
    if cfg.threads is not None and not 1 <= cfg.threads <= MAX_THREADS:
        _refuse("threads", cfg.threads, f"must be in [1, {MAX_THREADS}] (or null for automatic)")
