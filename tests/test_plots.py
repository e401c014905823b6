"""The report's figures, read back from their matplotlib artists: one colour per arch in every panel and
figure, legends beside the data (not over it), titles inside the figure, `position s5` in the heatmap."""

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex

from shapeshift import reporting as rp
from shapeshift.reporting import plots

FAMILIES = ("position", "scale")


def write_run(root: Path, arch: str, aug: str, seed: int, iid: float, padding: str | None = None) -> None:
    """A finished run: metrics.json (family f at severity k scores iid - 0.1 k - 0.05 f; s5 of position is
    its own number, so a column can be told from the family mean), run.json, risk_coverage.json."""
    run = root / f"{arch},{aug},{padding},{seed}"
    run.mkdir(parents=True)
    m = {"arch": arch, "aug": aug, "seed": seed, "test/iid/acc": iid, "test/mix/acc": iid - 0.1}
    every = []
    for j, family in enumerate(FAMILIES):
        values = [iid - 0.1 * k - 0.05 * j for k in range(1, 6)]
        m |= {f"test/{family}/s{k}/acc": v for k, v in enumerate(values, start=1)}
        m[f"test/{family}/acc"] = sum(values) / 5
        every += values
    m["test/ood/acc"] = sum(every) / len(every)
    (run / "metrics.json").write_text(json.dumps(m))
    keys = {"seed": seed} | ({"arch.padding_mode": padding} if padding else {})
    (run / "run.json").write_text(json.dumps({"keys": keys, "identity": {}}))
    risk = {"set": "mix", "detector": "knn", "coverage": [0.25, 0.5, 1.0], "risk": [0.0, 0.05, iid / 4]}
    (run / "risk_coverage.json").write_text(json.dumps(risk))


