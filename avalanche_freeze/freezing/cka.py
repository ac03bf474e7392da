"""The ``cka`` measure: linear CKA between a unit's features under the previous task's model and now.

At the end of each task the measure keeps a copy of the backbone; on the next task it scores
each unit by linear CKA between its outputs on the task's fixed images under that copy and
under the current model. Deciding once per task (``decide_every=0``), it scores after
``warmup_epochs`` epochs on the new task, so that the features had the chance to move.

Example:
    >>> from avalanche_freeze.freezing.config import FreezeConfig
    >>> LinearCKA(FreezeConfig(measure="cka", decide_every=0, stability=0)).scores_after_warmup
    True
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence

from torch import nn

from ..backbones import FreezableBackbone, find_freezable_backbone
from .correlation import linear_cka
from .measure import CorrelationMeasure, TaskImages, tensor_bytes, unit_outputs

__all__ = ["LinearCKA"]


class LinearCKA(CorrelationMeasure):
    """Linear CKA against the end-of-previous-task model (see the module docs).

    Attributes:
        snapshot: the backbone as it was at the end of the last finished task (eval mode).
    """

    name = "cka"
    scores_after_warmup = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self.snapshot: Optional[nn.Module] = None

    def learn_task(self, backbone: FreezableBackbone, task: TaskImages, *, open_units: Sequence[int]) -> None:
        self.snapshot = copy.deepcopy(backbone).eval()

    def scores(self, backbone: FreezableBackbone, task: TaskImages) -> List[float]:
        x = task.samples()
        outs = unit_outputs(backbone, x)
        if self.snapshot is None:
            raise RuntimeError("the cka measure scores against the previous task's model: none was kept yet")
        old = unit_outputs(self.snapshot, x)
        return [linear_cka(a.flatten(1), b.flatten(1)) for a, b in zip(old, outs)]

    def state_dict(self):
        return {"snapshot": None if self.snapshot is None else self.snapshot.state_dict()}

    def load_state_dict(self, state, *, backbone=None) -> None:
        if state.get("snapshot") is None:
            self.snapshot = None
            return
        if backbone is None:
            raise ValueError("restoring the cka measure needs the backbone (backbone=...)")
        self.snapshot = copy.deepcopy(find_freezable_backbone(backbone)).eval()
        self.snapshot.load_state_dict(state["snapshot"])

    def memory_bytes(self) -> Dict[str, int]:
        return {"snapshot": tensor_bytes(self.snapshot.state_dict().values()) if self.snapshot is not None else 0}
