"""`shapeshift.console.progress.track`: every item once, a bar only where one is drawn."""

import io

from rich.console import Console

from shapeshift.console.progress import track


def test_track_yields_every_item_and_draws_only_on_a_terminal(capsys):
    assert list(track(range(5), "quiet")) == [0, 1, 2, 3, 4]  # pytest's stderr is no terminal
    assert capsys.readouterr().err == ""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    assert list(track(iter(["a", "b", "c"]), "qc: fitting the detectors", total=3, console=console)) == [
        "a",
        "b",
        "c",
    ]
    drawn = out.getvalue()
    assert "qc: fitting the detectors" in drawn and "3/3" in drawn
