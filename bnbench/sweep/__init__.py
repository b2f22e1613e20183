"""Sweeps: planning through Hydra's parser and sweeper, Hydra's job, the worker pool, SLURM."""
