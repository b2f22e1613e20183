"""What a run shows while it trains: a progress bar on a terminal, one line per epoch otherwise."""

from __future__ import annotations

import sys

from bnbench.config import Config
from bnbench.identity import run_id


class Progress:
    """A rich progress bar on a terminal; one plain line per epoch otherwise. The bar counts
    each training step and each epoch's evaluation (one tick, labelled while it runs), so it
    reaches its end when the run's last evaluation does."""

    def __init__(self, cfg: Config, steps_per_epoch: int):
        self.label = f"{run_id(cfg)} {cfg.model.norm}"
        self.epochs = cfg.train.epochs
        self.bar = None
        if cfg.progress and sys.stdout.isatty():
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(transient=True)
            self.task = self.bar.add_task(self.label, total=(steps_per_epoch + 1) * self.epochs)
            self.bar.start()

    def step(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

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
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=self.label)
            self.bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
