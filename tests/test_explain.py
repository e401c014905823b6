"""Saliency maps (`shapeshift.explain`) of a trained run: image-sized, not constant, classes in turn."""


def test_saliency_maps_have_the_image_size_and_are_not_constant(cfg_factory, tmp_path):
    from shapeshift.explain import explain
    from shapeshift.explain.saliency import explain_sets
    from shapeshift.train import train
    from tests.helpers import save_job_config

    run_dir = tmp_path / "run"
    cfg = cfg_factory("debug=smoke", "logger=none", "arch=cnn", "trainer.max_epochs=2", output_dir=run_dir)
    train(cfg)
    save_job_config(cfg, run_dir)
    path = explain(str(run_dir), ["iid", "position/s5"], n=4)
    assert path == run_dir / "saliency.png" and path.read_bytes()[:4] == b"\x89PNG"

    from shapeshift.engine.pipeline import build_datamodule
    from shapeshift.engine.restore import load_model, load_run_config

    cfg = load_run_config(run_dir)
    dm = build_datamodule(cfg, augment=False)
    rows = explain_sets(load_model(run_dir, cfg, dm.test_set_names), dm, ["iid", "position/s5"], 4)
    for row in rows:
        assert row["maps"].shape == (4, 64, 64)
        assert all(m.std() > 1e-3 for m in row["maps"]) and row["maps"].min() >= 0 and row["maps"].max() <= 1
        assert sorted(row["labels"].tolist()) == [0, 0, 1, 1]  # classes in turn


def test_saliency_grid_has_a_labelled_colour_scale(tmp_path):
    """The overlay's colours mean something only with their scale: a colorbar, 0 to 1, saying what 1 is."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from shapeshift.explain.saliency import draw_grid, grid_figure

    rng = np.random.default_rng(0)
    rows = [
        {
            "set": name,
            "images": rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8),
            "maps": rng.random((3, 16, 16)),
            "labels": np.array([0, 1, 0]),
            "predicted": np.array([0, 0, 0]),
        }
        for name in ("iid", "position/s5")
    ]
    fig = grid_figure(rows, ("circle", "square"), "Grad-CAM: arch=cnn")
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bar.get_ylim() == (0.0, 1.0) and "Grad-CAM" in bar.get_ylabel() and "per image" in bar.get_ylabel()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # the constrained layout places the bar
    renderer = canvas.get_renderer()
    box = bar.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes if ax is not bar)
    path = draw_grid(tmp_path / "s.png", rows, ("circle", "square"), "Grad-CAM: arch=cnn")
    assert path.read_bytes()[:4] == b"\x89PNG"
