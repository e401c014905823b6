"""The sweep audit's recommendation (audit/recommend.py): disagreement and dispute on hand-made votes, the
images to label, the labels read back, the cell best on the nearest sets, and the verdict's "beats"."""

import csv

import numpy as np
import pytest

from shapeshift.audit import recommend
from shapeshift.audit.ranking import recommendation
from shapeshift.config.errors import ConfigError

CLASSES = ("star", "moon")


def test_disagreement_and_dispute_have_their_closed_forms():
    # 3 runs x 4 images: image 0 unanimous, 1 and 2 split 2-1, 3 unanimous the other way
    preds = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]])
    # pairs (0,1): 1/4, (0,2): 1/4, (1,2): 2/4
    assert recommend.disagreement(preds) == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    split = -(2 / 3) * np.log2(2 / 3) - (1 / 3) * np.log2(1 / 3)
    assert recommend.dispute(preds, 2) == pytest.approx([0, split, split, 0])
    assert recommend.disagreement(preds[:1]) == 0.0  # one run: nothing to disagree with


def test_the_most_disputed_images_are_written_to_label_and_read_back(tmp_path):
    preds = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])
    names = [f"img{i}.png" for i in range(5)]
    images = np.zeros((5, 8, 8, 3), np.uint8)
    assert recommend.write_to_label(tmp_path, names, images, preds, CLASSES, k=2) == 2
    rows = list(csv.DictReader((tmp_path / recommend.TO_LABEL_CSV).open()))
    # images 1, 2, 3 split 2-2 (1 bit): the two first of them; never the unanimous 0 and 4
    assert [r["file"] for r in rows] == ["img1.png", "img2.png"]
    assert rows[0]["dispute_bits"] == "1.0000" and (rows[0]["votes_star"], rows[0]["votes_moon"]) == (
        "2",
        "2",
    )
    assert (tmp_path / recommend.TO_LABEL_SHEET).stat().st_size > 1000
    rows[0]["label"], rows[1]["label"] = "Moon", "star"
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([*rows, {**rows[1], "file": "img4.png", "label": ""}])  # a blank label: skipped
    assert recommend.read_labels(str(tmp_path / "labels.csv"), names, CLASSES) == {1: 1, 2: 0}


@pytest.mark.parametrize(
    "content, message",
    [
        ("file,class\nimg0.png,star\n", "needs the columns file and label"),
        ("file,label\nother.png,star\n", "other.png is not an image of this folder"),
        ("file,label\nimg0.png,sun\n", "'sun' is no class; choose from star, moon"),
        ("file,label\nimg0.png,\n", "no labelled row"),
    ],
)
def test_bad_labels_are_one_line_errors(tmp_path, content, message):
    (tmp_path / "l.csv").write_text(content)
    with pytest.raises(ConfigError, match=message):
        recommend.read_labels(str(tmp_path / "l.csv"), ["img0.png"], CLASSES)


def run(arch, aug, seed, estimate, half, **metrics):
    return {
        "arch": arch,
        "aug": aug,
        "seed": seed,
        "estimate": estimate,
        "estimate_low": estimate - half,
        "estimate_high": estimate + half,
        "estimator": "agreement",
        "metrics": {f"test/{k.replace('_s', '/s')}/acc": v for k, v in metrics.items()},
    }


def test_the_verdict_beats_only_runs_wholly_below_and_the_best_cell_on_the_nearest_sets():
    runs = [
        run("gap", "none", 0, 0.95, 0.02, contrast_s3=0.9, position_s5=1.0),
        run("gap", "none", 1, 0.90, 0.04, contrast_s3=0.8, position_s5=1.0),  # overlaps: not beaten
        run("cnn", "none", 0, 0.40, 0.05, contrast_s3=0.95, position_s5=0.0),
        run("cnn", "none", 1, 0.45, 0.05, contrast_s3=0.97, position_s5=0.0),
    ]
    v = recommend.verdict(runs, labelled=False)
    assert v["run"] is runs[0] and v["beats"] == runs[2:] and v["others"] == 3
    best = recommend.best_on_sets(runs, ["position/s5", "contrast/s3"])
    assert [(c["arch"], round(c["accuracy"].mean, 3)) for c in best] == [("gap", 0.925), ("cnn", 0.48)]
    assert recommend.best_on_sets(runs, ["contrast/s3"])[0]["arch"] == "cnn"
    advice = {
        "verdict": v,
        "disagreement": 0.3,
        "to_label": 48,
        "drift": None,
        "nearest": [("position/s5", 0.1), ("contrast/s3", 0.2)],
        "best_on_nearest": best,
    }
    text = "\n".join(recommendation(advice, labelled=False))
    assert "**Deploy arch=gap aug=none seed=0**: estimated accuracy (agreement) 0.950" in text
    assert "It beats 2 of the other 3 runs outright" in text and "arch=cnn aug=none seed=1" in text
    assert "The runs disagree on 30% of these images" in text and "`labels=<that csv>`" in text
    assert "**arch=gap aug=none** (accuracy 0.925 ± " in text and "intervals apart" in text
