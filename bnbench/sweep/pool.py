"""Many sweeps through one pool of warm workers: what `bnbench claims run` trains with.

Each claim is its own sweep, and running them one after another leaves a worker idle at
every sweep's tail and starts a fresh process (torch import, data load) per sweep. Here the
runs of every planned sweep go to one set of worker processes, longest first, so the pool
stays full until the very end; each worker keeps torch imported and the datasets loaded
(bnbench.train.data caches them per process) across all its runs.

A run is still trained by bnbench.train.runner.execute, so holds, resume and interrupts behave
exactly as under `bnbench run`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from bnbench.config.identity import run_id
from bnbench.config.schema import Config
from bnbench.config.validation import train_size
from bnbench.sweep.progress import SweepProgress, planned_cost, sweep_name, trained_seconds


def estimated_cost(cfg: Config) -> float:
    """A rough relative cost, for scheduling the longest runs first: image-passes scaled by
    the net's size, plus a per-step overhead that dominates at tiny batches."""
    images = cfg.train.epochs * train_size(cfg)
    width = sum(w * w for w in cfg.model.widths) / (16**2 + 32**2 + 64**2)
    steps = images / cfg.train.batch_size
    return images * cfg.model.depth * width + 200 * steps


def _warm_up() -> None:
    import torch  # noqa: F401  (imported once per worker, not once per run)

    die_with_parent()


PR_SET_PDEATHSIG = 1  # Linux prctl option: a signal for this process when its parent dies


def die_with_parent() -> int:
    """SIGTERM this worker when the process that started it (the pool's fork server, joblib's
    parent) dies, so a killed sweep leaves no orphan training on: the runner marks its run
    interrupted. Returns that parent's pid."""
    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux/glibc: the pool's own shutdown still applies
        return parent
    if os.getppid() != parent:  # it died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return parent


def _train(cfg: Config, jobs: int) -> str:
    from bnbench.train.runner import execute

    return execute(cfg, parallel_jobs=jobs)


def run_pool(configs: list[Config], jobs: int, log: Callable[[str], None]) -> dict[str, str]:
    """Train every config on `jobs` workers, longest first; {run_id: status}. Ctrl-C stops
    the pool: runs in flight are marked interrupted (by the runner) and the rest not started."""
    order = sorted(configs, key=estimated_cost, reverse=True)
    statuses: dict[str, str] = {}
    planned = [planned_cost(c, estimated_cost(c)) for c in order]
    sweep = SweepProgress(sweep_name([c.sweep for c in order]), planned)
    context = multiprocessing.get_context("forkserver")  # no fork of a threaded parent
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_warm_up) as pool:
        futures = {pool.submit(_train, cfg, jobs): cfg for cfg in order}
        try:
            for future in as_completed(futures):
                cfg = futures[future]
                try:
                    statuses[run_id(cfg)] = future.result()
                except Exception as error:  # a worker died (OOM kill): the next call retrains
                    statuses[run_id(cfg)] = f"lost ({error.__class__.__name__})"
                status = statuses[run_id(cfg)]
                line = sweep.finished(run_id(cfg), status, trained_seconds(cfg))
                log(f"{cfg.sweep} {run_id(cfg)} seed={cfg.seed}: {status}; {line}")
        except KeyboardInterrupt:  # Ctrl-C reaches the workers too; SIGTERM or kill only us
            for worker in list(pool._processes.values()):
                worker.terminate()  # SIGTERM: the runner marks the run in flight interrupted
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            sweep.close()
    return statuses
