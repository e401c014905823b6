"""A run folder's lifecycle on folders made by hand: a finished run is skipped, an interrupted one resumed,
another config's refused without a byte changed, `force` replaces; a DDP rank other than 0 never writes.
One end-to-end test shows train() goes through it."""

import json

import pytest
from lightning.pytorch.callbacks import Callback

from shapeshift.runs.fingerprint import fingerprint_keys
from shapeshift.runs.folder import RunMismatch, new_record, read_record, write_json
from shapeshift.runs.lifecycle import RunFolder
from shapeshift.train import train

IDENTITY = {"arch": "cnn", "aug": "none", "seed": 0}


@pytest.fixture
def keys(cfg_factory):
    """The fingerprint keys of a composed config: `keys(*overrides)`."""
    return lambda *overrides, debug=None: fingerprint_keys(cfg_factory(*overrides), debug)


def fake_run(path, keys, finished=True, fingerprint=True):
    """A run folder as train() leaves it: run.json, a checkpoint, and metrics.json when finished."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    if fingerprint:
        write_json(path / "run.json", new_record(path, keys, IDENTITY, wandb_id="abcd1234"))
    if finished:
        (path / "metrics.json").write_text(json.dumps({"test/iid/acc": 0.5, "arch": "cnn"}))
    return path


def snapshot(run_dir) -> dict:
    """Every file of a run folder and its bytes: "changed nothing" checked literally."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_another_configs_run_is_refused_and_changes_nothing(keys, tmp_path):
    smoke = keys("arch=cnn", "debug=smoke", debug="smoke")
    run_dir = fake_run(tmp_path / "run", smoke)
    before = snapshot(run_dir)
    with pytest.raises(
        RunMismatch, match=r"finished run that was made with another config \(differs in aug\.name, "
    ):
        RunFolder.claim(run_dir, keys("arch=cnn", "debug=smoke", "aug=strong", debug="smoke"), IDENTITY)
    # A full run into a smoke run's folder: the first keys that differ are named, then a count.
    with pytest.raises(
        RunMismatch,
        match=r"differs in data\.batch_size, .*, debug, .* and \d+ more\); nothing was "
        r"changed\. Rerun with force=true",
    ):
        RunFolder.claim(run_dir, keys("arch=cnn"), IDENTITY)
    assert snapshot(run_dir) == before


def test_force_replaces_the_run(keys, tmp_path):
    run_dir = fake_run(tmp_path / "run", keys("arch=cnn"))
    new = keys("arch=cnn", "aug=strong")
    folder = RunFolder.claim(run_dir, new, IDENTITY, force=True)
    assert folder.finished is None and folder.resume_from is None  # trained afresh
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints").exists()
    assert read_record(run_dir)["fingerprint"] == folder.fingerprint


def test_an_interrupted_run_resumes_only_with_its_own_config(keys, tmp_path):
    own = keys("arch=cnn", "seed=0")
    run_dir = fake_run(tmp_path / "killed", own, finished=False)
    before = snapshot(run_dir)
    with pytest.raises(
        RunMismatch, match=r"interrupted run that was made with another config \(differs in seed\)"
    ):
        RunFolder.claim(run_dir, keys("arch=cnn", "seed=1"), IDENTITY)
    assert snapshot(run_dir) == before
    folder = RunFolder.claim(run_dir, own, IDENTITY, wandb=True)
    assert folder.finished is None and folder.resume_from == run_dir / "checkpoints" / "last.ckpt"
    assert folder.wandb_id == "abcd1234"  # the resumed run continues its W&B run


def test_a_folder_without_a_fingerprint_is_never_reused(keys, tmp_path):
    run_dir = fake_run(tmp_path / "old", keys("arch=cnn"), fingerprint=False)  # made before fingerprints
    with pytest.raises(RunMismatch, match="has no fingerprint"):
        RunFolder.claim(run_dir, keys("arch=cnn"), IDENTITY)


def test_a_finished_run_is_returned_not_rerun(keys, tmp_path):
    own = keys("arch=cnn")
    run_dir = fake_run(tmp_path / "run", own)
    before = snapshot(run_dir)
    folder = RunFolder.claim(run_dir, own, IDENTITY)
    assert folder.finished == {"test/iid/acc": 0.5, "arch": "cnn"}
    assert snapshot(run_dir) == before


