"""Exported backbones: plain state dicts that plain torch reads, torchvision's key layout, errors."""

import json

import pytest
import torch
from torch import nn

from avalanche_freeze import load_backbone, save_backbone
from avalanche_freeze.backbone_files import from_torchvision_keys, to_torchvision_keys, torchvision_resnet18
from avalanche_freeze.backbones import CifarResNet18


def _trained_like(width, in_channels):
    """A backbone whose BatchNorm statistics and weights are not the initial ones, with a frozen prefix."""
    torch.manual_seed(0)
    net = CifarResNet18(width=width, in_channels=in_channels)
    net.train()
    net(torch.rand(8, in_channels, 16, 16))  # running statistics move
    net.set_frozen_prefix(3)
    return net.eval()


@pytest.mark.parametrize("layout", ["state_dict", "torchvision"])
def test_an_exported_backbone_reloads_with_plain_torch_and_gives_identical_features(tmp_path, layout):
    net = _trained_like(0.125, 1)
    path = save_backbone(net, tmp_path / "b.pt", image_size=16, mean=(0.3,), std=(0.3,), layout=layout,
                         extra={"config": {"seed": 3}})
    state = torch.load(path, weights_only=True)  # tensors only: no code of this package needed
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and "frozen_units" not in state
    assert ("conv1.weight" in state) == (layout == "torchvision")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["width"] == 0.125 and meta["in_channels"] == 1 and meta["key_layout"] == layout
    assert meta["normalization"] == {"mean": [0.3], "std": [0.3]} and meta["config"] == {"seed": 3}
    again = load_backbone(path)
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(again(x), net(x))
    assert again.num_frozen_units == 0 and all(p.requires_grad for p in again.parameters())  # ready to fine-tune


def test_torchvision_keys_are_resnet18_s_and_map_back_exactly():
    net = CifarResNet18(width=1.0, in_channels=3)
    state = {k: v for k, v in net.state_dict().items() if k != "frozen_units"}
    mapped = to_torchvision_keys(state)
    from torchvision.models import resnet18

    reference = {k for k in resnet18().state_dict() if not k.startswith("fc.")}
    assert set(mapped) == reference  # every torchvision key but fc, and no other
    assert from_torchvision_keys(mapped).keys() == state.keys()
    with pytest.raises(ValueError, match="key 'fc.weight' is not accepted"):
        from_torchvision_keys({"fc.weight": torch.zeros(1)})


def test_a_width_1_backbone_runs_as_torchvision_resnet18_with_the_cifar_stem(tmp_path):
    net = _trained_like(1.0, 3)
    path = save_backbone(net, tmp_path / "b.pt", image_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    tv = torchvision_resnet18(path)
    assert tv.conv1.kernel_size == (3, 3) and tv.conv1.stride == (1, 1) and isinstance(tv.maxpool, nn.Identity)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(tv(x), net(x))
    narrow = save_backbone(_trained_like(0.125, 1), tmp_path / "n.pt", image_size=16, mean=(0.3,), std=(0.3,))
    with pytest.raises(ValueError, match="width=0.125 is not accepted; accepted: 1.0"):
        torchvision_resnet18(narrow)


def test_loading_needs_the_description_and_saving_needs_a_cifar_resnet(tmp_path):
    path = save_backbone(_trained_like(0.125, 1), tmp_path / "b.pt", image_size=16, mean=(0.3,), std=(0.3,))
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="b.json does not exist"):
        load_backbone(path)
    with pytest.raises(TypeError, match="Linear is not accepted; accepted: CifarResNet18"):
        save_backbone(nn.Linear(2, 2), tmp_path / "l.pt", image_size=16, mean=(0.3,), std=(0.3,))
    with pytest.raises(ValueError, match="layout='onnx' is not accepted"):
        save_backbone(_trained_like(0.125, 1), tmp_path / "o.pt", image_size=16, mean=(0.3,), std=(0.3,),
                      layout="onnx")
