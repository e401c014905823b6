"""Experiment trackers: the configured Lightning logger, W&B offline by default, its tables and artifacts,
and the Hydra callback that reports a finished sweep.
Rule: may read reports and runs; never builds a model."""
