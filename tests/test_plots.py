"""The report's figures, read back from their matplotlib artists: one colour per arch in every panel and
figure, legends beside the data (not over it), titles inside the figure, `position s5` in the heatmap."""

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.text import Text

from shapeshift import reporting as rp
from shapeshift.reporting import plots

FAMILIES = ("position", "scale")


def write_run(
    root: Path,
    arch: str,
    aug: str,
    seed: int,
    iid: float,
    padding: str | None = None,
    catalog: dict | None = None,
) -> Path:
    """A finished run: metrics.json (family f at severity k scores iid - 0.1 k - 0.05 f; s5 of position is
    its own number, so a column can be told from the family mean), run.json, risk_coverage.json (ending
    at 1 - the mix accuracy, as the gate's curve does); with `catalog`, .hydra/config.yaml's
    shift.families, whose families the metrics then hold."""
    run = root / f"{arch},{aug},{padding},{seed}"
    run.mkdir(parents=True)
    if catalog is not None:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text(
            yaml.safe_dump({"seed": seed, "shift": {"families": catalog}}, sort_keys=False)
        )
    m = {"arch": arch, "aug": aug, "seed": seed, "test/iid/acc": iid, "test/mix/acc": iid - 0.1}
    every = []
    for j, family in enumerate(FAMILIES if catalog is None else catalog):
        values = [iid - 0.1 * k - 0.05 * j for k in range(1, 6)]
        m |= {f"test/{family}/s{k}/acc": v for k, v in enumerate(values, start=1)}
        m[f"test/{family}/acc"] = sum(values) / 5
        every += values
    m["test/ood/acc"] = sum(every) / len(every)
    (run / "metrics.json").write_text(json.dumps(m))
    keys = {"seed": seed} | ({"arch.padding_mode": padding} if padding else {})
    (run / "run.json").write_text(json.dumps({"keys": keys, "identity": {}}))
    risk = {"set": "mix", "detector": "knn", "coverage": [0.25, 0.5, 1.0], "risk": [0.0, 0.05, 1.1 - iid]}
    (run / "risk_coverage.json").write_text(json.dumps(risk))
    return run


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


