"""Reference runs (`qc.reference`, `reference=`): a quadrant reader caught by a shape reader, references from
a run, a list or a sweep, checked and loaded before anything is written, in training, evaluate and audit."""

import math
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from shapeshift.config.errors import ConfigError
from shapeshift.config.schema import QCConfig
from shapeshift.engine.references import reference_runs
from shapeshift.engine.restore import load_model, load_run_config
from shapeshift.evaluate import evaluate_run
from shapeshift.models.features import tapped
from shapeshift.qc import invariance
from shapeshift.qc.bank import DetectorBank
from shapeshift.runs.folder import CONFIG_FILE, read_metrics
from shapeshift.train import train
from tests.helpers import CONF, LIGHT_QC, make_cfg, run_cli, save_job_config


# -- the mechanism, on images made so that one model reads the position and the other the shape ------------
class Reads(nn.Module):
    """Logits from a difference of channel means: the left-minus-right brightness (position) or the
    red-minus-green one (the 'shape'). Confident either way: its own scores cannot see its errors."""

    def __init__(self, what: str):
        super().__init__()
        self.what, self.scale = what, nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        if self.what == "position":
            d = x[:, :, :, :4].mean((1, 2, 3)) - x[:, :, :, 4:].mean((1, 2, 3))
        else:
            d = x[:, 0].mean((1, 2)) - x[:, 1].mean((1, 2))
        return torch.stack([self.scale * d, -self.scale * d], 1)


class Model(nn.Module):
    def __init__(self, what: str):
        super().__init__()
        self.backbone = Reads(what)

    def forward(self, x):
        return self.backbone(x)


def images(n: int, swapped: bool, rng) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a red blob on the left, class 1: a green blob on the right; `swapped`: the other side."""
    labels = rng.integers(0, 2, n)
    out = np.zeros((n, 8, 8, 3), np.uint8)
    for i, y in enumerate(labels):
        left = (y == 0) != swapped
        out[i, :, (slice(0, 4) if left else slice(4, 8)), int(y)] = rng.integers(150, 255)
    return out, labels


class Data:
    invariances = ("hflip",)  # a mirrored blob keeps its colour (its class) and changes its side

    def __init__(self, rng):
        self.val = images(200, False, rng)

    def arrays(self, name):
        return self.val

    def selection_arrays(self, ops):
        return np.empty((0, 8, 8, 3), np.uint8), np.empty(0, np.int64)


@pytest.mark.parametrize("with_reference", [True, False])
def test_a_quadrant_reader_is_caught_by_a_shape_reader_and_only_by_it(with_reference):
    rng = np.random.default_rng(0)
    model, data = Model("position"), Data(rng)
    bank = DetectorBank(QCConfig(detectors=["msp", "energy"], gate="auto", novelty=None))
    if with_reference:
        bank.attach_references([Model("shape")], ["shape-reader"])
    bank.calibrate(model, data, select_on=[])
    assert bank.gate == ("reference" if with_reference else "msp")  # no errors to choose on: the tie order
    iid, swapped = images(300, False, rng), images(300, True, rng)
    for k, (x, y) in enumerate((iid, swapped)):
        inputs = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            logits = model(inputs)
            bank.update(torch.full((len(y),), k), logits.argmax(1) == torch.from_numpy(y), logits, {}, inputs)
    m, _ = bank.compute(["iid", "position/s5"])
    assert m["test/iid/failure_auroc/msp"] != m["test/iid/failure_auroc/msp"]  # NaN: no errors on iid
    assert m["test/position/s5/acc_estimate/atc"] > 0.9  # the model's own confidence: blind, as expected
    assert m["test/position/s5/acc_estimate/atc_ne"] > 0.9 and m["test/position/s5/acc_estimate/doc"] > 0.9
    if with_reference:
        # DoC within the sure shape reader's bounds: its agreement (none) is the accuracy (0).
        assert m["test/position/s5/acc_estimate/bounded"] < 0.01 and m["test/acc_estimate_mae/bounded"] < 0.01
        assert m["test/position/s5/failure_auroc/reference"] == 1.0
        assert m["test/position/s5/failure_auroc/msp"] < 0.75
        assert m["test/position/s5/coverage"] == 0.0  # every error rejected
        assert m["test/iid/coverage"] >= 0.9  # and the right i.i.d. predictions accepted
        assert m["test/position/s5/acc_estimate/agreement"] < 0.01  # the accuracy is 0
        assert m["test/acc_estimate_mae/agreement"] < 0.01 < 0.9 < m["test/acc_estimate_mae/atc"]
        assert bank.summary()["qc/references"] == ["shape-reader"]
    else:
        assert "test/position/s5/failure_auroc/reference" not in m and bank.summary()["qc/references"] == []
        assert m["test/position/s5/coverage"] > 0.9  # the gate without a reference lets the errors through


def test_the_gate_keeps_the_right_validation_predictions_not_the_errors_among_them():
    """A model wrong on 15% of its validation images: a cut keeping 95% of all of them would sit among its
    errors and let them through; the gate keeps at least 95% of the right ones. The reference gate's cut is
    also at most log 1/2, so the references' saturation on the right ones does not set it."""
    rng = np.random.default_rng(1)
    (x, y), (sx, sy) = images(170, False, rng), images(30, True, rng)
    data = Data(rng)
    data.val = (np.concatenate([x, sx]), np.concatenate([y, sy]))
    bank = DetectorBank(QCConfig(detectors=["msp"], gate="reference", novelty=None))
    bank.attach_references([Model("shape")])
    bank.calibrate(Model("position"), data, select_on=[])
    scores = bank.val_scores["reference"]
    assert (scores[170:] < bank.cut).all()  # every validation error below the cut
    assert (scores[:170] >= bank.cut).double().mean() >= 0.95
    level = float(scores[:170].sort(descending=True).values[math.ceil(0.95 * 170) - 1])
    assert bank.cut == min(level, math.log(0.5))


