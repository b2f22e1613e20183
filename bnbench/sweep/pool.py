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
from bnbench.config.schema import AFTER_TRAINING_PROBES, IN_TRAINING_PROBES, Config, validated
from bnbench.config.validation import n_test, train_size
from bnbench.store.files import recorded_seconds, run_dir
from bnbench.sweep.progress import SweepProgress, planned_cost, sweep_name

# Seconds per unit on one core, fitted (non-negative least squares) to the wall times of
# the completed runs of `make claims` on a fresh clone, 2-core AMD EPYC VM, 1 thread a run,
# 2026-12-07: each claim's sweep within 0.90-1.16x of its time, 90% of runs within
# 0.77-1.43x. (The per-step cost had been taken 40x too high: small batches came first.)
SECONDS_PER_TRAINED_IMAGE = 0.00019  # forward and backward, at the default net's size
SECONDS_PER_STEP = 0.00099  # the per-step framework cost that dominates at tiny batches
SECONDS_PER_EVALUATED_IMAGE = 0.000013  # forward only: validation, test, eval_train
SECONDS_PER_PROBED_IMAGE = 0.00075  # in-training probes, per image of the probe batch
SECONDS_PER_FINAL_PROBED_IMAGE = 0.00026  # after training: test images x test batch sizes


def estimated_cost(cfg: Config) -> float:
    """The run's expected seconds on one core: images trained, evaluated and probed, scaled
    by the net's size, plus a per-step overhead. It orders the pool (longest first) and
    weighs the ETA, which corrects it by each sweep's own times (sweep.progress)."""
    d, m, t, p = cfg.dataset, cfg.model, cfg.train, cfg.probes
    size = m.depth * sum(w * w for w in m.widths) / (16**2 + 32**2 + 64**2)
    train = train_size(cfg)
    steps = t.epochs * (train // t.batch_size)
    validations = sum(validated(e, t.epochs, t.val_every_epochs) for e in range(1, t.epochs + 1))
    validations += steps // t.val_every if t.val_every else 0
    evaluated = validations * min(t.val_subset or d.val_size, d.val_size)
    tests = n_test(cfg)
    evaluated += (validations if t.test_every_epoch else 1) * tests
    evaluated += train if t.eval_train else 0
    in_training = [n for n in p.names if n in IN_TRAINING_PROBES]
    probed = steps // p.every * len(in_training) * p.batch_size
    after = [n for n in p.names if n in AFTER_TRAINING_PROBES]
    final_probed = len(after) * tests * len(p.test_batch_sizes)
    images = (
        SECONDS_PER_TRAINED_IMAGE * t.epochs * train
        + SECONDS_PER_EVALUATED_IMAGE * evaluated
        + SECONDS_PER_PROBED_IMAGE * probed
        + SECONDS_PER_FINAL_PROBED_IMAGE * final_probed
    )
    return size * images + SECONDS_PER_STEP * steps


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
                line = sweep.finished(run_id(cfg), status, recorded_seconds(run_dir(cfg)))
                log(f"{cfg.sweep} {run_id(cfg)} seed={cfg.seed}: {status}; {line}")
        except KeyboardInterrupt:  # Ctrl-C reaches the workers too; SIGTERM or kill only us
            for worker in list(pool._processes.values()):
                worker.terminate()  # SIGTERM: the runner marks the run in flight interrupted
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            sweep.close()
    return statuses