@pytest.fixture
def report_data(tmp_path):
    """Panels that hold different archs (the case that shifted colours): gap only with aug=basic, cnn
    only with aug=none, two padding variants of resnet18 with both, and maxpool with both."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(root, "cnn", "none", seed, 0.9 + 0.04 * seed)
        write_run(root, "gap", "basic", seed, 0.8 + 0.05 * seed)
        for aug in ("none", "basic"):
            write_run(root, "maxpool", aug, seed, 0.85)
            for padding in ("zeros", "circular"):
                write_run(root, "resnet18", aug, seed, 0.95 - 0.05 * seed, padding)
    runs = rp.collect([root])
    return root, rp.summarize(runs), runs


def colours_by_label(fig) -> dict[str, set[str]]:
    """{legend label: colours it has in any panel}: every labelled line, and bars by their tick label."""
    seen: dict[str, set[str]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                seen.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
        if ax.patches:  # the gain figure: bar groups centred on their arch's tick
            names = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]  # a variant's key: a line
            ticks = dict(zip(ax.get_xticks(), names, strict=True))
            for bar in ax.patches:
                arch = ticks[round(bar.get_x() + bar.get_width() / 2)]
                seen.setdefault(arch, set()).add(to_hex(bar.get_facecolor()))
    return seen


def draw(out: Path, groups, runs) -> dict[str, object]:
    figures = {"heatmap": plots.heatmap(out / "h.png", groups, runs)}
    for aug in ("none", "basic"):
        figures[f"severity {aug}"] = plots.severity_curves(out / f"s_{aug}.png", groups, runs, aug)
    figures["risk"] = plots.risk_coverage(out / "r.png", groups)
    figures["gain"] = plots.gain_bars(out / "g.png", groups)
    assert all(figures.values()) and all((out / n).is_file() for n in ("h.png", "r.png", "g.png")), figures
    return figures


def test_each_arch_has_one_colour_in_every_panel_and_figure(report_data, tmp_path):
    _, groups, runs = report_data
    labels = {g.arch for g in groups}
    assert labels == {
        "cnn",
        "gap",
        "maxpool",
        "resnet18 padding_mode=circular",
        "resnet18 padding_mode=zeros",
    }
    figures = draw(tmp_path, groups, runs)
    colour: dict[str, set[str]] = {}
    for fig in figures.values():
        for label, colours in colours_by_label(fig).items():
            colour.setdefault(label, set()).update(colours)
    assert set(colour) == labels
    assert all(len(c) == 1 for c in colour.values()), colour
    assert len({c for cs in colour.values() for c in cs}) == len(labels)  # and no two archs share one
    assert colour["cnn"] == {to_hex("tab:blue")} and colour["gap"] == {to_hex("tab:green")}
    # Every arch of a figure is in its legend, in the report's order, gap too though absent from panel 1.
    (legend,) = figures["risk"].legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "cnn",
        "maxpool",
        "gap",
        "resnet18 padding_mode=circular",
        "resnet18 padding_mode=zeros",
    ]
    # The colours depend on which labels a report has, not on the order its groups come in.
    assert plots.arch_colors(groups) == plots.arch_colors(list(reversed(groups)))


def test_gain_bars_tell_augmentations_apart_by_hatching(report_data, tmp_path):
    root, _, _ = report_data
    write_run(root, "maxpool", "strong", 0, 0.8)
    runs = rp.collect([root])
    groups = rp.summarize(runs)
    fig = plots.gain_bars(tmp_path / "g.png", groups)
    (ax,) = fig.axes
    hatches = {}
    for bar in ax.patches:
        hatches.setdefault(bar.get_hatch() or "", set()).add(to_hex(bar.get_facecolor()))
    assert len(hatches) == 2  # basic and strong
    assert {to_hex("tab:orange")} <= hatches[plots.HATCHES[1]]  # maxpool's colour whatever the augmentation
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["aug=basic", "aug=strong"]


def test_legends_stay_off_the_data_and_titles_inside_the_figure(report_data, tmp_path):
    _, groups, runs = report_data
    narrow = [g for g in groups if g.arch == "maxpool"]  # one bar group: the old figure was 2.7 in wide
    figures = draw(tmp_path, groups, runs) | {"narrow gain": plots.gain_bars(tmp_path / "n.png", narrow)}
    for name, fig in figures.items():
        canvas = FigureCanvasAgg(fig)  # the figure came back closed, without one
        canvas.draw()
        renderer = canvas.get_renderer()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        assert legends or name == "heatmap", name
        titles = [t for t in [fig._suptitle, *(ax.title for ax in fig.axes)] if t and t.get_text()]
        for title in titles:
            box = title.get_window_extent(renderer)
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, (name, title)
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0, name
            for ax in fig.axes:
                if ax.axison:
                    assert not box.overlaps(ax.get_window_extent(renderer)), (name, ax.get_title())
            for title in titles:
                assert not box.overlaps(title.get_window_extent(renderer)), (name, title)
        for ax in fig.axes:  # tick labels side by side, not over each other
            ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
            assert not any(a.overlaps(b) for a, b in pairwise(ticks)), (name, ax.get_title())


def test_heatmap_has_a_position_s5_column(report_data, tmp_path):
    _, groups, runs = report_data
    fig = plots.heatmap(tmp_path / "h.png", groups, runs)
    ax = fig.axes[0]  # aug=none: cnn, maxpool, the resnet18 variants
    headers = [t.get_text() for t in fig.axes[1].get_xticklabels()]  # the panels share the x axis
    assert headers == ["iid", "position", "position s5", "scale", "mix", "ood"]
    column = headers.index("position s5")
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert (cells[0, column - 1], cells[0, column]) == ("0.62", "0.42")  # cnn: i.i.d. 0.92, family, s5


def test_the_risk_coverage_title_names_every_gate_the_runs_chose(report_data, tmp_path):
    root, groups, _ = report_data
    first = next(p for p in sorted(root.iterdir()) if p.name.startswith("cnn"))
    data = json.loads((first / "risk_coverage.json").read_text())
    (first / "risk_coverage.json").write_text(json.dumps(data | {"detector": "msp"}))
    fig = plots.risk_coverage(tmp_path / "r.png", groups)
    assert "each run's own gate: knn, msp" in fig._suptitle.get_text()


def test_severity_bands_stay_within_0_and_1_and_the_title_gives_n(report_data, tmp_path):
    _, groups, runs = report_data
    fig = plots.severity_curves(tmp_path / "s.png", groups, runs, "none")
    for ax in fig.axes:
        for band in ax.collections:
            ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
            assert ys.min() >= 0.0 and ys.max() <= 1.0
    assert "mean over 2 seed(s) per line" in fig._suptitle.get_text()
