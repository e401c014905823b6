"""Local weights (`arch.weights`): loaded from a state dict or a checkpoint, a mismatched head kept."""

import pytest
import torch
from hydra.utils import instantiate


@pytest.mark.parametrize("arch", ["resnet18", "resnet18_aa"])
def test_local_weights_are_loaded_and_a_mismatched_head_is_kept(arch, cfg_factory, tmp_path):
    donor = instantiate(cfg_factory(f"arch={arch}", "data.num_classes=10").arch)  # a 10-class head
    path = tmp_path / "weights.pt"
    torch.save(donor.state_dict(), path)
    fresh = instantiate(cfg_factory(f"arch={arch}").arch)
    net = instantiate(cfg_factory(f"arch={arch}", f"arch.weights={path}").arch)
    assert torch.equal(net.conv1.weight, donor.conv1.weight)  # every matching tensor copied
    assert torch.equal(net.layer4[1].bn2.running_mean, donor.layer4[1].bn2.running_mean)
    assert net.fc.weight.shape == (2, 512) and not torch.equal(net.fc.weight, fresh.fc.weight[:0])
    torch.save({"state_dict": donor.state_dict()}, tmp_path / "ckpt.pt")  # a checkpoint-style file too
    again = instantiate(cfg_factory(f"arch={arch}", f"arch.weights={tmp_path / 'ckpt.pt'}").arch)
    assert torch.equal(again.conv1.weight, donor.conv1.weight)
    with pytest.raises(Exception, match="no such file"):
        instantiate(cfg_factory(f"arch={arch}", f"arch.weights={tmp_path / 'missing.pt'}").arch)


def torchvision_resnet18_layout(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """The names and shapes of torchvision's `resnet18().state_dict()`, written out from its architecture
    (He et al. 2016; torchvision/models/resnet.py) rather than taken from our own module: 122 tensors."""

    def bn(prefix: str, c: int) -> dict:
        return {
            f"{prefix}.weight": (c,),
            f"{prefix}.bias": (c,),
            f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,),
            f"{prefix}.num_batches_tracked": (),
        }

    layout = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    c_in = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            first = c_in if block == 0 else width
            layout |= {f"{p}.conv1.weight": (width, first, 3, 3), **bn(f"{p}.bn1", width)}
            layout |= {f"{p}.conv2.weight": (width, width, 3, 3), **bn(f"{p}.bn2", width)}
            if block == 0 and stage > 1:
                layout |= {f"{p}.downsample.0.weight": (width, c_in, 1, 1), **bn(f"{p}.downsample.1", width)}
        c_in = width
    return layout | {"fc.weight": (num_classes, 512), "fc.bias": (num_classes,)}


def imagenet_like_state_dict() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        k: torch.tensor(7) if not shape else torch.randn(shape, generator=gen)
        for k, shape in torchvision_resnet18_layout().items()
    }


@pytest.mark.parametrize("wrap", ["bare", "reference_script", "ddp_prefix", "lightning_prefix"])
def test_a_torchvision_resnet18_checkpoint_maps_every_tensor_but_the_head(wrap, cfg_factory, tmp_path):
    """Fine-tuning from a user's own ImageNet ResNet-18 (docs/your-data.md): every one of its 120 body
    tensors lands in our ResNet18 under its own name, only the 1000-class head is skipped."""
    import argparse

    from shapeshift.models.weights import load_weights

    state = imagenet_like_state_dict()
    assert len(state) == 122
    saved = {
        "bare": state,
        # torchvision/references/classification/train.py saves the model beside its argparse args
        "reference_script": {
            "model": state,
            "optimizer": {},
            "epoch": 89,
            "args": argparse.Namespace(lr=0.1),
        },
        "ddp_prefix": {f"module.{k}": v for k, v in state.items()},
        "lightning_prefix": {"state_dict": {f"backbone.{k}": v for k, v in state.items()}, "epoch": 3},
    }[wrap]
    path = tmp_path / "imagenet_resnet18.pth"
    torch.save(saved, path)
    net = instantiate(cfg_factory("arch=resnet18").arch)
    assert set(net.state_dict()) == set(state)  # our ResNet18 has torchvision's names, all of them
    report = load_weights(net, path)
    assert report["skipped"] == ["fc.bias", "fc.weight"] == report["not_in_file"]
    assert len(report["loaded"]) == 120
    own = net.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in report["loaded"])
    # Through the config a user types: arch.weights=<file>, a grey folder (in_channels=1) skips conv1 too.
    grey = instantiate(cfg_factory("arch=resnet18", "data.channels=1", f"arch.weights={path}").arch)
    assert torch.equal(grey.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert grey.conv1.weight.shape == (64, 1, 7, 7)
