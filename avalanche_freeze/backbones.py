"""Backbones with an ordered list of freezable units.

The backbone used throughout the paper is the CIFAR variant of ResNet-18: a 3x3
stride-1 stem without max-pooling, four stages of two basic blocks each and a
512-d globally pooled feature. :class:`CifarResNet18` exposes its nine units
(stem and eight residual blocks) in forward order, so that a *prefix* of them can
be frozen. A frozen prefix runs under ``torch.no_grad()``: no autograd graph and
no saved activations, which is where the backward-compute and memory savings of
progressive layer freezing come from.

Example:
    >>> import torch
    >>> net = CifarResNet18(width=0.25, in_channels=1)
    >>> net.unit_names(granularity="stage")
    ['stage1', 'stage2', 'stage3', 'stage4']
    >>> net(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 128])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .validation import check_choice, check_number

__all__ = [
    "BasicBlock",
    "CifarResNet18",
    "FreezableBackbone",
    "GRANULARITIES",
    "ModelConfig",
    "find_freezable_backbone",
    "unit_compute_shares",
]

#: Accepted values of the ``granularity`` option.
GRANULARITIES = ("block", "stage")


@dataclass
class ModelConfig:
    """The ``model`` configuration section: the CIFAR ResNet-18 backbone.

    Attributes:
        width: channel-width multiplier (0.25 for fast CPU runs; 1.0 is the paper's ResNet-18).
    """

    width: float = 0.25

    def __post_init__(self) -> None:
        # below 1/64 the first stage would have less than one channel (rounded up to one, silently)
        check_number("width", self.width, at_least=1 / 64, at_most=16)


class BasicBlock(nn.Module):
    """Residual basic block (two 3x3 convolutions with BatchNorm)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class FreezableBackbone(nn.Module):
    """A feature extractor made of an ordered sequence of units.

    Subclasses fill ``self.units`` (an :class:`~torch.nn.ModuleList` in forward
    order), ``self.unit_labels`` (one name per unit) and ``self.stage_ends``
    (for each stage, the number of units up to and including it), and set
    ``self.feature_dim``. The output of the last unit is globally average-pooled.

    The number of frozen leading units is a buffer (``frozen_units``), so it is
    saved in ``state_dict`` checkpoints together with the weights.
    """

    units: nn.ModuleList
    unit_labels: List[str]
    stage_ends: List[int]
    feature_dim: int

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("frozen_units", torch.zeros((), dtype=torch.long))
        # the same count as a Python int: the forward reads it with no wait on the device
        self._num_frozen = 0
        self.register_load_state_dict_post_hook(FreezableBackbone._after_load)

    @staticmethod
    def _after_load(module: "FreezableBackbone", incompatible_keys) -> None:
        module._num_frozen = int(module.frozen_units.item())  # once per load, not per forward

    # ------------------------------------------------------------------ units
    def unit_names(self, *, granularity: str = "block") -> List[str]:
        """Names of the freezable units at ``granularity`` (``block`` or ``stage``)."""
        check_choice("granularity", granularity, GRANULARITIES)
        if granularity == "block":
            return list(self.unit_labels)
        return [f"stage{i + 1}" for i in range(len(self.stage_ends))]

    def unit_boundaries(self, *, granularity: str = "block") -> List[int]:
        """For each unit at ``granularity``, the number of block-level units it ends at."""
        check_choice("granularity", granularity, GRANULARITIES)
        if granularity == "block":
            return list(range(1, len(self.units) + 1))
        return list(self.stage_ends)

    @property
    def num_frozen_units(self) -> int:
        """How many leading block-level units are frozen (a Python int kept beside the buffer: reading
        it does not wait for the device)."""
        return self._num_frozen

    def set_frozen_prefix(self, n_units: int) -> None:
        """Freeze the first ``n_units`` block-level units and unfreeze the rest.

        Frozen units get ``requires_grad=False`` and their BatchNorm layers are
        put in eval mode (and kept there by :meth:`train`). The forward pass of
        the prefix runs without autograd.
        """
        check_number("n_units", n_units, at_least=0, at_most=len(self.units), integer=True)
        self.frozen_units.fill_(n_units)
        self._num_frozen = int(n_units)
        for i, unit in enumerate(self.units):
            frozen = i < n_units
            for p in unit.parameters():
                p.requires_grad_(not frozen)
                if frozen:
                    p.grad = None  # no stale gradient may reach an optimizer step
        self.train(self.training)

    def train(self, mode: bool = True) -> "FreezableBackbone":
        super().train(mode)
        for unit in self.units[: self.num_frozen_units]:
            unit.eval()
        return self

    # --------------------------------------------------------------- forward
    def forward_units(self, x: Tensor, *, upto: int | None = None) -> List[Tensor]:
        """Outputs of every block-level unit (or of the first ``upto``)."""
        outs = []
        n = len(self.units) if upto is None else upto
        for unit in self.units[:n]:
            x = unit(x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        n_frozen = self.num_frozen_units
        if n_frozen:
            with torch.no_grad():
                for unit in self.units[:n_frozen]:
                    x = unit(x)
        for unit in self.units[n_frozen:]:
            x = unit(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class CifarResNet18(FreezableBackbone):
    """ResNet-18 for small images (CIFAR stem: 3x3 conv, stride 1, no max-pool).

    Args:
        width: multiplier of the channel widths (1.0 gives 64-128-256-512 and a
            512-d feature; 0.25 gives a 128-d feature for fast CPU runs).
        in_channels: image channels (3 for CIFAR/Tiny-ImageNet, 1 for Fashion-MNIST).

    Units, in order: ``stem``, ``layer1.0``, ``layer1.1``, ..., ``layer4.1``;
    stages: ``stage1`` = stem + layer1, ``stage2`` = layer2, and so on.
    """

    def __init__(self, *, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        check_number("width", width, above=0)
        check_number("in_channels", in_channels, at_least=1, integer=True)
        planes = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        stem = nn.Sequential(
            nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes[0]),
            nn.ReLU(inplace=True),
        )
        units: List[nn.Module] = [stem]
        labels = ["stem"]
        stage_ends = []
        in_planes = planes[0]
        for stage, p in enumerate(planes):
            for b in range(2):
                stride = 2 if (stage > 0 and b == 0) else 1
                units.append(BasicBlock(in_planes, p, stride))
                labels.append(f"layer{stage + 1}.{b}")
                in_planes = p
            stage_ends.append(len(units))
        self.units = nn.ModuleList(units)
        self.unit_labels = labels
        self.stage_ends = stage_ends
        self.feature_dim = planes[-1]
        self.width = width
        self.in_channels = in_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")



def find_freezable_backbone(model: nn.Module) -> FreezableBackbone:
    """Return ``model`` or its first sub-module that is a :class:`FreezableBackbone`.

    Raises:
        TypeError: when the model contains none.
    """
    for module in model.modules():
        if isinstance(module, FreezableBackbone):
            return module
    raise TypeError(
        f"{type(model).__name__} contains no FreezableBackbone; accepted backbones: "
        "CifarResNet18 or any subclass of avalanche_freeze.backbones.FreezableBackbone"
    )


@torch.no_grad()
def unit_compute_shares(backbone: FreezableBackbone, example: Tensor) -> List[float]:
    """Share of the backbone's forward FLOPs spent in each block-level unit, measured
    with :class:`torch.utils.flop_counter.FlopCounterMode` on ``example`` (one batch)."""
    flops = []
    x = example
    was_training = backbone.training
    backbone.eval()
    for unit in backbone.units:
        with FlopCounterMode(display=False) as counter:
            x = unit(x)
        flops.append(counter.get_total_flops())
    backbone.train(was_training)
    total = sum(flops)
    return [f / total for f in flops] if total else [0.0] * len(flops)
