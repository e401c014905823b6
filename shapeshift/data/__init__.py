"""Procedural star/moon data: rendering, o.o.d. shifts, caching, augmentation and the datamodule."""

from shapeshift.metric_keys import IID  # noqa: F401 - where data modules and models look for it
