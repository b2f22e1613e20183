"""What a run shows while it trains: a progress bar on a terminal (under the sweep's bar,
when a sweep shows one), plain lines otherwise: one per epoch, and one at least every
HEARTBEAT_S seconds within an epoch, so piped output (tee, CI logs, nohup) never goes
silent for long."""

from __future__ import annotations

import sys
import time

from bnbench.config.identity import run_id
from bnbench.config.schema import Config

HEARTBEAT_S = 10.0  # the longest a run stays silent when its output is not a terminal

_BOARD = None  # the one rich Progress of this process, shared by a sweep's bar and a run's


def shared_board():
    """The process's live progress display on a terminal (started on first use), or None
    when stdout is not a terminal."""
    global _BOARD
    if not sys.stdout.isatty():
        return None
    if _BOARD is None:
        from rich.progress import Progress as RichProgress

        _BOARD = RichProgress(transient=True)
        _BOARD.start()
    return _BOARD


def leave_board(task) -> None:
    """Take a task off the shared board; the last one off stops it (the cursor comes back)."""
    global _BOARD
    if _BOARD is None:
        return
    _BOARD.remove_task(task)
    if not _BOARD.tasks:
        _BOARD.stop()
        _BOARD = None


class Progress:
    """A run's bar on the shared board on a terminal; plain lines otherwise. The bar counts
    each training step and each epoch's evaluation (one tick, labelled while it runs), so it
    reaches its end when the run's last evaluation does."""

    def __init__(self, cfg: Config, steps_per_epoch: int, clock=time.monotonic):
        self.label = f"{run_id(cfg)} {cfg.model.norm}"
        self.epochs = cfg.train.epochs
        self.steps_per_epoch = steps_per_epoch
        self.clock = clock
        self.last_line = clock()
        self.epoch, self.steps = 1, 0
        self.bar = shared_board() if cfg.progress else None
        self.quiet = not cfg.progress
        if self.bar is not None:
            self.task = self.bar.add_task(self.label, total=(steps_per_epoch + 1) * self.epochs)

    def step(self) -> None:
        self.steps += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        elif not self.quiet and self.clock() - self.last_line >= HEARTBEAT_S:
            self._print(
                f"[{self.label}] epoch {self.epoch}/{self.epochs} "
                f"step {self.steps}/{self.steps_per_epoch}"
            )

    def evaluating(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"{self.label} evaluating")

    def epoch_done(self, row: dict, status: str) -> None:
        if "val_acc" in row:
            val = f"val_acc {row['val_acc']:.2%}"
        else:  # diverged, or an epoch train.val_every_epochs does not validate
            val = "diverged" if status == "diverged" else "(not validated)"
        text = (
            f"[{self.label}] epoch {row['epoch']}/{self.epochs} "
            f"train_loss {row['train_loss']:.4f} {val} ({row['epoch_time_s']:.1f} s)"
        )
        self.epoch, self.steps = row["epoch"] + 1, 0
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=self.label)
            self.bar.console.print(text)
        else:
            self._print(text)

    def _print(self, text: str) -> None:
        print(text, flush=True)
        self.last_line = self.clock()

    def close(self) -> None:
        if self.bar is not None:
            leave_board(self.task)
            self.bar = None
