"""Job states on SLURM clusters without accounting: submitit polls with sacct, which fails
there at every poll (a warning each time) and never sees a task that left no result
(scancel) end. Where sacct does not answer, poll with squeue instead, and say so once."""

from __future__ import annotations

import getpass
import subprocess

from submitit.core import logger
from submitit.slurm import slurm

ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}


class SqueueWhereNoSacct(slurm.SlurmInfoWatcher):
    """submitit's watcher: sacct where it answers; squeue, said once, where it does not."""

    def __init__(self, delay_s: int = 600) -> None:
        super().__init__(delay_s)
        self.accounting: bool | None = None  # unknown until the first poll

    def _make_command(self) -> list[str] | None:
        command = super()._make_command()
        if command is None:
            return None
        if self.accounting is None:
            self.accounting = subprocess.run(command, capture_output=True).returncode == 0
            if not self.accounting:
                logger.get_logger().info(
                    "sacct does not answer (accounting is off on this cluster): "
                    "polling job states with squeue"
                )
        if self.accounting:
            return command
        return ["squeue", "--states=all", f"--user={getpass.getuser()}", "--format=%i|%T|%N"]

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        if self.accounting:
            return super().read_info(string)
        text = string.decode() if isinstance(string, bytes) else string
        rows = []
        for line in text.splitlines()[1:]:  # squeue's header: JOBID|STATE|NODELIST
            job, state, nodes = (line.split("|") + ["", ""])[:3]
            rows.append(f"{job}|{state if state in ENDED else 'RUNNING'}|{nodes}")
        info = super().read_info("\n".join(["JobID|State|NodeList", *rows]))
        for job in self._registered - self._finished - set(info):
            # squeue lists a job from its submission until MinJobAge after its end
            info[job] = {"JobID": job, "State": "COMPLETED", "NodeList": ""}
        return info


def poll_without_accounting() -> None:
    """Install the watcher for every SLURM job this process submits."""
    if not isinstance(slurm.SlurmJob.watcher, SqueueWhereNoSacct):
        slurm.SlurmJob.watcher = SqueueWhereNoSacct(delay_s=600)
