"""One run's lifecycle: hold it, train it (resuming from a checkpoint), record its summary.

A run is held before it trains (bnbench.store.hold), so concurrent sweeps share the work;
Ctrl-C and SIGTERM leave it `interrupted` with its partial CSVs; with train.checkpoint=true
it resumes from its last finished epoch after a kill. The loop's pieces are in
bnbench.train.loop, the process set-up in bnbench.train.runtime, the rows it writes in
bnbench.train.record, what summary.json says in bnbench.store.summary.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from bnbench.config.identity import run_id
from bnbench.config.schema import Config, TrainConfig, validated
from bnbench.store.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    SUMMARY_FILE,
    DiskFull,
    discard,
    is_finished,
    remove_partial_writes,
    run_dir,
    write_config,
    write_json,
)
from bnbench.store.hold import HoldLost, RunHold, describe_holder, take_hold
from bnbench.store.summary import base_summary, process_facts, record_unfinished, resume_facts
from bnbench.train.checkpoint import load_checkpoint, save_checkpoint
from bnbench.train.data import Splits, load_splits
from bnbench.train.loggers import open_dashboard
from bnbench.train.loop import (
    Training,
    evaluate,
    lr_schedule,
    make_optimizer,
    step_model,
    train_epoch,
)
from bnbench.train.model import build_model
from bnbench.train.progress import Progress
from bnbench.train.record import RunRecord, eval_row, finish_summary, write_record
from bnbench.train.runtime import keep_norms_fp32, runtime_facts, setup_runtime, sigterm_raises


def execute(cfg: Config, parallel_jobs: int = 1) -> str:
    """Train the run unless it is finished or another process holds it.

    Returns completed | diverged | failed | skipped (finished earlier) | claimed (another
    process trains it). A crash is recorded, not raised, so the sweep goes on; Ctrl-C and
    SIGTERM mark the run `interrupted` and propagate, so the sweep stops.
    """
    directory = run_dir(cfg)
    if is_finished(directory):
        return "skipped"
    with sigterm_raises():
        hold = take_hold(directory)
        if hold is None:
            _log(cfg, f"skipped: {describe_holder(directory)}")
            return "claimed"
        try:
            if is_finished(directory):  # another process finished it while we took the hold
                return "skipped"
            return train_run(cfg, hold, parallel_jobs)["status"]
        except HoldLost as why:  # we looked dead to another process, which trains it now
            _log(cfg, f"stopped: {why}")
            return "claimed"
        except DiskFull:  # every later run would fail the same way: stop the sweep
            with contextlib.suppress(OSError):
                record_unfinished(cfg, hold, "failed", {"error": "no space left on device"})
            raise
        except Exception as error:  # one broken run must not end the sweep
            if not hold.held():  # taken over while we looked dead: the new holder trains it
                _log(cfg, f"stopped: another process took the run over ({error!r})")
                return "claimed"
            if type(error).__name__ == "UncompletedJobError":  # submitit: no requeue left
                record_unfinished(cfg, hold, "interrupted", {"error": repr(error)})
                _log(cfg, "interrupted at the time limit; the next call resumes it")
                return "interrupted"
            extra = {"error": repr(error), "traceback": traceback.format_exc()}
            record_unfinished(cfg, hold, "failed", extra)
            _log(cfg, f"failed: {error!r}")
            return "failed"
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM, submitit's requeue exit
            record_unfinished(cfg, hold, "interrupted", {})
            _log(cfg, "interrupted; its partial files are kept, the next call trains it again")
            raise
        finally:
            hold.release()


def train_run(cfg: Config, hold: RunHold, parallel_jobs: int = 1) -> dict:
    """Train one run to its end (or its divergence), writing its files after every epoch."""
    directory = run_dir(cfg)
    discard(directory / SUMMARY_FILE)  # a rerun starts from nothing
    remove_partial_writes(directory)  # an interrupted write's temp file; we hold the run
    write_config(directory / CONFIG_FILE, cfg)
    started, timing = time.time(), dict.fromkeys(TIMED, 0.0)
    setup_clock = time.perf_counter()
    device = setup_runtime(cfg, parallel_jobs)

    torch.manual_seed(cfg.seed)
    splits = load_splits(cfg.dataset, cfg.seed).to(device)
    run = setup_training(cfg, splits, device)
    order = torch.Generator().manual_seed(cfg.seed)  # same data order for BN and no-BN
    progress = Progress(cfg, run.steps_per_epoch)
    checkpoint = directory / CHECKPOINT_FILE
    record, discarded = resume(cfg, run, order, device, checkpoint)
    dashboard = open_dashboard(cfg, len(record.steps), len(record.metrics))  # logger=
    run.on_step = step_hook(cfg, run, record, progress, hold, timing)
    timing["setup_s"] = time.perf_counter() - setup_clock

    status, resumed_after, wall_before = "completed", record.epoch, record.wall_time_s
    for epoch in range(record.epoch + 1, cfg.train.epochs + 1):
        status = run_epoch(cfg, run, record, epoch, order, device, progress, timing)
        dashboard.update(record.steps, record.metrics)
        if status == "diverged":
            break
        if cfg.train.checkpoint and epoch < cfg.train.epochs:
            record.wall_time_s = wall_before + time.time() - started
            save_checkpoint(checkpoint, record, run.model, run.optimizer, order)
    progress.close()
    final = after_training(cfg, run, record, timing) if status == "completed" else {}

    summary = base_summary(cfg) | finish_summary(record, status, splits, final)
    summary |= runtime_facts(device, cfg.train.amp) | process_facts(hold)
    summary |= resume_facts(resumed_after, discarded)
    summary["wall_time_s"] = wall_before + time.time() - started
    summary["timing"] = timing  # this process's share; bnbench bench --sweep reads it
    hold.beat(force=True)  # still ours? (raises HoldLost otherwise)
    write_json(directory / SUMMARY_FILE, summary)
    dashboard.finish(summary)
    checkpoint.unlink(missing_ok=True)  # finished: a rerun skips the run, the state is no use
    return summary


def resume(
    cfg: Config, run: Training, order: torch.Generator, device: torch.device, checkpoint: Path
) -> tuple[RunRecord, bool]:
    """The record to go on from: the checkpoint's, with the model, optimizer and data order
    restored from it, or a new one. Also whether a checkpoint that did not load was set aside."""
    if not (cfg.train.checkpoint and checkpoint.exists()):
        return RunRecord(), False
    loaded = load_checkpoint(
        checkpoint, run.model, run.optimizer, order, device, partial(unvalidated, cfg.train)
    )
    if loaded is None:  # set aside, with a warning: the run starts from epoch 1
        return RunRecord(), True
    _log(cfg, f"resuming after epoch {loaded.epoch} from {checkpoint.name}")
    return loaded, False


def unvalidated(train: TrainConfig, record: RunRecord) -> str | None:
    """Why a checkpoint's record cannot go on under train.val_every_epochs: it skipped the
    validation of an epoch this cadence validates (saved under a sparser one)."""
    missing = [
        r["epoch"]
        for r in record.metrics
        if "val_acc" not in r and epoch_validated(train, r["epoch"])
    ]
    if missing:
        return f"epoch {missing[0]} was not validated; train.val_every_epochs validates it"
    return None


def run_epoch(
    cfg: Config,
    run: Training,
    record: RunRecord,
    epoch: int,
    order: torch.Generator,
    device: torch.device,
    progress: Progress,
    timing: dict,
) -> str:
    """One epoch in the next order of the data: train, then, unless it diverged, validate
    where train.val_every_epochs says (and test at the last epoch); its rows go into record,
    which is written out. Returns the run's status after it: completed or diverged."""
    t0 = time.perf_counter()
    perm = torch.randperm(len(run.splits.train_y), generator=order).to(device)
    with timed(timing, "train_s"):  # the hook moves its probes and evals out of it
        result = train_epoch(run, epoch, perm, record.first_loss)
    record.steps += result.step_rows
    record.first_loss, record.epoch = result.first_loss, epoch
    row = {"epoch": epoch, **result.stats}
    status = "diverged" if result.diverged else "completed"
    if not result.diverged and epoch_validated(cfg.train, epoch):
        progress.evaluating()
        with timed(timing, "eval_s"):
            row |= evaluation(run, last=epoch == cfg.train.epochs)
        record.evals.append(eval_row(epoch * run.steps_per_epoch, epoch, row))
    row["epoch_time_s"] = time.perf_counter() - t0
    record.metrics.append(row)
    write_record(cfg, record)
    progress.epoch_done(row, status)
    return status


