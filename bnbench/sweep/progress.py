"""A sweep's progress: runs finished of those planned, failures, and an ETA from the planned
cost of the runs left. On a terminal it is a bar that stays above the bar of the run in
training; otherwise one line after each run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bnbench.train.progress import leave_board, shared_board

FAILED = ("failed", "interrupted")  # and "lost (...)": a worker died under the pool
TRAINED = ("completed", "diverged", "failed")  # trained here (not skipped, not held elsewhere)


@dataclass
class PlannedCost:
    run_id: str
    cost: float  # sweep.pool.estimated_cost: relative, only ratios of it are read
    done: bool  # finished before this sweep started: skipped, never counted in the ETA


def sweep_name(sweeps: list[str]) -> str:
    """What the line calls the runs: the sweep's name, or how many sweeps they span."""
    names = list(dict.fromkeys(sweeps))
    return names[0] if len(names) == 1 else f"{len(names)} sweeps"


class SweepProgress:
    """Counts the runs of one sweep as they finish. The ETA is the time spent so far per unit
    of planned cost of the runs trained since the start, times the planned cost left: runs
    finished before the start (a resume) count as done but never as speed."""

    def __init__(
        self, name: str, planned: list[PlannedCost], clock: Callable[[], float] = time.monotonic
    ):
        self.name = name
        self.planned = {p.run_id: p for p in planned}
        self.clock = clock
        self.started = clock()
        self.statuses: dict[str, str] = {p.run_id: "skipped" for p in planned if p.done}
        self.trained_cost = 0.0
        self.board = shared_board()
        self.task = None
        if self.board is not None:
            self.task = self.board.add_task(self.text(), total=len(planned), completed=self.done)

    @property
    def done(self) -> int:
        return len(self.statuses)

    @property
    def failed(self) -> int:
        return sum(s in FAILED or s.startswith("lost") for s in self.statuses.values())

    def eta_s(self) -> float | None:
        """Seconds left, or None before the first run trained since the start."""
        if self.trained_cost <= 0:
            return None
        left = sum(p.cost for r, p in self.planned.items() if r not in self.statuses)
        return (self.clock() - self.started) / self.trained_cost * left

    def text(self) -> str:
        eta = self.eta_s()
        when = "ETA ?" if eta is None else f"ETA {eta / 60:.1f} min"
        minutes = (self.clock() - self.started) / 60
        return (
            f"[sweep {self.name}] {self.done}/{len(self.planned)} runs finished, "
            f"{self.failed} failed, "
            f"{minutes:.1f} min elapsed, {when}"
        )

    def finished(self, run_id: str, status: str) -> str:
        """Record a run's status (skipped: it was finished before); the sweep's line."""
        if run_id in self.statuses or run_id not in self.planned:
            return self.text()
        self.statuses[run_id] = status
        if status in TRAINED:
            self.trained_cost += self.planned[run_id].cost
        line = self.text()
        if self.task is not None:
            self.board.update(self.task, completed=self.done, description=line)
        return line

    def close(self) -> None:
        if self.task is not None:
            leave_board(self.task)
            self.task = None
