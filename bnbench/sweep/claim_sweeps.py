"""The claims' sweeps as one job: plan them, train them through one pool, report and judge.

`bnbench claims run` is this module: plan each claim's sweep (Hydra's expansion, every run
validated before any trains) and write its plan file; train every unfinished run of every
sweep through one pool of warm workers (bnbench.sweep.pool), or, with a Hydra launcher named
(hydra/launcher=slurm), hand them all to that launcher at once (one SLURM job array); then
rebuild each sweep's report and the results root's index, and print each claim's verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra import initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode

from bnbench.claims.preregistration import protocol_digest
from bnbench.config import paths
from bnbench.config.identity import identity
from bnbench.config.machine import available_cores
from bnbench.config.schema import ConfigError, register_configs
from bnbench.store.files import sweep_dir
from bnbench.store.planfile import record_plans
from bnbench.sweep.job import hydra_job
from bnbench.sweep.overrides import seed_override
from bnbench.sweep.plan import PlannedRun, expand
from bnbench.sweep.pool import run_pool


@dataclass
class ClaimSweep:
    experiment: str
    profile: str
    directory: Path
    plan: list[PlannedRun]
    protocols: dict  # {claim: {"hash": its protocol's hash, "run_ids": its own plan's runs}}

    @property
    def todo(self) -> list[PlannedRun]:
        return [p for p in self.plan if not p.done]


PRIMARY_ONLY_PROFILES = ("quick",)  # profiles that leave out the claims' extra_cells


def plan_claims(claims, profile: str, overrides: list[str], locks=None) -> list[ClaimSweep]:
    """Each distinct experiment of the claims, planned once (claims 4 and 10 share one),
    with the claims' extra cells (further experiment files writing into the same sweep)
    unless the profile runs primary cells only; raises ConfigError on a bad override or an
    extra cell that writes elsewhere. With `locks` ({claim: Lock}), a sweep whose claims are
    locked for this profile runs on their locked seeds unless a seed= override names others.
    Each claim's protocol hash (its entry and its own plan: its experiment and its own extra
    cells) is recorded in the configs of the runs its plan holds. Nothing is written (see
    record_claim_plans)."""
    sweeps = []
    for experiment in dict.fromkeys(c.experiment for c in claims):
        mine = [c for c in claims if c.experiment == experiment]
        overrides_here = [*overrides, *locked_seeds(mine, profile, overrides, locks or {})]
        plan = _plan(experiment, profile, overrides_here)
        directory = sweep_dir(plan[0].config)
        cells = {}
        if profile not in PRIMARY_ONLY_PROFILES:
            extras = {e: None for c in mine for e in c.extra_cells}
            for extra in extras:
                cells[extra] = _plan(extra, profile, overrides_here)
                if sweep_dir(cells[extra][0].config) != directory:
                    raise ConfigError(
                        f"experiment {extra!r} (an extra cell of {experiment!r}) writes to "
                        f"{sweep_dir(cells[extra][0].config)}, not {directory}: set its `sweep`"
                    )
        own = {c.name: own_plan(c, plan, cells) for c in mine}
        protocols = {name: protocol_record(claims, name, runs) for name, runs in own.items()}
        whole = {p.run_id: p for p in plan + [p for extra in cells.values() for p in extra]}
        for name, record in protocols.items():
            for run_id in record["run_ids"]:
                whole[run_id].config.protocols.append(f"{name}:{record['hash']}")
        sweeps.append(ClaimSweep(experiment, profile, directory, list(whole.values()), protocols))
    return sweeps


def locked_seeds(claims, profile: str, overrides: list[str], locks: dict) -> list[str]:
    """The seed override of one sweep: its claims' locked seeds, where they were locked for
    this profile (a lock may name seeds other than the profile's own: a re-lock on fresh
    seeds) and the overrides name none (a replication on seeds of one's own)."""
    if any(o.startswith("seed=") for o in overrides):
        return []
    held = [locks[c.name] for c in claims if c.name in locks]
    seeds = sorted({s for lock in held if lock.profile == profile for s in lock.seeds})
    return [seed_override(seeds)] if seeds else []


def protocols_override(run: PlannedRun) -> str:
    return f"protocols={json.dumps(run.config.protocols)}"


def own_plan(claim, main: list[PlannedRun], cells: dict) -> list[PlannedRun]:
    """The runs of a claim's own protocol: its experiment's and its own extra cells'."""
    extra = [p for name in claim.extra_cells if name in cells for p in cells[name]]
    return list({p.run_id: p for p in main + extra}.values())


def protocol_record(claims, name: str, runs: list[PlannedRun]) -> dict:
    claim = next(c for c in claims if c.name == name)
    # identity(): what a run computes, stable when a key is added later at its old value
    digest = protocol_digest(claim, (identity(p.config) for p in runs))
    return {"hash": digest, "run_ids": [p.run_id for p in runs]}


def _plan(experiment: str, profile: str, overrides: list[str]) -> list[PlannedRun]:
    return expand([f"experiment={experiment}", f"profile={profile}", *overrides], multirun=True)


def record_claim_plans(sweeps: list[ClaimSweep], profile: str, overrides: list[str]) -> None:
    """Each sweep's plan file, which the verdict reads to know the sweep is complete and
    under which protocol each claim's runs were planned."""
    runs = ((s.directory, p.run_id) for s in sweeps for p in s.plan)
    record_plans(runs, profile, overrides, {s.directory: s.protocols for s in sweeps})


def train_claims(sweeps: list[ClaimSweep], jobs: int | None, log: Callable[[str], None]) -> None:
    """Every unfinished run of every sweep through one pool of `jobs` workers."""
    todo = [p.config for sweep in sweeps for p in sweep.todo]
    if not todo:
        log("every run is finished; nothing to train")
        return
    jobs = jobs or available_cores()
    log(f"training {len(todo)} runs on {jobs} workers, the longest first")
    run_pool(todo, jobs, log)


LAUNCH_DIR = ".launch"  # under the results root: the launcher's own files (sbatch, logs)


def launch_claims(sweeps: list[ClaimSweep], launcher: list[str]) -> None:
    """Every unfinished run of every sweep through the Hydra launcher that the `launcher`
    overrides choose, in one batch: under hydra/launcher=slurm, one job array. What a Hydra
    multirun does (compose, then the launcher's launch), with its jobs given, not swept."""
    # the launcher composes each job from its overrides: the protocols it is planned under too
    jobs = [(*p.overrides, protocols_override(p)) for sweep in sweeps for p in sweep.todo]
    if not jobs:
        return
    if any("slurm" in o for o in launcher):
        from bnbench.sweep.slurm import poll_without_accounting  # submitit: an extra

        poll_without_accounting()  # no sacct warning per poll where accounting is off
    directory = sweeps[0].directory.parent / LAUNCH_DIR
    master = [*launcher, f"hydra.sweep.dir={directory}", *paths.searchpath_overrides()]
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(paths.CONF_DIR), job_name="job", version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        config = hydra.compose_config("config", master, run_mode=RunMode.MULTIRUN)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(config))
        task = hydra_job.__wrapped__  # the job itself, without @hydra.main's command line
        Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=task, config=config
        ).launch(jobs, initial_job_idx=0)
    GlobalHydra.instance().clear()


def report_and_judge(sweeps: list[ClaimSweep], claims, console) -> None:
    """Each sweep's report, the root's index, and each claim's verdict on the terminal (the
    verdicts the reports computed)."""
    from bnbench.claims.verdict import verdict  # pandas and matplotlib: only to report
    from bnbench.report.build import build_report

    judged = {}
    for root in dict.fromkeys(sweep.directory.parent for sweep in sweeps):
        result = build_report(root)
        judged |= {v.claim.name: v for v in result.verdicts}
        console.print(f"report: {root / 'report.html'}", highlight=False)
    for claim in claims:
        root = next(s.directory.parent for s in sweeps if s.experiment == claim.experiment)
        said = judged.get(claim.name) or verdict(claim.name, root)  # e.g. a sweep not reported
        console.print(said.sentence, markup=False, highlight=False)