def scored(bank, model, x, y, name: str) -> dict:
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad(), tapped(model.backbone) as tap:  # as in the test loop, references inside it too
        logits = model(inputs)
        features = tap.features() if bank.needs_features else {}
        correct = logits.argmax(1) == torch.from_numpy(y)
        bank.update(torch.zeros(len(y), dtype=torch.long), correct, logits, features, inputs)
    m, _ = bank.compute([name])
    return m


def test_references_saturated_on_iid_images_do_not_set_the_reference_gate():
    """The references are certain on the validation images (p > 0.999) and less so, but still agreeing, on
    dim ones (p about 0.8): a cut at the level that keeps 95% of the right validation predictions rejected
    every dim image; the cut at one half keeps them."""
    rng = np.random.default_rng(2)
    bank = DetectorBank(QCConfig(detectors=["msp"], gate="reference", novelty=None))
    bank.attach_references([Model("shape")])
    model = Model("position")
    bank.calibrate(model, Data(rng), select_on=[])
    x, y = images(300, False, rng)
    dim = (x.astype(np.float64) * 0.05).astype(np.uint8)  # 150-255 -> 7-12
    inputs = torch.from_numpy(dim).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        p = bank.scores(model(inputs), {}, inputs)["reference"].exp()
    assert 0.6 < float(p.median()) < 0.95  # less certain, still agreeing
    assert scored(bank, model, dim, y, "contrast/s3")["test/contrast/s3/coverage"] == 1.0


