"""Procedural star/moon data: rendering, o.o.d. shifts, caching, augmentation and the datamodule.
Rule: knows no model, QC or run folder; imports only runs/, config/ and console/ from shapeshift."""

from shapeshift.runs.metric_keys import IID  # noqa: F401 - where data modules and models look for it
