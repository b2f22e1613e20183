"""`bnbench claims preregister`: lock the claims' protocols before their confirmatory runs
(bnbench.claims.preregistration has the lock and what makes a verdict confirmatory)."""

from __future__ import annotations

import typer
from rich.table import Table

from bnbench.cli.claims_app import (
    CONFIG_DIR,
    PROFILES,
    _claim,
    _claims,
    _seeds_override,
    _short,
    _use_config_dir,
    claims_app,
)
from bnbench.cli.terminal import console, fail
from bnbench.config.schema import ConfigError


@claims_app.command(
    "preregister",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help=(
        "Lock the claims' protocols before their confirmatory runs: for each claim, the hash "
        "of its conf/claims.yaml entry and of its sweep's resolved plan under the profile "
        "(every run's settings but the seed), the profile's seeds, the date and the git "
        "commit, written to conf/preregistration.yaml, which you then commit. An entry that "
        "exists is kept unless --replace, which moves it to the file's history. Extra "
        "arguments are Hydra overrides, as for `claims run`: a protocol locked with them is "
        "confirmed by runs planned with them. With --config-dir the lock is that directory's "
        "preregistration.yaml. --seeds locks seeds other than the profile's (fresh seeds for a "
        "re-lock); `claims run --profile confirmatory` then runs the claim on them.\n\n"
        "Examples:\n\n"
        "  bnbench claims preregister --all\n\n"
        "  bnbench claims preregister placement --replace\n\n"
        "  bnbench claims preregister placement --replace --seeds 110-119\n\n"
        "  bnbench claims preregister --all --check"
    ),
)
def claims_preregister(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="claim names (or --all)"),
    all_claims: bool = typer.Option(False, "--all", help="every claim"),
    profile: str = typer.Option("confirmatory", help="the profile whose seeds confirm"),
    seeds: str = typer.Option(
        None, help="lock these seeds instead of the profile's: A-B or A,B,C (fresh seeds)"
    ),
    replace: bool = typer.Option(False, "--replace", help="supersede existing entries"),
    check: bool = typer.Option(
        False, "--check", help="write nothing: exit 1 unless each locked protocol is unchanged"
    ),
    config_dir: str = CONFIG_DIR,
) -> None:
    from bnbench.claims.preregistration import (
        LockFileError,
        add_locks,
        lock_path,
        lock_sweeps,
        read_lock,
        seed_range,
        write_lock,
    )
    from bnbench.store.summary import git_commit
    from bnbench.sweep.claim_sweeps import plan_claims

    _use_config_dir(config_dir)
    claims = _claims()
    words = [*(names or []), *ctx.args]  # as in `claims run`: key=value words are overrides
    names, overrides = [w for w in words if "=" not in w], [w for w in words if "=" in w]
    chosen = list(claims) if all_claims else list(names or [])
    if not chosen:
        fail("name one or more claims, or --all (see `bnbench claims list`)")
    if profile not in PROFILES:
        fail(f"invalid --profile={profile!r}: allowed: {' | '.join(PROFILES)}")
    for name in chosen:
        _claim(name)
    path = lock_path()
    try:
        lock = read_lock(path)
        # the seeds are locked beside the protocol, not among its overrides
        sweeps = plan_claims(
            [claims[n] for n in chosen], profile, overrides + _seeds_override(seeds)
        )
    except (ConfigError, LockFileError) as error:
        fail(str(error))
    commit = git_commit()
    new = lock_sweeps(sweeps, {n: claims[n] for n in chosen}, profile, commit, overrides)
    if check:
        _check(new, lock)
        return
    refused = add_locks(lock, new, replace)
    if refused:
        fail(
            f"already pre-registered: {', '.join(refused)} (in {path}); --replace "
            "supersedes an entry and keeps the old one in the file's history"
        )
    write_lock(lock, path)
    table = Table("claim", "protocol", "profile", "seeds")
    for name, entry in new.items():
        table.add_row(name, entry.protocol, entry.profile, seed_range(entry.seeds))
    console.print(table)
    again = " ".join([*chosen, "--profile", profile, *overrides])  # runs on the locked seeds
    console.print(
        f"locked in {_short(path)}; commit it before the confirmatory runs "
        f"(`git add {_short(path)} && git commit`), then `bnbench claims run {again}`",
        highlight=False,
    )


def _check(planned: dict, lock) -> None:
    """Each claim's protocol as planned now against its lock; exit 1 on any difference."""
    table = Table("claim", "locked", "now", "same")
    changed = 0
    for name, now in planned.items():
        locked = lock.claims.get(name)
        same = locked is not None and (locked.protocol, locked.entry) == (now.protocol, now.entry)
        changed += not same
        table.add_row(
            name, locked.protocol if locked else "-", now.protocol, "yes" if same else "NO"
        )
    console.print(table)
    if changed:
        fail(f"{changed} protocol(s) differ from the lock (or are not locked)", code=1)