def texts_of(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def rewrite_curve(run: Path, coverage: list[float], risk: list[float]) -> None:
    data = json.loads((run / "risk_coverage.json").read_text())
    (run / "risk_coverage.json").write_text(json.dumps(data | {"coverage": coverage, "risk": risk}))


def test_risk_coverage_averages_runs_on_one_grid_and_ends_at_their_mean_error(tmp_path):
    """Runs that stored different coverage grids: each is interpolated onto the grid they all cover, and the
    line ends, at full coverage, at the mean of the runs' 1 - mix accuracy (the old code averaged list
    positions against the last run's grid: 0.16 here, or an IndexError)."""
    root = tmp_path / "sweep"
    fine = write_run(root, "resnet18", "none", 0, 0.9)  # mix 0.8: error 0.2
    coarse = write_run(root, "resnet18", "none", 1, 0.8)  # mix 0.7: error 0.3
    rewrite_curve(fine, [0.25, 0.5, 0.75, 1.0], [0.0, 0.02, 0.05, 0.2])
    rewrite_curve(coarse, [0.5, 1.0], [0.04, 0.3])
    groups = rp.summarize(rp.collect([root]))
    fig = plots.risk_coverage(tmp_path / "r.png", groups)
    (line,) = fig.axes[0].lines
    xy = line.get_xydata()
    assert xy[:, 0] == pytest.approx([0.5, 0.75, 1.0])  # the coverage both runs measured
    assert xy[:, 1] == pytest.approx([(0.02 + 0.04) / 2, (0.05 + 0.17) / 2, (0.2 + 0.3) / 2])
    assert xy[-1, 1] == pytest.approx(np.mean([1 - 0.8, 1 - 0.7]))
    # A grid that stops short of full coverage is closed with the run's own error rate.
    rewrite_curve(coarse, [0.5, 0.9], [0.04, 0.25])
    fig = plots.risk_coverage(tmp_path / "r.png", rp.summarize(rp.collect([root])))
    assert fig.axes[0].lines[0].get_xydata()[-1] == pytest.approx([1.0, 0.25])


def test_risk_coverage_leaves_out_a_curve_that_is_not_its_runs_test_and_says_so(tmp_path):
    """The study's ResNet-18 aug=none line ended at risk 0.53 with a mix accuracy of 0.896: its runs'
    risk_coverage.json had been overwritten by a later `shapeshift.evaluate shift=substride` (whose own
    mix set it describes), metrics.json not. A curve that does not end at 1 - its run's accuracy is left
    out of the mean and named under its panel."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(root, "resnet18", "none", seed, 1.0)  # mix 0.9: error 0.1
    stale = write_run(root, "resnet18", "none", 2, 1.0)
    rewrite_curve(stale, [0.5, 1.0], [0.5, 0.527])
    groups = rp.summarize(rp.collect([root]))
    fig = plots.risk_coverage(tmp_path / "r.png", groups)
    (line,) = fig.axes[0].lines
    assert line.get_xydata()[-1] == pytest.approx([1.0, 0.1])
    text = texts_of(fig)
    assert "Left out:" in text and "resnet18 seed 2" in text and "0.527" in text
    assert "n=2" in fig.axes[0].get_title()
    # When no curve fits its run, the figure is not drawn and the report says why.
    for run in root.iterdir():
        rewrite_curve(run, [0.5, 1.0], [0.5, 0.527])
    _, skipped = plots.draw_all(tmp_path, rp.summarize(rp.collect([root])), rp.collect([root]))
    assert "not its test's curve" in skipped[plots.RISK]


ROTATION = [{"affine": {"rotate": d}} for d in (15, 30, 60, 90, 180)]
CATALOG = {
    "rotation": ROTATION,
    "combined": [
        {"affine": {"scale": 1 + 0.1 * k, "rotate": 10 * k}, "pattern": {"contrast": 0.1}}
        for k in range(1, 6)
    ],
    "contrast": [{"contrast": {"factor": f}} for f in (0.7, 0.5, 0.35, 0.2, 0.1)],
    "gaussian_noise": [{"gaussian_noise": {"std": s}} for s in (0.04, 0.08, 0.12, 0.15, 0.18)],  # no identity
    "tilted_scale": [
        {"affine": {"scale": 1.5, "rotate": d}} for d in (15, 30, 60, 90, 180)
    ],  # scale stays 1.5
}


def test_severity_points_sit_at_the_argument_a_family_varies(tmp_path):
    """rotation at its degrees with the i.i.d. set at 0; several arguments (combined), an operation with
    no known identity (the corruptions catalog's) or an argument held away from its identity stay on
    ordered steps, and say so; the legend gives each line's seeds."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(root, "resnet18", "none", seed, 0.95, catalog=CATALOG)
    write_run(root, "cnn", "none", 0, 0.9, catalog=CATALOG)
    runs = rp.collect([root])
    fig = plots.severity_curves(tmp_path / "s.png", rp.summarize(runs), runs, "none")
    panels = {ax.get_title(): ax for ax in fig.axes if ax.axison}
    assert list(panels) == list(CATALOG)
    steps = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for family, xs, label in [
        ("rotation", [0, 15, 30, 60, 90, 180], "affine.rotate (deg)"),
        ("contrast", [1.0, 0.7, 0.5, 0.35, 0.2, 0.1], "contrast.factor"),
        ("combined", steps, plots.ORDERED_STEPS),
        ("gaussian_noise", steps, plots.ORDERED_STEPS),
        ("tilted_scale", steps, plots.ORDERED_STEPS),
    ]:
        ax = panels[family]
        assert [list(line.get_xydata()[:, 0]) for line in ax.lines] == [pytest.approx(xs)] * 2, family
        assert ax.get_xlabel() == label and list(ax.get_xticks()) == pytest.approx(xs), family
    assert panels["contrast"].xaxis_inverted()  # factor 1 -> 0.1: the harder severities on the right
    assert [t.get_text() for t in panels["rotation"].get_xticklabels()][:2] == ["0\niid", "15"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["cnn (n=1)", "resnet18 (n=2)"]


def test_gain_bars_name_a_cell_with_no_aug_none_to_pair(report_data, tmp_path):
    """gap has aug=basic only (the study's 20-epoch GAP cell had strong only): no bar, and a note saying
    which cell and why, inside the figure and clear of the legend."""
    _, groups, _ = report_data
    fig = plots.gain_bars(tmp_path / "g.png", groups)
    text = texts_of(fig)
    assert "No bar for:" in text and "gap x aug=basic (no aug=none run of it to pair)" in text
    assert "maxpool x aug" not in text  # a paired cell is not named
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (note,) = [t for t in fig.axes[0].texts if "No bar" in t.get_text()]
    box = note.get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0
    assert not box.overlaps(fig.legends[0].get_window_extent(renderer))
    assert not box.overlaps(fig.axes[0].get_window_extent(renderer))
