"""The ``gradient`` measure (the default): the new task's gradients against the old tasks' input spaces.

After TRGP (Lin et al., ICLR 2022) and GPM: at the end of each task, every convolution of every
unit that may still be frozen keeps a basis of its *input patches* on that task's images
(dimension ``C_in * k * k``, energy ``energy``). During a later task the weight gradients of
each convolution are summed between checks; at a check a convolution scores
``||G U U^T|| / ||G||`` (not squared), the maximum over old tasks, and a unit scores as its
weakest convolution: 1 when the new task's gradients lie in what old tasks fed the unit, near 0
when they leave it.

Example:
    >>> from avalanche_freeze.freezing.config import FreezeConfig
    >>> GradientProjection(FreezeConfig()).reads_gradients
    True
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn

from ..backbones import FreezableBackbone
from .correlation import conv_input_patches, energy_basis, gradient_projection_ratio
from .measure import CorrelationMeasure, TaskImages, tensor_bytes

__all__ = ["GradientProjection"]


def unit_convs(unit: nn.Module) -> List[nn.Conv2d]:
    """The convolutions of a unit, in module order."""
    return [m for m in unit.modules() if isinstance(m, nn.Conv2d)]


class GradientProjection(CorrelationMeasure):
    """Gradient projection onto old tasks' input-patch bases (see the module docs).

    Attributes:
        patch_bases: per unit, per convolution, one input-patch basis per old task.
        grad_sums: per open unit, per convolution, the weight gradients summed since the last check.
    """

    name = "gradient"
    reads_gradients = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self.patch_bases: Dict[int, List[List[Tensor]]] = {}
        self.grad_sums: Dict[int, List[Tensor]] = {}

    @torch.no_grad()
    def observe_backward(self, backbone: FreezableBackbone, *, open_units: Sequence[int]) -> None:
        """Add the current weight gradients of every open unit's convolutions to the sums the next
        check scores. An iteration whose gradients are not finite (a float16 step the gradient
        scaler skips) adds nothing."""
        per_unit = {i: [c.weight.grad for c in unit_convs(backbone.units[i])] for i in open_units}
        per_unit = {i: grads for i, grads in per_unit.items() if all(g is not None for g in grads)}
        if per_unit and not bool(torch.isfinite(torch.stack([g.sum() for grads in per_unit.values()
                                                             for g in grads])).all()):
            return
        for i, grads in per_unit.items():
            sums = self.grad_sums.get(i)
            if sums is None:
                self.grad_sums[i] = [g.detach().clone() for g in grads]
            else:
                for acc, g in zip(sums, grads):
                    acc.add_(g)

    def learn_task(self, backbone: FreezableBackbone, task: TaskImages, *, open_units: Sequence[int]) -> None:
        self.add_task_bases(backbone, task.samples(), open_units=open_units)

    @torch.no_grad()
    def add_task_bases(self, backbone: FreezableBackbone, x: Tensor, *, open_units: Sequence[int],
                       chunk: int = 64) -> None:
        """One input-patch basis per convolution of every open unit for the task just finished, from
        the images ``x``; bases of units that can no longer be frozen are dropped."""
        open_units = list(open_units)
        self.patch_bases = {i: b for i, b in self.patch_bases.items() if i in open_units}
        convs = {c: (i, j) for i in open_units for j, c in enumerate(unit_convs(backbone.units[i]))}
        grams: Dict[nn.Module, Tensor] = {}

        def hook(module, inputs):
            m = conv_input_patches(inputs[0], module).double()
            grams[module] = grams[module] + m @ m.T if module in grams else m @ m.T

        handles = [c.register_forward_pre_hook(hook) for c in convs]
        try:
            was_training = backbone.training
            backbone.eval()
            for part in x.split(chunk):
                backbone.forward_units(part, upto=max(open_units) + 1 if open_units else 0)
            backbone.train(was_training)
        finally:
            for h in handles:
                h.remove()
        for conv, (i, j) in convs.items():
            per_conv = self.patch_bases.setdefault(i, [[] for _ in unit_convs(backbone.units[i])])
            per_conv[j].append(energy_basis(grams[conv], self.config.energy).cpu())

    def scores(self, backbone: FreezableBackbone, task: TaskImages) -> List[float]:
        """Per block-level unit: the weakest convolution's ``max over old tasks of ||G U U^T|| / ||G||``
        for the gradients summed since the last check (1.0 for frozen units, 0.0 without gradients)."""
        scores = []
        for i in range(len(backbone.units)):
            if i < backbone.num_frozen_units:
                scores.append(1.0)
                continue
            sums, bases = self.grad_sums.get(i), self.patch_bases.get(i)
            if sums is None or not bases:
                scores.append(0.0)
                continue
            scores.append(min(max((gradient_projection_ratio(u.to(g.device), g) for u in per_task), default=0.0)
                              for g, per_task in zip(sums, bases)))
        return scores

    def restart_window(self) -> None:
        self.grad_sums = {}

    def state_dict(self):
        return {"patch_bases": {i: [list(per_task) for per_task in convs] for i, convs in self.patch_bases.items()}}

    def load_state_dict(self, state, *, backbone=None) -> None:
        self.patch_bases = {int(i): [list(per_task) for per_task in convs]
                            for i, convs in state.get("patch_bases", {}).items()}

    def memory_bytes(self) -> Dict[str, int]:
        return {"bases": tensor_bytes([u for convs in self.patch_bases.values() for per_task in convs for u in per_task]),
                "gradient_sums": tensor_bytes([g for sums in self.grad_sums.values() for g in sums])}
