"""Reports from the run files alone: a sweep's tables, figures and pages, a results root's index."""
