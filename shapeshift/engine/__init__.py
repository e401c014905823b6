"""Builds and runs a model from a config: backbone, data, classifier, trainer callbacks, checkpoints, devices.
Rule: composes data/, models/ and qc/; knows nothing of loggers, reports or commands."""
