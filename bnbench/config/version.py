"""bnbench's version, as `bnbench --version` prints it and each summary.json records it."""

__version__ = "0.1.0"
