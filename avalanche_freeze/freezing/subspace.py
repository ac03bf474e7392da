"""The ``subspace`` measure: the new task's features against a merged basis of the old tasks' features.

The paper's reconstructed reading (TRGP-style, on outputs): at the end of each task, every
unit's output on ``n_samples`` images of the task, flattened per sample (``representation=
"flatten"``) or as channel vectors at every position (``"channel"``), optionally centred,
extends the unit's merged old-task basis (energy ``energy``). A unit scores
``||U U^T R||_F^2 / ||R||_F^2`` for its output ``R`` on the current task's images.

The raw ratio is bounded by its estimator (held-out images of the *same* task score well below
1, noise images well above 0), so ``normalize=True`` scores ``(s - floor) / (ceiling - floor)``
clipped to ``[0, 1]``, with ``ceiling`` the score of held-out images of the task just finished
and ``floor`` that of uniform-noise images. ``score="calibrated"`` uses the same ceiling with a
chance level in place of the noise floor: the mean ratio of Gaussian matrices of the
representation's shape against the basis (about ``k / d`` for a rank-``k`` basis in ``d``
dimensions), computed when the task ends.

Example:
    >>> from avalanche_freeze.freezing.config import FreezeConfig
    >>> SubspaceProjection(FreezeConfig(measure="subspace", decide_every=0, stability=0)).bases
    {}
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import Tensor

from ..backbones import FreezableBackbone
from .correlation import SubspaceBasis, representation_matrix
from .measure import CorrelationMeasure, TaskImages, calibrate, tensor_bytes, unit_outputs

#: Random matrices drawn for each chance level.
CHANCE_DRAWS = 8

__all__ = ["SubspaceProjection"]


class SubspaceProjection(CorrelationMeasure):
    """Subspace ratio of unit outputs against the old tasks' merged basis (see the module docs).

    Attributes:
        bases: per unit, the merged basis of its outputs on the old tasks.
        ceilings: per unit, the score of held-out images of the last finished task (``normalize`` or
            ``score="calibrated"``).
        chances: per unit, the chance level of the ratio against its basis (``score="calibrated"``).
    """

    name = "subspace"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.bases: Dict[int, SubspaceBasis] = {}
        self.ceilings: Dict[int, float] = {}
        self.chances: Dict[int, float] = {}
        self._details: Dict[str, List[float]] = {}

    def matrix(self, features: Tensor) -> Tensor:
        """A unit's output as the matrix the bases are built from (``representation``, ``center``)."""
        return representation_matrix(features, self.config.representation, center=self.config.center)

    def learn_task(self, backbone: FreezableBackbone, task: TaskImages, *, open_units: Sequence[int]) -> None:
        samples = task.samples()
        outs = unit_outputs(backbone, samples)
        for i, out in enumerate(outs):
            self.bases.setdefault(i, SubspaceBasis(energy=self.config.energy)).update(self.matrix(out))
        calibrated = self.config.calibrated
        held_out = task.held_out() if self.config.normalize or calibrated else None
        if held_out is None and calibrated:
            held_out = samples  # a task too small for held-out images: the in-sample ratio
        if held_out is not None:
            self.ceilings = dict(enumerate(self.raw_scores(backbone, held_out)))
        if calibrated:
            gen = torch.Generator().manual_seed(7_907 * len(self.bases) + self.bases[0].rank)
            self.chances = {}
            for i, out in enumerate(outs):
                shape = self.matrix(out).shape
                noise = torch.randn(CHANCE_DRAWS, *shape, generator=gen, dtype=torch.float64)
                self.chances[i] = sum(self.bases[i].ratio(m) for m in noise) / CHANCE_DRAWS

    def raw_scores(self, backbone: FreezableBackbone, x: Tensor) -> List[float]:
        """Per block-level unit: the subspace ratio of the outputs on ``x`` against the old-task basis."""
        outs = unit_outputs(backbone, x)
        return [self.bases[i].ratio(self.matrix(o)) if i in self.bases else 0.0 for i, o in enumerate(outs)]

    def normalized_scores(self, backbone: FreezableBackbone, x: Tensor, noise: Tensor) -> List[float]:
        """Per unit: ``(s - floor) / (ceiling - floor)`` clipped to ``[0, 1]``, with ``s`` the raw score
        of ``x``, ``floor`` that of the ``noise`` images and ``ceiling`` that of held-out samples of
        the last finished task (1 where none were left)."""
        raw, floors = self.raw_scores(backbone, x), self.raw_scores(backbone, noise)
        return [min(1.0, max(0.0, (s - f) / max(self.ceilings.get(i, 1.0) - f, 1e-6)))
                for i, (s, f) in enumerate(zip(raw, floors))]

    def scores(self, backbone: FreezableBackbone, task: TaskImages) -> List[float]:
        x = task.samples()
        if self.config.calibrated:
            raw = self.raw_scores(backbone, x)
            chance = [self.chances.get(i, float("nan")) for i in range(len(raw))]
            ceiling = [self.ceilings.get(i, float("nan")) for i in range(len(raw))]
            self._details = {"raw": raw, "chance": chance, "ceiling": ceiling}
            return [calibrate(r, c, e) if i in self.chances else 0.0
                    for i, (r, c, e) in enumerate(zip(raw, chance, ceiling))]
        if self.config.normalize:
            return self.normalized_scores(backbone, x, task.noise_like(x))
        return self.raw_scores(backbone, x)

    def details(self) -> Dict[str, List[float]]:
        return dict(self._details)

    def state_dict(self):
        return {"bases": {i: b.state_dict() for i, b in self.bases.items()}, "ceilings": dict(self.ceilings),
                "chances": dict(self.chances)}

    def load_state_dict(self, state, *, backbone=None) -> None:
        self.bases = {}
        for i, b in state.get("bases", {}).items():
            basis = SubspaceBasis(energy=self.config.energy)
            basis.load_state_dict(b)
            self.bases[int(i)] = basis
        self.ceilings = {int(i): c for i, c in state.get("ceilings", {}).items()}
        self.chances = {int(i): c for i, c in state.get("chances", {}).items()}

    def memory_bytes(self) -> Dict[str, int]:
        return {"bases": tensor_bytes([b.basis for b in self.bases.values() if b.basis is not None])}
