"""The run directory's files and their one schema, a process's hold on a run, their readers."""
