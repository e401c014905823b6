"""`shapeshift.audit`: a folder of deployment images, a ranked sweep, the Wilson interval, the warning."""

import csv
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from shapeshift.audit import audit, rank_sweep, summary
from shapeshift.audit.ranking import wilson
from shapeshift.data.render import render, sample_params
from shapeshift.runs.provenance import code_commit
from shapeshift.train import train


def test_audit_a_folder_of_mixed_files(trained_run, tmp_path):
    folder = tmp_path / "deployment"
    folder.mkdir()
    images, _ = render(sample_params(3, 64, np.random.default_rng(3)), 64)
    for i, img in enumerate(images[:4]):
        Image.fromarray(img).resize((150, 150)).save(folder / f"good_{i}.png")
    Image.fromarray(images[4]).save(folder / "scan.jpg")
    jpeg = (folder / "scan.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(np.dstack([images[5], np.full((64, 64), 200, np.uint8)]), "RGBA").save(
        folder / "alpha.png"
    )
    Image.fromarray(images[0][..., 0]).save(folder / "grey.png")
    for name in ("china.jpg", "flower.jpg"):  # photos with no star or moon in them
        Image.fromarray(load_sample_image(name)).save(folder / name)
    before = sorted(p.name for p in folder.iterdir())

    result = audit(str(trained_run), str(folder))
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written into the image folder
    rows = list(csv.DictReader((result["out"] / "audit.csv").read_text().splitlines()))
    assert [r["file"] for r in rows] == [
        "alpha.png",
        "china.jpg",
        "flower.jpg",
        "good_0.png",
        "good_1.png",
        "good_2.png",
        "good_3.png",
        "grey.png",
        "scan.jpg",
    ]
    score = f"score_{result['gate']}"
    for r in rows:
        assert r["predicted_class"] in ("star", "moon") and 0.5 <= float(r["confidence"]) <= 1.0
        assert r["flagged"] == str(int(float(r[score]) < result["threshold"]))
        assert r["novel"] in ("0", "1") and f"score_{result['novelty']}" in r
    by_file = {r["file"]: r for r in rows}
    assert by_file["china.jpg"]["novel"] == by_file["flower.jpg"]["novel"] == "1"  # no shape: novel
    assert by_file["china.jpg"]["flagged"] == by_file["flower.jpg"]["flagged"] == "1"  # and likely wrong
    assert by_file["good_0.png"]["flagged"] == by_file["good_0.png"]["novel"] == "0"
    assert result["novel"] == pytest.approx(np.mean([r["novel"] == "1" for r in rows]))
    low, high = result["estimate_interval"]  # no reference: DoC, with a sampling interval around it
    assert result["estimator"] == "doc" and low <= result["estimate"] <= high
    assert set(result["estimates"]) == {"doc", "atc", "atc_ne"}  # every one the run can compute, recorded
    assert result["estimates"]["doc"] == result["estimate"]
    # The contact sheet's order: the most suspicious first, the photos lowest of all.
    lowest = sorted(rows, key=lambda r: float(r[score]))[:2]
    assert {r["file"] for r in lowest} == {"china.jpg", "flower.jpg"}
    skipped = dict(result["skipped"])
    assert set(skipped) == {"truncated.jpg", "notes.txt"}
    assert skipped["notes.txt"] == "not an image file" and "unreadable" in skipped["truncated.jpg"]
    assert (result["out"] / "contact_sheet.png").stat().st_size > 1000
    text = summary(result)
    assert "audited 9 images (2 skipped)" in text and "keeps 95%" in text and result["gate"] in text
    assert "estimated accuracy" in text and "DoC" in text
    assert result["commit"] == code_commit()


