"""Applying a frozen prefix to a backbone and its optimizer.

A frozen unit's parameters leave autograd (``requires_grad=False``) and the optimizer (with
their momentum state, so weight decay and momentum cannot move them), its BatchNorm layers
stay in eval mode and its forward runs without autograd
(:meth:`~avalanche_freeze.backbones.FreezableBackbone.set_frozen_prefix`).

Example:
    >>> import torch
    >>> from avalanche_freeze.backbones import CifarResNet18
    >>> net = CifarResNet18(width=0.125)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> apply_frozen_prefix(net, 3, opt)
    >>> net.num_frozen_units, any(p.requires_grad for p in net.units[0].parameters())
    (3, False)
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from ..backbones import FreezableBackbone

__all__ = ["apply_frozen_prefix", "remove_from_optimizer"]


def remove_from_optimizer(optimizer: torch.optim.Optimizer, params: List[nn.Parameter]) -> int:
    """Remove ``params`` (and their state) from every parameter group; returns how many were removed."""
    ids = {id(p) for p in params}
    removed = 0
    for group in optimizer.param_groups:
        keep = [p for p in group["params"] if id(p) not in ids]
        removed += len(group["params"]) - len(keep)
        group["params"] = keep
    for p in params:
        optimizer.state.pop(p, None)
    return removed


def apply_frozen_prefix(backbone: FreezableBackbone, n_blocks: int, optimizer: Optional[torch.optim.Optimizer]) -> None:
    """Freeze the first ``n_blocks`` units of ``backbone`` and take their parameters out of ``optimizer``."""
    backbone.set_frozen_prefix(n_blocks)
    frozen = [p for unit in backbone.units[:n_blocks] for p in unit.parameters()]
    if frozen and optimizer is not None:
        remove_from_optimizer(optimizer, frozen)