@pytest.mark.parametrize("model_reads", ["shape", "position"])
def test_a_majority_of_shortcut_references_does_not_outvote_the_one_that_reads_the_shape(model_reads):
    """Three position readers and one shape reader as references. Only the shape reader's predictions
    survive a flip of the validation images, so only it is kept: the shape-reading model keeps its right
    answers on swapped images, and the position reader's errors there are still all rejected."""
    rng = np.random.default_rng(3)
    bank = DetectorBank(QCConfig(detectors=["msp"], gate="reference", novelty=None))
    bank.attach_references([Model("position") for _ in range(3)] + [Model("shape")], ["p1", "p2", "p3", "s"])
    model = Model(model_reads)
    bank.calibrate(model, Data(rng), select_on=[])
    assert bank.references_used == ["s"] and bank.reference_consistency == [0.0, 0.0, 0.0, 1.0]
    assert bank.consistency == (1.0 if model_reads == "shape" else 0.0)
    x, y = images(300, True, rng)
    m = scored(bank, model, x, y, "position/s5")
    if model_reads == "shape":  # right on every swapped image
        assert m["test/position/s5/coverage"] >= 0.99 and m["test/position/s5/accepted_acc"] == 1.0
        assert m["test/position/s5/acc_estimate/agreement"] > 0.99
    else:  # wrong on every one
        assert m["test/position/s5/coverage"] == 0.0
        assert m["test/position/s5/acc_estimate/agreement"] < 0.01


class Counting(Model):
    """A model that counts the images it is run on."""

    def __init__(self, what: str):
        super().__init__(what)
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return super().forward(x)


@pytest.mark.parametrize(("gate", "passes"), [("auto", 2), ("reference", 2)])
def test_the_runs_own_consistency_is_read_from_passes_the_calibration_makes_anyway(gate, passes):
    """The run's consistency under the flips equals the direct measurement, and the calibration runs the
    model over the validation images twice (plain and flipped), not four times: a chosen gate scores the
    flipped images anyway, and the plain classes are the validation scores'."""
    rng = np.random.default_rng(5)
    data = Data(rng)
    bank = DetectorBank(QCConfig(detectors=["msp", "energy"], gate=gate, novelty=None))
    bank.attach_references([Model("shape")], ["s"])
    model = Counting("position")
    bank.calibrate(model, data, select_on=[])
    assert model.seen == passes * len(data.val[0])
    assert bank.consistency == float(invariance.consistency([Model("position")], data.val[0], ["hflip"])[0])
    assert bank.consistency < 0.1  # it reads the side: the flip changes its answer


def test_no_declared_invariance_keeps_every_reference():
    rng = np.random.default_rng(4)
    bank = DetectorBank(QCConfig(detectors=["msp"], gate="reference", novelty=None, invariances=[]))
    bank.attach_references([Model("position"), Model("shape")], ["p", "s"])
    bank.calibrate(Model("shape"), Data(rng), select_on=[])
    assert bank.references_used == ["p", "s"] and math.isnan(bank.consistency)


class SeesTheImage(nn.Module):
    """A shape (colour) reader whose one spatial map is the image itself: `spatial` features are the
    quadrant means, so a feature novelty score sees where the blob is, as a quadrant reader's would."""

    def __init__(self):
        super().__init__()
        self.map, self.head = nn.Identity(), Reads("shape")

    def forward(self, x):
        return self.head(self.map(x))


def test_the_gate_is_chosen_where_the_data_declares_the_label_kept():
    """A shape reader, on validation images with a few confident errors (a green blob on the left, labelled
    0) that only a spatial novelty score sees. Chosen on the validation images alone, that novelty score
    wins, and then rejects every right answer on swapped images. Pooled with the validation images under
    the data's declared flip, where the shape reader is right on the flipped blobs and the novelty score
    flags them, it loses: the gate keeps the swapped right answers."""
    rng = np.random.default_rng(5)
    (x, y) = images(300, False, rng)
    odd = np.zeros((30, 8, 8, 3), np.uint8)
    odd[:, :, :4, 1] = 200  # green (class 1's colour) on class 0's side, labelled 0: the reader errs
    data = Data(rng)
    data.val = (np.concatenate([x, odd]), np.concatenate([y, np.zeros(30, np.int64)]))
    data.train = images(400, False, rng)
    data.arrays = lambda name: data.train if name == "train" else data.val
    model = Model("shape")
    model.backbone = SeesTheImage()
    chosen = {}
    for invariances in ([], ["hflip"]):
        bank = DetectorBank(
            QCConfig(
                detectors=["msp", "mahalanobis_spatial"], gate="auto", novelty=None, invariances=invariances
            )
        )
        bank.fit(model, data)
        bank.calibrate(model, data, select_on=[])
        swapped = images(300, True, rng)
        m = scored(bank, model, *swapped, "position/s5")
        chosen[tuple(invariances)] = bank.gate, m["test/position/s5/coverage"], bank.selected_on
    assert chosen[()][:2] == ("mahalanobis_spatial", 0.0)  # right on every swapped image, all rejected
    gate, coverage, selected_on = chosen[("hflip",)]
    assert gate == "msp" and coverage >= 0.95 and "330 under hflip" in selected_on


