"""What a run's summary.json says: its provenance (who ran it, where, with which code) and
its outcome; for a run that stopped early, its status (failed, interrupted) and why."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime, timezone

from bnbench.config.identity import run_id
from bnbench.config.paths import PACKAGE
from bnbench.config.schema import Config
from bnbench.config.version import __version__
from bnbench.store.files import SUMMARY_FILE, run_dir, write_json
from bnbench.store.hold import RunHold


def record_unfinished(cfg: Config, hold: RunHold, status: str, extra: dict) -> None:
    """summary.json for a run that stopped early; the next call trains it again."""
    if not hold.held():
        return  # the run belongs to another process now; its files are not ours to write
    summary = base_summary(cfg) | {"status": status, **extra} | process_facts(hold)
    write_json(run_dir(cfg) / SUMMARY_FILE, summary)


def base_summary(cfg: Config) -> dict:
    """Who ran it, where, with what: the provenance every summary.json carries."""
    import torch  # loaded already: only a process that trains writes a summary

    return {
        "run_id": run_id(cfg),
        "sweep": cfg.sweep,
        "seed": cfg.seed,
        "host": socket.gethostname(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "bnbench": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "git_commit": git_commit(),
    } | slurm_ids()


def process_facts(hold: RunHold) -> dict:
    """When the process that wrote the summary took the run up, and its pid."""
    return {"started_at": hold.started_at, "pid": os.getpid()}


def resume_facts(resumed_after: int, discarded: bool) -> dict:
    """Whether the run went on from a checkpoint, and after which epoch, or set one aside."""
    resumed = {"resumed_after_epoch": resumed_after} if resumed_after else {}
    return resumed | ({"checkpoint_discarded": True} if discarded else {})


def slurm_ids() -> dict:
    """The SLURM job and array task that trained the run, when it ran under SLURM."""
    env = os.environ
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    if job is None:
        return {}
    return {"slurm_job_id": job, "slurm_array_task_id": env.get("SLURM_ARRAY_TASK_ID")}


def _git(*args: str) -> subprocess.CompletedProcess | None:
    """git in bnbench's own checkout; None when installed from a wheel (a virtual environment
    inside the user's repository must not report theirs) or when git cannot run."""
    checkout = PACKAGE.parent
    if not ((checkout / ".git").exists() and (checkout / "conf" / "claims.yaml").exists()):
        return None
    try:
        return subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    """bnbench's own commit when it runs from its git checkout, else None."""
    out = _git("rev-parse", "HEAD")
    return (out.stdout.strip() or None) if out is not None else None


def in_history(commit: str) -> bool | None:
    """Whether the checkout's history holds `commit`; None outside a checkout."""
    known = _git("cat-file", "-e", f"{commit}^{{commit}}")
    if known is None:
        return None
    if known.returncode != 0:
        return False
    out = _git("merge-base", "--is-ancestor", commit, "HEAD")
    return out is not None and out.returncode == 0
