"""Procedural star/moon data: rendering, o.o.d. shifts, caching, augmentation and the datamodule."""