# -- references from runs, on real (tiny) trained runs -----------------------------------------------------
@pytest.fixture(scope="module")
def sweep(trained_run, tmp_path_factory, cache_dir):
    """A sweep folder: the session's cnn run and a maxpool run trained here."""
    root = tmp_path_factory.mktemp("refsweep")
    shutil.copytree(trained_run, root / "0_arch=cnn")
    cfg = make_cfg(
        ["debug=smoke", "logger=none", "arch=maxpool", *LIGHT_QC], root / "1_arch=maxpool", cache_dir
    )
    train(cfg)
    save_job_config(cfg, root / "1_arch=maxpool")
    return root


def catalog(*families):
    shift = OmegaConf.load(CONF / "shift" / "default.yaml")
    shift.families = {f: shift.families[f] for f in families}
    return shift


def test_evaluate_with_a_reference_scores_what_the_reference_model_says(sweep):
    run, ref = sweep / "0_arch=cnn", sweep / "1_arch=maxpool"
    m = evaluate_run(run, catalog("position"), None, out="ref.json", reference=str(ref))
    assert m["qc/references"] == [str(ref.resolve())] and m == read_metrics(run, "ref.json")
    assert m["qc/gate"] in ("reference", *load_run_config(run).qc.detectors)
    for key in ("failure_auroc", "aurc", "eaurc", "auroc"):
        assert f"test/position/s5/{key}/reference" in m
    # The agreement estimate, recomputed from the two models' own predictions outside the test loop.
    cfg = load_run_config(run)
    from shapeshift.engine.pipeline import build_datamodule

    dm = build_datamodule(cfg, augment=False)
    x, _ = dm.arrays("position/s5")
    mine, theirs = (load_model(r, load_run_config(r), dm.test_set_names) for r in (run, ref))
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
    bf16 = "bf16" in str(cfg.trainer.precision)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        predicted = mine(inputs).float().argmax(1)
        agree = theirs(inputs).float().softmax(1).gather(1, predicted[:, None]).mean()
    assert m["test/position/s5/acc_estimate/agreement"] == pytest.approx(float(agree), abs=0.01)


def test_a_reference_loaded_twice_runs_each_batch_once(sweep):
    """What makes a sweep's audit affordable: the same reference run is one classifier for the process, and
    a batch it has seen is not run again; its outputs equal the model's own."""
    from shapeshift.engine.references import load_references

    run = sweep / "1_arch=maxpool"
    cfg = load_run_config(sweep / "0_arch=cnn")
    (_, first), (_, again) = (load_references([run], cfg, ("star", "moon"))[0] for _ in range(2))
    assert first is again
    calls = []
    hook = first.model.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(6, 3, 64, 64)
    with torch.no_grad():
        out = first(x)
        assert torch.equal(again(x.clone()), out) and len(calls) == 1  # the same bytes: not run again
        assert torch.equal(out, first.model(x)) and len(calls) == 2
        first(x + 1)
    assert len(calls) == 3  # other bytes: run
    hook.remove()


def test_a_sweep_reference_is_its_runs_that_learned_the_task_without_the_run_itself(sweep):
    run, other = sweep / "0_arch=cnn", sweep / "1_arch=maxpool"
    assert reference_runs(str(sweep), run, min_acc=0.0) == [other.resolve()]
    assert reference_runs([str(other), str(sweep)], run, min_acc=0.0) == [other.resolve()]  # each once
    above = read_metrics(other)["val/acc"] + 1e-6
    with pytest.raises(ConfigError, match="no finished run there learned the task"):
        reference_runs(str(sweep), run, min_acc=above)


