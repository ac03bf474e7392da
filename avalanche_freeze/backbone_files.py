"""Exported backbones: a plain ``torch.save`` state dict with a JSON description beside it.

An exported backbone is two files: ``NAME.pt``, a state dict of tensors only (it loads with
``torch.load(NAME.pt, weights_only=True)``; no code of this package is needed to read it), and
``NAME.json``: the architecture, width, input channels, image size, feature dimension,
normalisation of the inputs, the key layout and, when it comes from a run, the run's
configuration and final accuracies. :func:`load_backbone` rebuilds the module from the two.

Two key layouts:

* ``state_dict``: the keys of :class:`~avalanche_freeze.backbones.CifarResNet18`
  (``units.0.0.weight`` = the stem's convolution, ``units.1.conv1.weight`` = ``layer1.0``'s first
  convolution, ...);
* ``torchvision``: the keys of ``torchvision.models.resnet18`` (``conv1``, ``bn1``,
  ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...). The architectures differ in exactly two
  places, both in the stem: the first convolution is 3x3 with stride 1 and padding 1 (torchvision:
  7x7, stride 2, padding 3) and there is no max-pool; and the exported file has no ``fc``. At
  width 1.0 the weights load into ``torchvision.models.resnet18`` once ``conv1`` is replaced by
  the 3x3 convolution and ``maxpool`` and ``fc`` by ``nn.Identity()``
  (:func:`torchvision_resnet18` does this); at other widths the shapes differ from torchvision's.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from avalanche_freeze.backbones import CifarResNet18
    >>> net = CifarResNet18(width=0.125, in_channels=1).eval()
    >>> path = save_backbone(net, Path(tempfile.mkdtemp()) / "backbone.pt", image_size=28, mean=(0.286,), std=(0.353,))
    >>> again = load_backbone(path)
    >>> x = torch.rand(2, 1, 28, 28)
    >>> torch.equal(net(x), again(x))
    True
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn
from torchvision.models import resnet18

from .backbones import CifarResNet18
from .validation import check_choice

__all__ = ["KEY_LAYOUTS", "load_backbone", "save_backbone", "to_torchvision_keys", "from_torchvision_keys",
           "torchvision_resnet18"]

#: The key layouts of an exported state dict.
KEY_LAYOUTS = ("state_dict", "torchvision")
#: Version of the JSON description (raised when its keys change meaning).
FORMAT_VERSION = 1
#: What the torchvision layout differs in, written into the JSON for whoever loads the file elsewhere.
TORCHVISION_DIFFERENCES = ("stem: conv1 is 3x3, stride 1, padding 1 (torchvision: 7x7, stride 2, padding 3); no max-pool "
                           "(use nn.Identity()); no fc (features are the 512*width-d average-pooled output)")

_BLOCKS_PER_STAGE = 2


def _unit_to_torchvision(unit: int) -> str:
    stage, block = divmod(unit - 1, _BLOCKS_PER_STAGE)
    return f"layer{stage + 1}.{block}"


def to_torchvision_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A :class:`~avalanche_freeze.backbones.CifarResNet18` state dict (without ``frozen_units``) under
    ``torchvision.models.resnet18``'s names."""
    out = {}
    for key, value in state.items():
        stem = re.fullmatch(r"units\.0\.([01])\.(.+)", key)
        block = re.fullmatch(r"units\.(\d+)\.(.+)", key)
        if stem:
            out[("conv1." if stem.group(1) == "0" else "bn1.") + stem.group(2)] = value
        elif block:
            rest = block.group(2).replace("shortcut.", "downsample.", 1)
            out[f"{_unit_to_torchvision(int(block.group(1)))}.{rest}"] = value
        else:
            raise ValueError(f"key {key!r} is not accepted; accepted: CifarResNet18 keys (units.N....)")
    return out


