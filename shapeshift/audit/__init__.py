"""Quality control on real deployment images: a trained run's predictions and its gate's flags, or, for a
whole sweep, which model to deploy.

    python -m shapeshift.audit run=<run dir> images=<folder>       # audit.csv, skipped.csv, contact_sheet.png
    python -m shapeshift.audit run=<sweep dir> images=<folder>     # ranking.csv, ranking.md: every run ranked

Images are converted the way the run's data was made (RGB or grey, white behind transparency, resized to
`data.image_size`). The run's gate (`qc.gate`, an o.o.d. detector fitted on its training images) flags an
image whose score falls below the threshold that passes `keep` (95% by default) of the run's right
i.i.d. validation predictions. A folder with one subfolder per class (`star/`, `moon/`) is a labelled
sample: accuracy is measured too. Outputs go to `<run or sweep>/audit/<folder name>/` (or `out=`), never
into the image folder.

    command.py    audit(), rank_sweep(), summary(): the outputs above; __main__.py is the command
    images.py     a folder of images read the way a run's data was made (labelled by subfolder or not)
    screen.py     one trained run on those images: predictions, the gate's scores and flags
    ranking.py    every run of a sweep ranked on one sample (Wilson and Student-t intervals)
    sheet.py      the contact sheet: the most suspicious images first
"""

from shapeshift.audit.command import audit, rank_sweep, summary

__all__ = ["audit", "rank_sweep", "summary"]
