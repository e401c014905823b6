"""Process-wide numeric settings, applied before torch starts its thread pool."""

from __future__ import annotations

import torch


def fast_cpu_math() -> None:
    """Flush denormal floats to zero.

    The star/moon task is easy: the loss reaches ~0 within an epoch, gradients underflow into denormal
    floats, and CPU convolution backward then runs 3-5x slower (measured: the strided CNN fell from
    ~1,600 to ~330 img/s). Threads inherit this setting only when they are created after it, so entry
    points call this at import, before the first parallel op creates the pool. Values below ~1e-38
    become 0; nothing else changes.
    """
    torch.set_flush_denormal(True)
