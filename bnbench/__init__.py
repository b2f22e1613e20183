"""bnbench: put the popular claims about batch normalization on trial.

For notebooks and scripts: `bnbench.load_runs(path)` and `bnbench.load_curves(path)` return
the tidy tables the report uses (one row per run; one row per run and epoch);
`load_steps(path)` and `load_evals(path)` the per-step training loss and validation curves;
`load_verdicts(root)` the claims' verdicts a report wrote (one row per claim and measure).
"""

from bnbench.config.version import __version__ as __version__

__all__ = ["load_runs", "load_curves", "load_steps", "load_evals", "load_verdicts"]


def __getattr__(name: str):
    # Lazy, so `import bnbench` stays light and the CLI does not pay for pandas at start-up.
    if name == "load_verdicts":
        from bnbench.claims import verdict_table

        return verdict_table.load_verdicts
    if name in __all__:
        from bnbench.analysis import tables

        return getattr(tables, name)
    raise AttributeError(f"module 'bnbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
