"""Where the command line writes: tables to stdout, one-line errors to stderr."""

from __future__ import annotations

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
