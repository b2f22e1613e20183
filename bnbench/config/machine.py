"""What this process may use of the machine, without importing torch (the report uses it)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The CPUs this process may use: its affinity mask (what SLURM's cgroup or taskset set),
    capped by SLURM_CPUS_PER_TASK on clusters that allocate CPUs without pinning them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cores