def from_torchvision_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The inverse of :func:`to_torchvision_keys`."""
    out = {}
    for key, value in state.items():
        stem = re.fullmatch(r"(conv1|bn1)\.(.+)", key)
        block = re.fullmatch(r"layer(\d)\.(\d)\.(.+)", key)
        if stem:
            out[f"units.0.{0 if stem.group(1) == 'conv1' else 1}.{stem.group(2)}"] = value
        elif block:
            unit = 1 + (int(block.group(1)) - 1) * _BLOCKS_PER_STAGE + int(block.group(2))
            out[f"units.{unit}.{block.group(3).replace('downsample.', 'shortcut.', 1)}"] = value
        else:
            raise ValueError(f"key {key!r} is not accepted; accepted: torchvision ResNet-18 keys (conv1, bn1, "
                             "layerS.B....; no fc)")
    return out


def save_backbone(backbone: CifarResNet18, path: Path, *, image_size: int, mean: Sequence[float],
                  std: Sequence[float], layout: str = "state_dict", extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``backbone`` to ``path`` (a ``torch.save`` state dict of tensors, every unit trainable)
    and its description to ``path`` with the suffix ``.json``; returns ``path``.

    Args:
        backbone: the network to export.
        path: the state dict's file.
        image_size, mean, std: the input size and the per-channel normalisation it was trained with.
        layout: ``state_dict`` (this package's keys) or ``torchvision`` (see the module docs).
        extra: more entries for the JSON (a run's configuration and accuracies).
    """
    check_choice("layout", layout, KEY_LAYOUTS)
    if not isinstance(backbone, CifarResNet18):
        raise TypeError(f"{type(backbone).__name__} is not accepted; accepted: CifarResNet18 (the architecture "
                        "an exported file describes)")
    state = {k: v.detach().clone().cpu() for k, v in backbone.state_dict().items() if k != "frozen_units"}
    if layout == "torchvision":
        state = to_torchvision_keys(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    description = {
        "format_version": FORMAT_VERSION,
        "architecture": "CifarResNet18",
        "key_layout": layout,
        "width": backbone.width,
        "in_channels": backbone.in_channels,
        "image_size": image_size,
        "feature_dim": backbone.feature_dim,
        "normalization": {"mean": list(mean), "std": list(std)},
        "differences_from_torchvision_resnet18": TORCHVISION_DIFFERENCES,
        **(extra or {}),
    }
    path.with_suffix(".json").write_text(json.dumps(description, indent=2))
    return path


def _description(path: Path) -> Dict[str, Any]:
    meta = Path(path).with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} does not exist: an exported backbone is the state dict and this JSON "
                                "beside it (avalanche-freeze export writes both)")
    return json.loads(meta.read_text())


def load_backbone(path: Path, *, map_location: str = "cpu") -> CifarResNet18:
    """The exported backbone at ``path``, in eval mode, every unit trainable; ``model(x)`` gives the
    average-pooled features of images normalised as its JSON says.

    Example:
        >>> backbone = load_backbone("runs/demo/backbone.pt")  # doctest: +SKIP
        >>> features = backbone(images)                         # doctest: +SKIP
    """
    meta = _description(path)
    if meta.get("architecture") != "CifarResNet18":
        raise ValueError(f"{path}: architecture {meta.get('architecture')!r} is not accepted; accepted: CifarResNet18")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if meta.get("key_layout") == "torchvision":
        state = from_torchvision_keys(state)
    net = CifarResNet18(width=meta["width"], in_channels=meta["in_channels"])
    state["frozen_units"] = torch.zeros((), dtype=torch.long)
    net.load_state_dict(state)
    return net.eval()


def torchvision_resnet18(path: Path) -> nn.Module:
    """An exported width-1.0 backbone as ``torchvision.models.resnet18`` with the CIFAR stem (3x3
    ``conv1``, stride 1; ``maxpool`` and ``fc`` replaced by ``nn.Identity()``), weights loaded; in eval mode.

    Raises:
        ValueError: the backbone's width is not 1.0 (torchvision's ResNet-18 has width 1.0's shapes).
    """
    meta = _description(path)
    if meta["width"] != 1.0:
        raise ValueError(f"width={meta['width']} is not accepted; accepted: 1.0 (torchvision's ResNet-18 has the "
                         "width-1.0 channel counts; use load_backbone for other widths)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if meta["key_layout"] != "torchvision":
        state = to_torchvision_keys(state)
    net = resnet18()
    net.conv1 = nn.Conv2d(meta["in_channels"], 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.load_state_dict(state)
    return net.eval()
