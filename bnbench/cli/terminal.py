"""Where the command line writes: tables to stdout, one-line errors to stderr."""

from __future__ import annotations

import shlex
import signal
import sys

import typer
from rich.console import Console

console = Console()
if not console.is_terminal:  # logs and pipes: do not squeeze the tables to 80 columns
    console.width = 160
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, `bnbench: ...`, then exit with `code` (2: refused input)."""
    err_console.print(f"bnbench: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def this_command() -> str:
    """The command line as the user typed it, to run again."""
    return shlex.join(["bnbench", *sys.argv[1:]])


def fail_unless_finished(runs: dict[str, str | None]) -> None:
    """Exit 1, naming the runs left and why, unless every planned run is finished (`runs`:
    run id -> why it is unfinished, None when finished): a script trusts exit code 0."""
    left = {run_id: why for run_id, why in runs.items() if why is not None}
    if not left:
        return
    shown = [f"{run_id} ({why})" for run_id, why in list(left.items())[:10]]
    more = f" and {len(left) - 10} more" if len(left) > 10 else ""
    held = any(why.startswith("held by") for why in left.values())
    when = " once the processes holding runs are done" if held else ""
    fail(
        f"{len(left)} of {len(runs)} planned run(s) not finished: {', '.join(shown)}{more}; "
        f"to finish them, run the same command again{when}: {this_command()}",
        code=1,
    )


def ignore_stop_signals() -> None:
    """While exiting after Ctrl-C or SIGTERM: a second Ctrl-C or a SIGTERM (INT, then TERM)
    would end the process by that signal (exit -2 or -15) instead of exit code 130."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
