"""A run's typed config and its checks, its identity, bnbench's paths, the machine's cores."""