def test_a_bad_reference_fails_in_one_line_and_writes_nothing(sweep, tmp_path, cache_dir):
    run = sweep / "0_arch=cnn"
    smaller = tmp_path / "smaller"
    shutil.copytree(sweep / "1_arch=maxpool", smaller)
    cfg = OmegaConf.load(smaller / CONFIG_FILE)
    cfg.data.image_size = 32
    OmegaConf.save(cfg, smaller / CONFIG_FILE)
    broken = tmp_path / "broken"
    shutil.copytree(sweep / "1_arch=maxpool", broken)
    shutil.rmtree(broken / "checkpoints")
    cases = {
        str(smaller): "does not match this run: image size 32 vs 64",
        str(broken): "no checkpoint",
        str(run): "is the run itself",
        str(tmp_path / "nowhere"): "no such folder",
    }
    for reference, message in cases.items():
        with pytest.raises(ConfigError, match=message) as err:
            evaluate_run(run, catalog("position"), None, out="bad.json", reference=reference)
        assert "\n" not in str(err.value)
        assert not (run / "bad.json").exists()
    out = tmp_path / "new_run"
    cfg = make_cfg(["debug=smoke", "logger=none", *LIGHT_QC, f"qc.reference={smaller}"], out, cache_dir)
    with pytest.raises(ConfigError, match="image size"):
        train(cfg)
    assert not out.exists()  # refused before the run folder was claimed


def test_training_with_a_reference_gates_on_it(sweep, tmp_path, cache_dir):
    ref = sweep / "1_arch=maxpool"
    # Quoted: a sweep's run folders are named `<n>_key=value`, and Hydra's parser reads the `=`.
    reference = f"qc.reference=['{ref}']"
    overrides = ["debug=smoke", "logger=none", "qc.gate=reference", reference, "qc.novelty=msp"]
    m = train(make_cfg([*overrides, "qc.detectors=[msp]"], tmp_path / "run", cache_dir))
    assert m["qc/gate"] == "reference" and m["qc/references"] == [str(ref.resolve())]
    assert 0.0 <= m["test/iid/acc_estimate/agreement"] <= 1.0 and "test/acc_estimate_mae/agreement" in m
    # A one-epoch model (0.91 i.i.d.) gated by another: what it accepts is more often right than what it sees.
    assert 0.5 <= m["test/iid/coverage"] < 1.0 and m["test/iid/accepted_acc"] > m["test/iid/acc"]
    with pytest.raises(ConfigError, match="qc.gate=reference needs qc.reference"):
        train(make_cfg(["debug=smoke", "logger=none", "qc.gate=reference"], tmp_path / "r2", cache_dir))


def test_evaluate_command_takes_gate_and_reference(sweep, tmp_path, cache_dir):
    """As typed: `gate=auto` re-chooses an old run's gate, `reference=` adds the other run."""
    run, ref = sweep / "0_arch=cnn", sweep / "1_arch=maxpool"
    args = [f"run='{run}'", f"reference='{ref}'", "gate=auto", "families=[position]", "out=cli.json"]
    done = run_cli("evaluate", [*args, f"hydra.run.dir={tmp_path / 'logs'}"], cache_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    m = read_metrics(run, "cli.json")
    assert m["qc/references"] == [str(ref.resolve())]
    assert {f"qc/selection_eaurc/{d}" for d in ("reference", "msp", "knn_stages")} <= set(m)
    assert m["qc/gate"] == min(
        (k.rsplit("/", 1)[1] for k in m if k.startswith("qc/selection_eaurc/")),
        key=lambda d: m[f"qc/selection_eaurc/{d}"],
    )
    with pytest.raises(ConfigError, match="qc.gate=nonsense must be auto, reference or one of"):
        evaluate_run(run, catalog("position"), None, out="x.json", gate="nonsense")