def test_a_sweep_is_ranked_on_a_labelled_sample(trained_run, tmp_path, cache_dir):
    from tests.helpers import make_cfg, save_job_config

    sweep = tmp_path / "sweep"
    shutil.copytree(trained_run, sweep / "0_arch=cnn")
    cfg = make_cfg(
        ["debug=smoke", "logger=none", "arch=maxpool", "trainer.max_epochs=1"],
        sweep / "1_arch=maxpool",
        cache_dir,
    )
    train(cfg)
    save_job_config(cfg, sweep / "1_arch=maxpool")
    sample = tmp_path / "sample"
    params = sample_params(6, 64, np.random.default_rng(7))
    images, _ = render(params, 64)
    for i, (img, label) in enumerate(zip(images, params.label, strict=True)):
        (sample / ("star", "moon")[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sample / ("star", "moon")[label] / f"{i}.png")

    result = rank_sweep(str(sweep), str(sample))
    assert result["labelled"] and len(result["runs"]) == 2
    for run in result["runs"]:  # each run's accuracy is its own audit's, with a Wilson interval
        alone = audit(run["run_dir"], str(sample), out=str(tmp_path / "alone" / run["arch"]))
        assert run["n"] == 12 and run["accuracy"] == pytest.approx(alone["accuracy"])
        assert run["low"] <= run["accuracy"] <= run["high"]
    accuracies = [r["accuracy"] for r in result["runs"]]
    assert accuracies == sorted(accuracies, reverse=True)
    text = result["md"].read_text()
    assert f"Deploy: **arch={result['runs'][0]['arch']} aug=none**" in text
    assert f"Ranked by shapeshift commit `{code_commit()}`." in text
    assert len((result["csv"]).read_text().splitlines()) == 3

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(sample / "star", unlabelled)
    result = rank_sweep(str(sweep), str(unlabelled), out=str(tmp_path / "rank2"))
    assert not result["labelled"] and "ranked by each model's estimated accuracy" in result["md"].read_text()
    estimates = [r["estimate"] for r in result["runs"]]
    assert estimates == sorted(estimates, reverse=True) and all(
        r["estimator"] == "doc" for r in result["runs"]
    )
    text = result["md"].read_text().split("## Recommendation")[1]
    best = result["runs"][0]
    assert f"**Deploy arch={best['arch']} aug=none seed=0**: estimated accuracy (doc)" in text
    assert "The runs disagree on" in text and "drift:" in text and "closest to the catalog sets" in text
    assert result["drift"].n == 6 and len(result["nearest"]) == 3

    # The labels a user gives back (4 of the 6 files): each run ranked by its accuracy on those 4.
    files = sorted(p.name for p in unlabelled.iterdir())[:4]
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"{f},star\n" for f in files))
    result = rank_sweep(
        str(sweep), str(unlabelled), out=str(tmp_path / "rank3"), labels=str(tmp_path / "labels.csv")
    )
    assert result["labelled"] and all(r["n"] == 4 for r in result["runs"])
    for r in result["runs"]:
        alone = audit(r["run_dir"], str(unlabelled), out=str(tmp_path / "alone3" / r["arch"]), drift=False)
        rows = {row["file"]: row for row in csv.DictReader((alone["out"] / "audit.csv").open())}
        assert r["correct"] == sum(rows[f]["predicted_class"] == "star" for f in files)
    assert "accuracy on the labels" in result["md"].read_text()


def test_wilson_interval_known_values():
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # the textbook 0/10 case
    low, high = wilson(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))


def test_audit_warns_when_far_more_images_are_flagged_than_iid():
    result = {
        "out": "x",
        "n": 10,
        "skipped": [],
        "flagged": 0.6,
        "threshold": 0.9,
        "iid_flagged": 0.05,
        "gate": "msp",
        "keep": 0.95,
        "novelty": None,
        "novel": 0.0,
        "estimator": "agreement",
        "estimate": 0.4,
        "estimate_interval": (0.17, 0.69),
        "references": ["a", "b"],
        "classes": {"star": 5, "moon": 5},
    }
    text = summary(result)
    assert "WARNING" in text and "0.400 (95% interval 0.170-0.690" in text and "2 reference run(s)" in text
    assert "WARNING" not in summary({**result, "flagged": 0.06})
