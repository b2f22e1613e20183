"""A sweep's progress: runs finished of those planned, failures, and an ETA from the planned
cost of the runs left, corrected by the time each group's runs have taken so far. On a
terminal it is a bar that stays above the bar of the run in training; otherwise one line
after each run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bnbench.config.identity import run_id
from bnbench.config.schema import Config
from bnbench.train.progress import leave_board, shared_board

FAILED = ("failed", "interrupted")  # and "lost (...)": a worker died under the pool
TRAINED = ("completed", "diverged", "failed")  # trained here (not skipped, not held elsewhere)


@dataclass
class PlannedCost:
    run_id: str
    cost: float  # sweep.pool.estimated_cost: seconds on one core of the machine it was fitted on
    done: bool  # finished before this sweep started: skipped, never counted in the ETA
    group: str = ""  # runs the cost model rates alike (a claim's sweep): see SweepProgress


def planned_cost(cfg: Config, cost: float, done: bool = False) -> PlannedCost:
    """A run in the sweep's plan, grouped by its sweep (a claim's: one kind of run)."""
    return PlannedCost(run_id(cfg), cost, done, group=cfg.sweep)


def sweep_name(sweeps: list[str]) -> str:
    """What the line calls the runs: the sweep's name, or how many sweeps they span."""
    names = list(dict.fromkeys(sweeps))
    return names[0] if len(names) == 1 else f"{len(names)} sweeps"


class SweepProgress:
    """Counts the runs of one sweep as they finish. The ETA is the time spent so far per unit
    of work trained since the start, times the work left: runs finished before the start (a
    resume) count as done but never as speed.

    The planned cost is rough (claims' sweeps differ several-fold in seconds per unit of
    it: evaluation, probes, tiny batches), so a run's work is its planned cost times the
    seconds per cost unit that its group's trained runs took (their own wall time, as
    `finished` is told it); a group nothing has trained in yet takes the mean of all. Told
    no times, every group counts alike: the planned cost alone."""

    def __init__(
        self, name: str, planned: list[PlannedCost], clock: Callable[[], float] = time.monotonic
    ):
        self.name = name
        self.planned = {p.run_id: p for p in planned}
        self.groups = {p.group for p in planned}
        self.clock = clock
        self.started = clock()
        self.statuses: dict[str, str] = {p.run_id: "skipped" for p in planned if p.done}
        self.trained_cost: dict[str, float] = {}  # group -> planned cost of its runs trained
        self.timed: dict[str, list[float]] = {}  # group -> [seconds, planned cost] of timed runs
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

    def seconds_per_cost(self, group: str) -> float:
        """The group's seconds per planned cost unit so far; the mean of all timed runs for
        a group not timed yet; 1 when no run was timed (the planned cost as it is)."""
        seconds, cost = self.timed.get(group) or (
            sum(t[0] for t in self.timed.values()),
            sum(t[1] for t in self.timed.values()),
        )
        return seconds / cost if seconds > 0 and cost > 0 else 1.0

    def eta_s(self) -> float | None:
        """Seconds left, or None before the first run trained since the start."""
        rate = {g: self.seconds_per_cost(g) for g in self.groups}
        trained = sum(cost * rate[g] for g, cost in self.trained_cost.items())
        if trained <= 0:
            return None
        left = sum(
            p.cost * rate[p.group] for r, p in self.planned.items() if r not in self.statuses
        )
        return (self.clock() - self.started) / trained * left

    def text(self) -> str:
        eta = self.eta_s()
        when = "ETA ?" if eta is None else f"ETA {eta / 60:.1f} min"
        minutes = (self.clock() - self.started) / 60
        return (
            f"[sweep {self.name}] {self.done}/{len(self.planned)} runs finished, "
            f"{self.failed} failed, "
            f"{minutes:.1f} min elapsed, {when}"
        )

    def finished(self, run_id: str, status: str, seconds: float | None = None) -> str:
        """Record a run's status (skipped: it was finished before) and, when known, the
        seconds it trained for; the sweep's line."""
        if run_id in self.statuses or run_id not in self.planned:
            return self.text()
        self.statuses[run_id] = status
        if status in TRAINED:
            planned = self.planned[run_id]
            self.trained_cost[planned.group] = (
                self.trained_cost.get(planned.group, 0.0) + planned.cost
            )
            if seconds and seconds > 0:
                timed = self.timed.setdefault(planned.group, [0.0, 0.0])
                timed[0] += seconds
                timed[1] += planned.cost
        line = self.text()
        if self.task is not None:
            self.board.update(self.task, completed=self.done, description=line)
        return line

    def close(self) -> None:
        if self.task is not None:
            leave_board(self.task)
            self.task = None
