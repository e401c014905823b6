import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ValidationError

from shapeshift.config.errors import ConfigError
from shapeshift.config.validation import validate
from tests.helpers import ARCHS, AUGS


def test_the_five_study_architectures_are_registered():
    assert {"cnn", "maxpool", "gap", "resnet18", "resnet18_aa"} <= set(ARCHS)
    assert {"none", "basic"} <= set(AUGS)


@pytest.mark.parametrize("aug", AUGS)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_and_aug_compose_and_validate(arch, aug, cfg_factory):
    cfg = cfg_factory(f"arch={arch}", f"aug={aug}")
    validate(cfg)
    assert cfg.aug.name == aug
    assert cfg.arch.num_classes == cfg.data.num_classes == 2


def test_user_keys_are_named_as_documented(cfg_factory):
    cfg = cfg_factory("seed=3", "data.image_size=96", "trainer.max_epochs=2", "logger=csv", "debug=smoke")
    assert (cfg.seed, cfg.data.image_size) == (3, 96)
    assert cfg.trainer.max_epochs == 2  # the command line wins over the debug preset
    assert cfg.data.n_train_per_class == 32  # the rest of the preset applies
    assert cfg.logger._target_.endswith("CSVLogger")


def test_unknown_arch_names_the_choices(cfg_factory):
    with pytest.raises(MissingConfigException) as err:
        cfg_factory("arch=vgg")
    assert "arch/vgg" in str(err.value) and "resnet18_aa" in str(err.value)


def test_mistyped_key_fails_at_compose(cfg_factory):
    with pytest.raises(ConfigCompositionException) as err:
        cfg_factory("data.image_sise=32")
    assert "image_sise" in str(err.value.__cause__ or err.value)


def test_wrong_type_fails_at_compose(cfg_factory):
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        cfg_factory("trainer.max_epochs=many")
    assert "max_epochs" in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize("override", ["data.image_size=0", "data.n_train_per_class=-5", "data.batch_size=0"])
def test_non_positive_sizes_are_refused(override, cfg_factory):
    cfg = cfg_factory(override)
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        validate(cfg)


@pytest.mark.parametrize("aug", ["basic", "strong"])
def test_aug_magnitude_scales_the_preset_ranges(aug, cfg_factory):
    from shapeshift.data.augment import build_augmentation
    from shapeshift.runs.folder import aug_label

    def affine(magnitude):
        cfg = cfg_factory(f"aug={aug}", f"aug.magnitude={magnitude}")
        validate(cfg)
        pipeline = build_augmentation(cfg.aug.transforms, seed=0)
        return next(t for t in pipeline.transforms if type(t).__name__ == "Affine"), aug_label(aug, magnitude)

    (one, label1), (two, label2), (zero, _) = affine(1), affine(2), affine(0)
    assert two.rotate == (2 * one.rotate[0], 2 * one.rotate[1]) and one.rotate[1] in (20, 45)
    assert two.shear["x"] == (2 * one.shear["x"][0], 2 * one.shear["x"][1])
    assert zero.rotate == (0, 0) and zero.translate_percent["x"] == (0, 0)
    assert (label1, label2) == (aug, f"{aug}-x2")  # the study's runs keep their names; a sweep's stay apart


def test_negative_aug_magnitude_is_refused(cfg_factory):
    with pytest.raises(ConfigError, match="aug.magnitude"):
        validate(cfg_factory("aug=basic", "aug.magnitude=-1"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epoch=3", "unknown config key trainer.max_epoch; did you mean trainer.max_epochs?"),
        ("data.imagesize=32", "unknown config key data.imagesize; did you mean data.image_size?"),
        ("sed=1", "unknown config key sed; did you mean seed?"),
        ("trainer.foo=1", "unknown config key trainer.foo; trainer has no such key"),
    ],
)
def test_a_mistyped_key_gets_a_did_you_mean(override, expected):
    from shapeshift.config.validation import misspelled

    assert misspelled(["arch=cnn", "debug=smoke", override], {"arch", "debug"}) == expected
    # Valid keys, group choices, additions and free-form nodes pass.
    assert (
        misspelled(
            [
                "trainer.max_epochs=3",
                "arch.padding_mode=reflect",
                "optimizer.lr=0.1",
                "debug=smoke",
                "+trainer.foo=1",
                "--config-name=train",
                "hydra.run.dir=x",
            ],
            {"debug"},
        )
        is None
    )


def test_every_lightning_trainer_argument_is_accepted_and_typed(cfg_factory):
    import inspect

    import lightning.pytorch as pl

    cfg = cfg_factory(
        "trainer.gradient_clip_algorithm=norm",
        "trainer.gradient_clip_val=0.5",
        "trainer.reload_dataloaders_every_n_epochs=2",
        "trainer.min_steps=3",
    )
    assert (cfg.trainer.gradient_clip_algorithm, cfg.trainer.min_steps) == ("norm", 3)
    own = set(inspect.signature(pl.Trainer.__init__).parameters) - {
        "self",
        "logger",
        "callbacks",
        "plugins",
        "default_root_dir",
    }
    assert own <= set(cfg.trainer.keys())
    with pytest.raises(Exception, match="max_epochs"):
        cfg_factory("trainer.max_epochs=many")
    with pytest.raises(Exception, match="inference_mode"):
        cfg_factory("trainer.inference_mode=sometimes")


def test_smoke_runs_have_no_experiment_logger_unless_asked(cfg_factory):
    assert not cfg_factory("debug=smoke").logger  # never mixed with real runs in W&B
    assert cfg_factory("debug=smoke", "logger=wandb").logger._target_.endswith("WandbLogger")
    assert cfg_factory().logger._target_.endswith("WandbLogger")


def test_callbacks_come_from_config(cfg_factory, tmp_path):
    from shapeshift.train import train

    # lr 1e-2 drives the validation loss to exactly 0.0 from the first epoch (tests/test_checkpoints.py):
    # it never improves again, so early stopping with patience 1 ends the run after two epochs.
    metrics = train(
        cfg_factory(
            "debug=smoke",
            "logger=none",
            "arch=cnn",
            "data.image_size=32",
            "data.n_train_per_class=200",
            "data.batch_size=32",
            "trainer.max_epochs=4",
            "optimizer.lr=0.01",
            "callbacks=[early_stopping]",
            "callbacks.early_stopping.patience=1",
            output_dir=tmp_path / "run",
        )
    )
    assert metrics["epochs"] == 2 and metrics["eval/epoch"] == 1
    assert set(cfg_factory("callbacks=[early_stopping,lr_monitor]").callbacks) == {
        "early_stopping",
        "lr_monitor",
        "model_checkpoint",  # always there (tests/test_checkpoints.py)
        "best_checkpoint",
    }
