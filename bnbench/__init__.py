"""bnbench: put the popular claims about batch normalization on trial.

For notebooks and scripts: `bnbench.load_runs(path)` and `bnbench.load_curves(path)` return
the tidy tables the report uses (one row per run; one row per run and epoch).
"""

__version__ = "0.1.0"
__all__ = ["load_runs", "load_curves"]


def __getattr__(name: str):
    # Lazy, so `import bnbench` stays light and the CLI does not pay for pandas at start-up.
    if name in __all__:
        from bnbench import aggregate

        return getattr(aggregate, name)
    raise AttributeError(f"module 'bnbench' has no attribute {name!r}")
