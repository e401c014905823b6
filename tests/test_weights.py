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
