"""Applying a frozen prefix to a backbone and its optimizer, in both directions.

A frozen unit's parameters leave autograd (``requires_grad=False``) and the optimizer (with
their momentum state, so weight decay and momentum cannot move them), its BatchNorm layers
stay in eval mode and its forward runs without autograd
(:meth:`~avalanche_freeze.backbones.FreezableBackbone.set_frozen_prefix`). A unit unfrozen
again (``freeze.shrink``) gets the reverse: its parameters require gradients, re-enter the
parameter group they left with fresh optimizer state (no momentum carried over from before
the freeze), and its BatchNorm layers follow the model's train/eval mode again.

Example:
    >>> import torch
    >>> from avalanche_freeze.backbones import CifarResNet18
    >>> net = CifarResNet18(width=0.125)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> apply_frozen_prefix(net, 3, opt)
    >>> net.num_frozen_units, any(p.requires_grad for p in net.units[0].parameters())
    (3, False)
    >>> apply_frozen_prefix(net, 1, opt)   # units 1 and 2 train again
    >>> sum(len(g["params"]) for g in opt.param_groups) == len([p for p in net.parameters() if p.requires_grad])
    True
"""

from __future__ import annotations

import weakref
from typing import Dict, List, Optional

import torch
from torch import nn

from ..backbones import FreezableBackbone

__all__ = ["apply_frozen_prefix", "remove_from_optimizer", "restore_to_optimizer"]

#: Per optimizer: the parameter group each parameter removed by a freeze left (by parameter id),
#: so that unfreezing puts it back where it was and nowhere else.
_LEFT_GROUP: "weakref.WeakKeyDictionary[torch.optim.Optimizer, Dict[int, int]]" = weakref.WeakKeyDictionary()


def remove_from_optimizer(optimizer: torch.optim.Optimizer, params: List[nn.Parameter]) -> int:
    """Remove ``params`` (and their state) from every parameter group; returns how many were removed.
    The group each one left is remembered for :func:`restore_to_optimizer`."""
    ids = {id(p) for p in params}
    left = _LEFT_GROUP.setdefault(optimizer, {})
    removed = 0
    for index, group in enumerate(optimizer.param_groups):
        keep = []
        for p in group["params"]:
            if id(p) in ids:
                left[id(p)] = index
            else:
                keep.append(p)
        removed += len(group["params"]) - len(keep)
        group["params"] = keep
    for p in params:
        optimizer.state.pop(p, None)
    return removed


def restore_to_optimizer(optimizer: torch.optim.Optimizer, params: List[nn.Parameter]) -> int:
    """Put back those of ``params`` that :func:`remove_from_optimizer` took out of ``optimizer`` and
    that are not in it now, each into the group it left, with fresh state; returns how many.
    Parameters the optimizer never held stay out (a user's choice of what to optimise is kept)."""
    left = _LEFT_GROUP.get(optimizer, {})
    present = {id(p) for group in optimizer.param_groups for p in group["params"]}
    restored = 0
    for p in params:
        index = left.pop(id(p), None)
        if index is None or id(p) in present or index >= len(optimizer.param_groups):
            continue
        optimizer.param_groups[index]["params"].append(p)
        optimizer.state.pop(p, None)
        restored += 1
    return restored


def apply_frozen_prefix(backbone: FreezableBackbone, n_blocks: int, optimizer: Optional[torch.optim.Optimizer]) -> None:
    """Freeze the first ``n_blocks`` units of ``backbone`` and unfreeze the rest: the prefix's parameters
    leave ``optimizer``, those of units past it that an earlier freeze took out come back."""
    backbone.set_frozen_prefix(n_blocks)
    if optimizer is None:
        return
    frozen = [p for unit in backbone.units[:n_blocks] for p in unit.parameters()]
    if frozen:
        remove_from_optimizer(optimizer, frozen)
    restore_to_optimizer(optimizer, [p for unit in backbone.units[n_blocks:] for p in unit.parameters()])
