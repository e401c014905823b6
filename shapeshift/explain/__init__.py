"""Saliency pictures of a trained run: where it looks on i.i.d. and shifted images (Grad-CAM, via torchcam).

    python -m shapeshift.explain run=<run dir>                                  # iid and position/s5

    command.py    explain(): loads the run and its evaluation sets, draws the grid; __main__.py is the command
    saliency.py   Grad-CAM maps of a batch and the picture they make

Rule: a command package, like audit/: imported by nothing inside shapeshift.
"""

from shapeshift.explain.command import explain

__all__ = ["explain"]
