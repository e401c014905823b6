"""Procedural star/moon data: rendering, o.o.d. shifts, caching, augmentation and the datamodule."""

# The i.i.d. test set's name: every data module has it, and metrics, detectors and reports key on it.
IID = "iid"