def after_training(cfg: Config, run: Training, record: RunRecord, timing: dict) -> dict:
    """A completed run's last measurements: the after-training probes (added to record and
    written at once) and, with train.eval_train, the train split in eval mode, returned as
    the train_eval_* keys of summary.json's final."""
    if cfg.probes.names:
        from bnbench.train.probes import final_probes

        step = cfg.train.epochs * run.steps_per_epoch
        with timed(timing, "probes_s"):
            record.probes += final_probes(cfg.probes, run.model, run.splits, step)
        write_record(cfg, record)
    if not cfg.train.eval_train:
        return {}
    with timed(timing, "eval_s"):
        train_eval = evaluate(
            run.model, run.splits.train_x, run.splits.train_y, memory_format(cfg.train)
        )
    return {f"train_eval_{k}": v for k, v in train_eval.items()}


TIMED = ("setup_s", "train_s", "eval_s", "probes_s")  # where a run's time goes


@contextmanager
def timed(timing: dict, key: str, within: str | None = None) -> Iterator[None]:
    """Add the block's seconds to timing[key] (and take them out of timing[within])."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        timing[key] += seconds
        if within:
            timing[within] -= seconds


def setup_training(cfg: Config, splits: Splits, device: torch.device) -> Training:
    """The model (seeded init, memory format, AMP norms), optimizer and LR schedule."""
    model = build_model(cfg.model, splits.in_channels, splits.num_classes, cfg.seed).to(device)
    model = model.to(memory_format=memory_format(cfg.train))
    optimizer = make_optimizer(cfg.optim, model, fused=cfg.train.fused_optimizer)
    if cfg.train.amp:
        keep_norms_fp32(model)
    steps_per_epoch = len(splits.train_y) // cfg.train.batch_size  # the last partial batch drops
    lr_at = lr_schedule(cfg.optim, steps_per_epoch, cfg.train.epochs)
    augment_seed = cfg.seed if cfg.dataset.augment else None
    compiled = step_model(cfg.train, model)
    return Training(
        cfg.train,
        model,
        optimizer,
        splits,
        lr_at,
        steps_per_epoch,
        augment_seed=augment_seed,
        step_model=compiled,
    )


def memory_format(train: TrainConfig) -> torch.memory_format:
    return torch.channels_last if train.channels_last else torch.contiguous_format


def epoch_validated(train: TrainConfig, epoch: int) -> bool:
    return validated(epoch, train.epochs, train.val_every_epochs)


def evaluation(run: Training, last: bool) -> dict:
    """The epoch's val_* metrics (eval mode, on the val subset when set), and test_* at the
    last epoch (every validated epoch with train.test_every_epoch): what the measures read."""
    row = validation(run)
    if last or run.train.test_every_epoch:
        test = evaluate(run.model, run.splits.test_x, run.splits.test_y, memory_format(run.train))
        row |= {f"test_{k}": v for k, v in test.items()}
    return row


def validation(run: Training) -> dict:
    n = run.train.val_subset or len(run.splits.val_y)
    x, y = run.splits.val_x[:n], run.splits.val_y[:n]
    return {f"val_{k}": v for k, v in evaluate(run.model, x, y, memory_format(run.train)).items()}


def step_hook(
    cfg: Config, run: Training, record: RunRecord, progress: Progress, hold: RunHold, timing: dict
):
    """(step, lr) -> None before each update: in-training probes, validation every
    train.val_every steps, progress, the heartbeat."""
    probe = probe_hook(cfg, run, record.probes)
    every, per_epoch = cfg.train.val_every, run.steps_per_epoch

    def hook_validates(step: int) -> bool:
        """Whether the step curve gets a point here that the epoch loop does not record."""
        at_epoch_end = step % per_epoch == 0
        if at_epoch_end and epoch_validated(cfg.train, step // per_epoch):
            return False
        return step % every == 0 or at_epoch_end

    def on_step(step: int, lr: float) -> None:
        with timed(timing, "probes_s", within="train_s"):
            probe(step, lr)
        # After `step` updates. Every epoch's end joins the step curve, whatever
        # val_every_epochs says (steps to a target read it); the epoch loop records its own.
        if every and hook_validates(step):
            epoch = (step - 1) // per_epoch + 1
            with timed(timing, "eval_s", within="train_s"):
                record.evals.append(eval_row(step, epoch, validation(run)))
            run.model.train()  # evaluate() left it in eval mode, mid-epoch
        progress.step()
        hold.beat()  # cheap: touches the file only every HEARTBEAT_S

    return on_step


def probe_hook(cfg: Config, run: Training, rows: list[dict]):
    """(step, lr) -> None: runs the in-training probes on a fixed batch every probes.every steps."""
    if not cfg.probes.names:
        return lambda step, lr: None
    from bnbench.train.probes import step_probes

    x, y = run.splits.train_x[: cfg.probes.batch_size], run.splits.train_y[: cfg.probes.batch_size]
    if cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def probe(step: int, lr: float) -> None:
        if step % cfg.probes.every == 0:
            rows.extend(step_probes(cfg.probes, run.model, lr, x, y, step, run.optimizer))

    return probe


def _log(cfg: Config, message: str) -> None:
    print(f"[{run_id(cfg)}] {message}", file=sys.stderr, flush=True)
