"""The stability gate: a unit whose features still move on the current task is not frozen.

At the start of a check window the gate keeps, per unit, the centred Gram matrix of its outputs
on the window's fixed images (``n^2`` numbers a unit instead of its activations). At a check,
a unit's stability is the linear CKA between those outputs then and now; the unit may be frozen
only when it reaches ``threshold``. With ``reference="check"`` the reference moves to each check
(has the unit *stopped* moving?); with ``"task"`` it stays at the start of the task (has it not
moved since the task began?).

Example:
    >>> import torch
    >>> from avalanche_freeze.backbones import CifarResNet18
    >>> net, x = CifarResNet18(width=0.125, in_channels=1), torch.rand(8, 1, 28, 28)
    >>> gate = StabilityGate(threshold=0.99, reference="task")
    >>> gate.start(net, x)
    >>> min(gate.values(net)) > 0.999   # nothing trained since the start: every unit is stable
    True
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from ..backbones import FreezableBackbone
from .correlation import centered_gram, cka_from_grams
from .measure import tensor_bytes

__all__ = ["StabilityGate", "unit_grams"]


def unit_grams(backbone: FreezableBackbone, x: Tensor) -> List[Tensor]:
    """Per unit, the centred ``n x n`` Gram matrix of its outputs on ``x`` (eval mode; one unit's
    activations alive at a time)."""
    grams, was_training = [], backbone.training
    backbone.eval()
    with torch.no_grad():
        for unit in backbone.units:
            x = unit(x)
            grams.append(centered_gram(x))
    backbone.train(was_training)
    return grams


class StabilityGate:
    """Linear CKA of each unit's outputs between a reference point and now (see the module docs).

    Args:
        threshold: the stability a unit must reach (0 turns the gate off: every unit passes).
        reference: ``task`` or ``check``.
    """

    def __init__(self, *, threshold: float, reference: str) -> None:
        self.threshold = threshold
        self.reference = reference
        self._probe: Optional[Tensor] = None
        self._grams: Optional[List[Tensor]] = None

    def start(self, backbone: FreezableBackbone, probe: Tensor) -> None:
        """Begin a window: ``probe`` (fixed images of the task) and the units' outputs on it now are
        the reference."""
        self._probe = probe
        self._grams = unit_grams(backbone, probe) if self.threshold > 0 else None

    def reset(self) -> None:
        """Drop the reference (between tasks)."""
        self._probe, self._grams = None, None

    def values(self, backbone: FreezableBackbone) -> List[float]:
        """Per block-level unit, its stability since the reference (1.0 without a gate or a window);
        with ``reference="check"`` the reference then moves to now."""
        if self.threshold == 0 or self._probe is None or self._grams is None:
            return [1.0] * len(backbone.units)
        now = unit_grams(backbone, self._probe)
        values = [cka_from_grams(a, b) for a, b in zip(self._grams, now)]
        if self.reference == "check":
            self._grams = now
        return values

    def memory_bytes(self) -> int:
        """Bytes of the reference (one ``n x n`` matrix a unit, within a task)."""
        return tensor_bytes(self._grams or [])
