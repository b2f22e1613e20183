"""The run files as tables, and what is computed on them: statistics, pairing, measures."""
