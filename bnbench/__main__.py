"""`python -m bnbench`: the `bnbench` command."""

from bnbench.cli import app

if __name__ == "__main__":
    app()
