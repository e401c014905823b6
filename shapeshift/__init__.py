"""shapeshift: how architecture and augmentation decide whether a classifier survives o.o.d. data."""

import os

# Albumentations checks PyPI for updates at import; never touch the network on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
