"""Benchmarks: training throughput against plain PyTorch, a sweep's time, parallel workers."""
