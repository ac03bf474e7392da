"""The ``gradient`` measure (the default): the new task's gradients against the old tasks' input spaces.

After TRGP (Lin et al., ICLR 2022) and GPM: at the end of each task, every convolution of every
unit that may still be frozen keeps a basis of its *input patches* on that task's images
(dimension ``C_in * k * k``, energy ``energy``). During a later task the weight gradients of
each convolution are summed between checks; at a check a convolution scores
``||G U U^T|| / ||G||`` (not squared), the maximum over old tasks, and a unit scores as its
weakest convolution: 1 when the new task's gradients lie in what old tasks fed the unit, near 0
when they leave it.

The raw ratio has no chance level: a random direction scores about ``sqrt(k/D)`` against a
rank-``k`` basis in ``D`` dimensions, and with the small input spaces of shallow units (``D = 9``
for a one-channel stem) almost any task passes. With ``score="calibrated"`` each convolution and
old task gets, when the task ends, a *chance level* (the mean ratio of random Gaussian gradients
of the convolution's shape against the basis, :data:`CHANCE_DRAWS` draws: what a gradient
unrelated to the old task's inputs scores) and a *ceiling* (the ratio of held-out input patches of
the same task against its basis: what the old task itself scores), and the check scores
:func:`~avalanche_freeze.freezing.measure.calibrate` of the raw ratio between them.

Example:
    >>> from avalanche_freeze.freezing.config import FreezeConfig
    >>> GradientProjection(FreezeConfig()).reads_gradients
    True
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..backbones import FreezableBackbone
from .correlation import conv_input_patches, energy_basis, gradient_projection_ratio
from .measure import CorrelationMeasure, TaskImages, calibrate, tensor_bytes

__all__ = ["CHANCE_DRAWS", "GradientProjection", "chance_ratio", "patch_ratio"]

#: Random gradients drawn for each chance level.
CHANCE_DRAWS = 16


def chance_ratio(basis: Tensor, rows: int, *, seed: int, draws: int = CHANCE_DRAWS) -> float:
    """The mean of ``||G U U^T|| / ||G||`` over ``draws`` Gaussian gradients ``G`` of ``rows`` rows
    (the convolution's output channels): the ratio of a gradient with no relation to the basis.
    About ``sqrt(k / D)`` for a rank-``k`` basis in ``D`` dimensions.

    Example:
        >>> u = torch.linalg.qr(torch.randn(64, 16))[0]
        >>> round(chance_ratio(u, 8, seed=0), 1)   # sqrt(16 / 64)
        0.5
    """
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(draws, rows, basis.shape[0], generator=gen, dtype=torch.float64)
    projected = torch.linalg.matrix_norm(g @ basis.double().cpu())
    return float((projected / torch.linalg.matrix_norm(g)).mean())


def patch_ratio(basis: Tensor, gram: Tensor) -> float:
    """``||U U^T M||_F / ||M||_F`` of patches ``M`` given by their Gram matrix ``M M^T``."""
    total = float(torch.trace(gram))
    if total <= 0.0 or basis.shape[1] == 0:
        return 0.0
    u = basis.double().to(gram.device)
    return min(1.0, (float(torch.trace(u.T @ gram.double() @ u)) / total) ** 0.5)


def unit_convs(unit: nn.Module) -> List[nn.Conv2d]:
    """The convolutions of a unit, in module order."""
    return [m for m in unit.modules() if isinstance(m, nn.Conv2d)]


class GradientProjection(CorrelationMeasure):
    """Gradient projection onto old tasks' input-patch bases (see the module docs).

    Attributes:
        patch_bases: per unit, per convolution, one input-patch basis per old task.
        chances, ceilings: with ``score="calibrated"``, per unit, per convolution, per old task: the
            chance level and the same-task ceiling of the ratio.
        grad_sums: per open unit, per convolution, the weight gradients summed since the last check.
    """

    name = "gradient"
    reads_gradients = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self.patch_bases: Dict[int, List[List[Tensor]]] = {}
        self.chances: Dict[int, List[List[float]]] = {}
        self.ceilings: Dict[int, List[List[float]]] = {}
        self.grad_sums: Dict[int, List[Tensor]] = {}
        self._details: Dict[str, List[float]] = {}

    @torch.no_grad()
    def observe_backward(self, backbone: FreezableBackbone, *, open_units: Sequence[int]) -> None:
        """Add the current weight gradients of every open unit's convolutions to the sums the next
        check scores. An iteration whose gradients are not finite (a float16 step the gradient
        scaler skips) adds nothing."""
        per_unit = {i: [c.weight.grad for c in unit_convs(backbone.units[i])] for i in open_units}
        per_unit = {i: grads for i, grads in per_unit.items() if all(g is not None for g in grads)}
        if not per_unit:
            return
        # decided on the device (no host read): a non-finite iteration adds zeros
        finite = torch.isfinite(torch.stack([g.sum() for grads in per_unit.values() for g in grads])).all()
        for i, grads in per_unit.items():
            grads = [torch.where(finite, g.detach(), torch.zeros_like(g)) for g in grads]
            sums = self.grad_sums.get(i)
            if sums is None:
                self.grad_sums[i] = grads
            else:
                for acc, g in zip(sums, grads):
                    acc.add_(g)

    def learn_task(self, backbone: FreezableBackbone, task: TaskImages, *, open_units: Sequence[int]) -> None:
        samples = task.samples()
        self.add_task_bases(backbone, samples, open_units=open_units)
        if self.config.calibrated:
            held_out = task.held_out()
            self.add_task_calibration(backbone, samples if held_out is None else held_out, open_units=open_units)

    def _patch_grams(self, backbone: FreezableBackbone, x: Tensor, open_units: Sequence[int],
                     chunk: int) -> Dict[Tuple[int, int], Tensor]:
        """Per ``(unit, conv)`` of the open units, the Gram matrix ``M M^T`` of the convolution's input
        patches on the images ``x``."""
        convs = {c: (i, j) for i in open_units for j, c in enumerate(unit_convs(backbone.units[i]))}
        grams: Dict[Tuple[int, int], Tensor] = {}

        def hook(module, inputs):
            m = conv_input_patches(inputs[0], module).double()
            key = convs[module]
            grams[key] = grams[key] + m @ m.T if key in grams else m @ m.T

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
        return grams

    @torch.no_grad()
    def add_task_calibration(self, backbone: FreezableBackbone, held_out: Tensor, *, open_units: Sequence[int],
                             chunk: int = 64) -> None:
        """The chance level and the ceiling of the bases :meth:`add_task_bases` just added (the last
        basis of every open unit's convolutions), the ceiling from the images ``held_out``."""
        open_units = [i for i in open_units if i in self.patch_bases]
        self.chances = {i: c for i, c in self.chances.items() if i in open_units}
        self.ceilings = {i: c for i, c in self.ceilings.items() if i in open_units}
        grams = self._patch_grams(backbone, held_out, open_units, chunk)
        for i in open_units:
            convs = unit_convs(backbone.units[i])
            chances = self.chances.setdefault(i, [[] for _ in convs])
            ceilings = self.ceilings.setdefault(i, [[] for _ in convs])
            for j, conv in enumerate(convs):
                basis = self.patch_bases[i][j][-1]
                task = len(self.patch_bases[i][j]) - 1
                chances[j].append(chance_ratio(basis, conv.out_channels, seed=1009 * i + 101 * j + task))
                ceilings[j].append(patch_ratio(basis, grams[(i, j)]))

    def calibrated(self, raw: float, unit: int, conv: int, task: int) -> float:
        """The calibrated score of convolution ``conv`` of ``unit`` against old task ``task``."""
        return calibrate(raw, self.chances[unit][conv][task], self.ceilings[unit][conv][task])

    @torch.no_grad()
    def add_task_bases(self, backbone: FreezableBackbone, x: Tensor, *, open_units: Sequence[int],
                       chunk: int = 64) -> None:
        """One input-patch basis per convolution of every open unit for the task just finished, from
        the images ``x``; bases of units that can no longer be frozen are dropped."""
        open_units = list(open_units)
        self.patch_bases = {i: b for i, b in self.patch_bases.items() if i in open_units}
        grams = self._patch_grams(backbone, x, open_units, chunk)
        for (i, j), gram in grams.items():
            per_conv = self.patch_bases.setdefault(i, [[] for _ in unit_convs(backbone.units[i])])
            per_conv[j].append(energy_basis(gram, self.config.energy).cpu())

    def scores(self, backbone: FreezableBackbone, task: TaskImages) -> List[float]:
        """Per block-level unit: the weakest convolution's ``max over old tasks of ||G U U^T|| / ||G||``
        for the gradients summed since the last check (1.0 for frozen units, 0.0 without gradients);
        with ``score="calibrated"`` the weakest convolution's best calibrated score instead."""
        calibrated = self.config.calibrated
        scores, details = [], {"raw": [], "chance": [], "ceiling": []}
        for i in range(len(backbone.units)):
            sums, bases = self.grad_sums.get(i), self.patch_bases.get(i)
            if i < backbone.num_frozen_units or sums is None or not bases:
                value = 1.0 if i < backbone.num_frozen_units else 0.0
                scores.append(value)
                for key in details:
                    details[key].append(value if key == "raw" else float("nan"))
                continue
            # per conv: (score, raw, chance, ceiling) of its best old task
            per_conv = []
            for j, (g, per_task) in enumerate(zip(sums, bases)):
                raws = [gradient_projection_ratio(u.to(g.device), g) for u in per_task]
                if calibrated:
                    values = [self.calibrated(r, i, j, t) for t, r in enumerate(raws)]
                    best = max(range(len(raws)), key=values.__getitem__)
                    per_conv.append((values[best], raws[best], self.chances[i][j][best], self.ceilings[i][j][best]))
                else:
                    raw = max(raws, default=0.0)
                    per_conv.append((raw, raw, float("nan"), float("nan")))
            weakest = min(per_conv, key=lambda c: c[0])
            scores.append(weakest[0])
            for key, value in zip(details, weakest[1:]):
                details[key].append(value)
        self._details = details if calibrated else {}
        return scores

    def details(self) -> Dict[str, List[float]]:
        return dict(self._details)

    def restart_window(self) -> None:
        self.grad_sums = {}

    def state_dict(self):
        copy = lambda nested: {i: [list(per_task) for per_task in convs] for i, convs in nested.items()}  # noqa: E731
        return {"patch_bases": copy(self.patch_bases), "patch_chances": copy(self.chances),
                "patch_ceilings": copy(self.ceilings)}

    def load_state_dict(self, state, *, backbone=None) -> None:
        copy = lambda nested: {int(i): [list(per_task) for per_task in convs]  # noqa: E731
                               for i, convs in nested.items()}
        self.patch_bases = copy(state.get("patch_bases", {}))
        self.chances = copy(state.get("patch_chances", {}))
        self.ceilings = copy(state.get("patch_ceilings", {}))

    def memory_bytes(self) -> Dict[str, int]:
        return {"bases": tensor_bytes([u for convs in self.patch_bases.values() for per_task in convs for u in per_task]),
                "gradient_sums": tensor_bytes([g for sums in self.grad_sums.values() for g in sums])}
