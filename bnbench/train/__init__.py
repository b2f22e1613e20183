"""One run, trained: data, model, loop, runtime, the run's lifecycle, checkpoints, probes."""
