"""`shapeshift.evaluate` on a trained run: per-set metrics, re-runs, new families, sweeps, bad checkpoints."""

import pytest
from omegaconf import OmegaConf

from shapeshift.config.schema import DETECTORS
from shapeshift.engine.restore import RunError
from shapeshift.evaluate import evaluate_run
from shapeshift.runs.folder import find_runs, read_metrics
from shapeshift.runs.provenance import code_commit
from tests.helpers import CONF, assert_metrics_consistent


def today_catalog(**extra_families):
    shift = OmegaConf.load(CONF / "shift" / "default.yaml")
    for name, levels in extra_families.items():
        shift.families[name] = levels
    return shift


def test_every_set_gets_calibration_and_detection_metrics(trained_run):
    m = read_metrics(trained_run)
    for key in ("test/iid/ece", "test/mix/auroc/knn", "test/consistency"):
        assert 0.0 <= m[key] <= 1.0, key  # bounded by definition; no closed form on a trained model
    assert_metrics_consistent(m, {"iid": 32, "rotation/s3": 16, "mix": 32})  # ece, auroc, coverage means too
    for detector in DETECTORS:  # every detector on every o.o.d. set, never on the i.i.d. set itself
        assert {
            f"test/rotation/s3/auroc/{detector}",
            f"test/mix/fpr95/{detector}",
            f"test/ood/auroc/{detector}",
        } <= set(m)
    assert not any(k.startswith("test/iid/auroc") for k in m)
    # The gate keeps 95% of i.i.d. validation images; on 32 test images its coverage is a multiple of 1/32.
    assert m["test/iid/coverage"] * 32 == pytest.approx(round(m["test/iid/coverage"] * 32), abs=1e-4)
    assert (trained_run / "qc.pt").is_file() and (trained_run / "risk_coverage.json").is_file()


def test_evaluate_reproduces_the_runs_own_test_metrics(trained_run):
    trained = read_metrics(trained_run)
    again = evaluate_run(trained_run, today_catalog(), families=None)
    assert (trained_run / "evaluation.json").is_file()
    assert read_metrics(trained_run) == trained  # metrics.json untouched
    tested = {k: v for k, v in trained.items() if k.startswith("test/")}
    assert {k: again[k] for k in tested} == tested
    assert (again["commit"], again["precision"]) == (code_commit(), trained["precision"])


def test_a_qc_file_of_an_older_format_is_fitted_again_not_misread(trained_run, tmp_path):
    import shutil

    import torch

    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    saved = torch.load(old / "qc.pt", weights_only=True)
    # Before 2026-11-29 the Mahalanobis detectors saved their precision matrix, not the covariance's factor.
    saved["state_dict"] = {k.replace(".chol", ".precision"): v for k, v in saved["state_dict"].items()}
    torch.save(saved, old / "qc.pt")
    again = evaluate_run(old, today_catalog(), families=None)
    trained = read_metrics(trained_run)
    assert {k: again[k] for k in trained if k.startswith("test/")} == {
        k: v for k, v in trained.items() if k.startswith("test/")
    }
    assert ".chol" in " ".join(
        torch.load(old / "qc.pt", weights_only=True)["state_dict"]
    )  # refitted, saved anew


def test_evaluate_picks_up_a_family_added_after_training(trained_run):
    squash = [{"affine": {"scale": 1.0 + s / 10, "shear": 5 * s}} for s in range(1, 6)]
    m = evaluate_run(trained_run, today_catalog(squash=squash), families=["squash"], out="eval-squash.json")
    assert m["families"] == ["squash"]
    assert_metrics_consistent(m, {f"squash/s{k}": 16 for k in range(1, 6)})
    assert "test/rotation/acc" not in m
    assert "test/squash/s1/acc" in read_metrics(trained_run, "eval-squash.json")


def test_evaluate_finds_every_run_of_a_sweep(trained_run):
    assert find_runs(trained_run.parent) == [trained_run]
    assert find_runs(trained_run) == [trained_run]


def test_missing_or_corrupt_checkpoint_is_one_clear_line(trained_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    ckpt = broken / read_metrics(broken)["checkpoint"]
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(RunError, match=r"checkpoint .* is unreadable") as err:
        evaluate_run(broken, today_catalog(), ["rotation"])
    assert "\n" not in str(err.value)
    ckpt.unlink()
    with pytest.raises(RunError, match=r"^no checkpoint at "):
        evaluate_run(broken, today_catalog(), ["rotation"])
    with pytest.raises(Exception, match="overwrite the training results"):
        evaluate_run(trained_run, today_catalog(), None, out="metrics.json")
