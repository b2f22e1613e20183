"""The `bnbench` command: the typer app (bnbench.cli.main) and its sub-apps."""

from bnbench.cli.main import app as app  # the console script's entry point, bnbench.cli:app