def test_a_rank_other_than_zero_never_writes(keys, tmp_path):
    folder = RunFolder.claim(tmp_path / "new", keys("arch=cnn"), IDENTITY, wandb=True, lead=False)
    assert not (tmp_path / "new").exists() and folder.wandb_id is None  # no folder, no W&B run of its own
    run_dir = fake_run(tmp_path / "done", keys("arch=cnn"))
    assert (
        RunFolder.claim(run_dir, keys("arch=cnn"), IDENTITY, lead=False).finished is not None
    )  # skips as rank 0
    before = snapshot(run_dir)
    RunFolder.claim(run_dir, keys("arch=cnn"), IDENTITY, force=True, lead=False)
    assert snapshot(run_dir) == before  # force is rank 0's to carry out


def test_train_skips_a_finished_run(cfg_factory, tmp_path):
    cfg = ("debug=smoke", "logger=none", "arch=cnn", "qc.detectors=[msp]", "qc.gate=msp")
    first = train(cfg_factory(*cfg, output_dir=tmp_path / "run"))
    stamp = (tmp_path / "run" / "metrics.json").stat().st_mtime_ns

    class MustNotTrain(Callback):
        def on_train_start(self, trainer, pl_module):
            raise AssertionError("a finished run was trained again")

    assert train(cfg_factory(*cfg, output_dir=tmp_path / "run"), callbacks=[MustNotTrain()]) == first
    assert (tmp_path / "run" / "metrics.json").stat().st_mtime_ns == stamp


def test_checkpoint_settings_count_only_where_they_change_results(keys, cfg_factory, tmp_path):
    base = keys("arch=cnn")
    # A run that checkpoints as it always did keeps the fingerprint it always had: no callbacks key.
    assert not any(k.startswith("callbacks.") for k in base)
    # When last.ckpt is written is no result (the final epoch is always saved), nor is the folder.
    assert keys("arch=cnn", "callbacks.model_checkpoint.every_n_epochs=2") == base
    assert fingerprint_keys(cfg_factory("arch=cnn", output_dir=tmp_path / "elsewhere")) == base
    # best.ckpt's settings are a result only when best.ckpt is evaluated.
    assert keys("arch=cnn", "callbacks.best_checkpoint.monitor=val/acc") == base
    best = keys("arch=cnn", "eval.checkpoint=best")
    assert best["callbacks.best_checkpoint.monitor"] == "val/loss"
    assert "callbacks.best_checkpoint.dirpath" not in best
    assert keys("arch=cnn", "eval.checkpoint=best", "callbacks.best_checkpoint.monitor=val/acc") != best


def test_every_config_key_is_either_fingerprinted_or_said_not_to_be():
    """A key added to the schema must be put on one list: silently left out, a rerun with another value
    would be skipped as finished (the fingerprint would not see it)."""
    import dataclasses

    from shapeshift.config.schema import TrainConfig
    from shapeshift.runs.fingerprint import FINGERPRINTED, NOT_FINGERPRINTED, NOT_FINGERPRINTED_SECTIONS

    top = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not set(FINGERPRINTED) & set(NOT_FINGERPRINTED_SECTIONS)
    assert top == set(FINGERPRINTED) | set(NOT_FINGERPRINTED_SECTIONS), (
        f"on neither list: {sorted(top - set(FINGERPRINTED) - set(NOT_FINGERPRINTED_SECTIONS))}; "
        f"on a list, not in the schema: {sorted(set(FINGERPRINTED) | set(NOT_FINGERPRINTED_SECTIONS) - top)}"
    )
    for key in NOT_FINGERPRINTED:  # each names a key that exists, in a fingerprinted section
        section, _, name = key.partition(".")
        assert section in FINGERPRINTED
        assert name in {f.name for f in dataclasses.fields(type(getattr(TrainConfig(), section)))}, key


def test_a_key_outside_the_fingerprint_does_not_split_runs_and_one_inside_does(cfg_factory, tmp_path):
    base = fingerprint_keys(cfg_factory("debug=smoke"))
    assert fingerprint_keys(cfg_factory("debug=smoke", "channels_last=false")) == base
    assert fingerprint_keys(cfg_factory("debug=smoke", "torch_threads=1")) == base
    assert fingerprint_keys(cfg_factory("debug=smoke", "data.num_workers=2")) == base
    assert fingerprint_keys(cfg_factory("debug=smoke", "data.n_train_per_class=40")) != base
