"""bnbench: put the popular claims about batch normalization on trial."""

__version__ = "0.1.0"
