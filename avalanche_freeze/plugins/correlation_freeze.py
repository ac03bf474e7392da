"""Progressive task-correlated layer freezing (Yang et al., arXiv 2303.07477).

From task ``first_task`` on (3 by default; 2 in the paper), the plugin scores each
freezable unit of the backbone by how correlated the new task is with the earlier ones (see
:mod:`avalanche_freeze.correlation`) and freezes the longest prefix of units that
pass, capped at a share of the backbone's forward compute. The frozen prefix only
grows. Two decision timings:

* ``decide_every = 0``: once, at the start of each task, before any update (the
  paper's reconstructed rule; measures ``subspace`` and ``cka``);
* ``decide_every = K`` (default): every ``K`` training iterations of each such task,
  so that a unit that settles mid-task is frozen then. Here a unit must
  also pass the **stability gate**: linear CKA between its outputs on fixed samples
  of the task at the start of the task (``gate_reference="task"``) or at the previous
  check (``"check"``) and now must reach ``stability`` (a unit whose features move is
  not frozen, however correlated the tasks are).

Measures: ``gradient`` (default; TRGP, Lin et al. ICLR 2022: the new task's
SSL-loss gradient of every conv, accumulated over the last ``K`` iterations, projected
onto each old task's basis of that conv's *input patches*; ratio
``||G U U^T|| / ||G||``, the maximum over old tasks; a unit scores as its weakest conv),
``subspace`` (flattened outputs against a merged old-task basis, optionally
``normalize``-d between a noise floor and a same-task ceiling) and ``cka``.

A ``schedule`` replaces the decision by a fixed list of ``(task, iteration, blocks)``
freezes: the fixed-schedule controls of ``experiments/bench_freeze.py``.

Freezing a unit means: ``requires_grad=False`` for its parameters, its
parameters removed from the optimizer (with their momentum state), its
BatchNorm layers kept in eval mode across ``model.train()`` calls, and its
forward run under ``torch.no_grad()`` (no activations saved for backward).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ..backbones import GRANULARITIES, FreezableBackbone, find_freezable_backbone, unit_compute_shares
from ..correlation import (REPRESENTATIONS, SubspaceBasis, centered_gram, cka_from_grams, conv_input_patches,
                           energy_basis, gradient_projection_ratio, linear_cka, representation_matrix)
from ..distributed import broadcast_from_main
from ..freeze_decision import choose_prefix
from ..protocols import SelfSupervisedState
from ..validation import check_choice, check_number, not_accepted

__all__ = ["CorrelationFreezePlugin", "FreezeConfig", "GATE_REFERENCES", "MEASURES", "apply_frozen_prefix", "remove_from_optimizer",
           "unit_compute_shares"]

MEASURES = ("gradient", "subspace", "cka")
GATE_REFERENCES = ("task", "check")


@dataclass
class FreezeConfig:
    """The ``freeze`` configuration section.

    The defaults (``tau``, ``stability``, ``max_frozen_share``, ``first_task``) were chosen on
    validation data (unused training images of Split Fashion-MNIST, three seeds), never on
    test accuracy (see ``experiments/tune_freeze.py`` and the README's Design notes);
    ``measure`` and ``decide_every`` (one epoch there) were not tuned.

    Attributes:
        measure: ``gradient`` (default), ``subspace`` or ``cka``.
        tau: correlation a unit must reach to be frozen (0.8; 0 leaves the decision to the gate and
            the cap). The paper's 0.9 held back BarlowTwins' shallow blocks and cost it accuracy on
            the validation split; 0.8 rarely binds there (3 of 19 checks) but still refuses a
            unit whose new-task gradients leave the old tasks' input space (score near 0).
        stability: minimum linear CKA between a unit's outputs (fixed samples of the current
            task) at the gate's reference point and now; 0 turns the gate off. Needs ``decide_every > 0``.
        gate_reference: ``task`` (the start of the current task: the unit must not have moved
            since the task began) or ``check`` (the previous check: it must have stopped moving).
        decide_every: decide every this many training iterations of each task from ``first_task``
            on (0: once at the start of each such task, as the paper's reconstructed rule).
        max_frozen_share: cap on the frozen prefix's share of backbone forward compute (0.5;
            1.0 = no cap).
        first_task: the first task (counted from 1) in which units may be frozen: 3 (default: the
            backbone has learned from two tasks before any of it stops training) or 2 (the
            paper: as soon as there is an old task). A ``schedule`` ignores it.
        granularity: ``block`` (stem + 8 blocks) or ``stage`` (4 stages).
        n_samples: samples of a task used to build bases, scores and stability checks (256).
        energy: energy threshold ``eps`` of the bases (0.97).
        representation: subspace only: ``flatten`` (each sample's output flattened,
            default) or ``channel`` (channel vectors at every position).
        center: subspace only: subtract the mean before building bases and scores (False).
        warmup_epochs: ``cka`` with ``decide_every = 0`` only: epochs trained on a new task before scoring (1).
        normalize: subspace only: score each unit relative to what its estimator can reach,
            ``(s - floor) / (ceiling - floor)`` clipped to ``[0, 1]``, with ``ceiling`` the score of
            held-out samples of the task just finished against the merged basis and ``floor``
            the score of uniform-noise images (False: the raw ratio).
        schedule: ``[[task, iteration, blocks], ...]``: instead of deciding, freeze the first
            ``blocks`` block-level units at ``iteration`` of task ``task`` (0-based); a fixed
            schedule for controls. Empty (default): the plugin decides.
    """

    #: The options a ``schedule`` does not read: with one, they do not change a run's results.
    DECISION_OPTIONS = ("measure", "tau", "stability", "gate_reference", "decide_every", "max_frozen_share",
                        "first_task", "n_samples", "energy", "representation", "center", "warmup_epochs",
                        "normalize")

    measure: str = "gradient"
    tau: float = 0.8
    stability: float = 0.99
    gate_reference: str = "task"
    decide_every: int = 16
    max_frozen_share: float = 0.5
    first_task: int = 3
    granularity: str = "block"
    n_samples: int = 256
    energy: float = 0.97
    representation: str = "flatten"
    center: bool = False
    warmup_epochs: int = 1
    normalize: bool = False
    schedule: List[List[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("measure", self.measure, MEASURES)
        check_number("tau", self.tau, at_least=0, at_most=1)
        check_number("stability", self.stability, at_least=0, at_most=1)
        check_choice("gate_reference", self.gate_reference, GATE_REFERENCES)
        check_number("decide_every", self.decide_every, at_least=0, integer=True)
        check_number("max_frozen_share", self.max_frozen_share, at_least=0, at_most=1)
        check_number("first_task", self.first_task, at_least=2, integer=True)
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_number("n_samples", self.n_samples, at_least=2, integer=True)
        check_number("energy", self.energy, above=0, at_most=1)
        check_choice("representation", self.representation, REPRESENTATIONS)
        check_choice("center", self.center, (False, True))
        check_number("warmup_epochs", self.warmup_epochs, at_least=0, integer=True)
        check_choice("normalize", self.normalize, (False, True))
        if self.decide_every == 0 and self.measure == "gradient":
            raise not_accepted("measure", self.measure, "subspace or cka with decide_every=0 (the gradient "
                               "measure reads the new task's gradients, so it needs decide_every > 0)")
        if self.decide_every == 0 and self.stability > 0:
            raise not_accepted("stability", self.stability, "0 with decide_every=0 (the gate compares a unit's "
                               "outputs between two checks during a task, so it needs decide_every > 0)")
        entries = [list(e) for e in self.schedule]
        for entry in entries:
            if len(entry) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in entry):
                raise not_accepted("schedule", entry, "[task, iteration, blocks] entries of three non-negative "
                                   "integers")


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


class CorrelationFreezePlugin(SupervisedPlugin, supports_distributed=True):
    """Freeze the task-correlated, settled prefix of a :class:`~avalanche_freeze.backbones.FreezableBackbone`.

    Works with :class:`~avalanche_freeze.SelfSupervisedStrategy` (with or without LUMP) and
    with Avalanche's supervised strategies whose model contains the backbone.

    Args:
        measure, tau, stability, gate_reference, decide_every, max_frozen_share, first_task, granularity,
            n_samples, energy, representation, center, warmup_epochs, normalize, schedule: the options of
            :class:`FreezeConfig` (same defaults).
        seed: seed of the sample selection.

    Attributes:
        history: one dict per decision: ``experience``, ``iteration`` (within the task),
            ``scores`` and ``stability`` (unit -> value; empty for a schedule), ``frozen_units``
            (names), ``frozen_blocks`` (block-level count), ``frozen_share``, ``stopped_by`` (what ended
            the prefix: ``tau``, ``gate``, ``both``, ``cap`` or ``end``, see
            :func:`~avalanche_freeze.freeze_decision.choose_prefix`; ``None`` for a schedule), ``seconds`` (its cost).
        decision_seconds: per task, the wall time spent in the plugin's own work (bases,
            gradient sums, scores, gates), included in the task's training time.

    Example:
        >>> from avalanche_freeze.plugins import CorrelationFreezePlugin
        >>> plugin = CorrelationFreezePlugin(tau=0.5, stability=0.99, decide_every=20)
        >>> control = CorrelationFreezePlugin(schedule=[[1, 0, 3]])   # stem + layer1 from task 2 on
    """

    def __init__(
        self,
        *,
        measure: str = FreezeConfig.measure,
        tau: float = FreezeConfig.tau,
        stability: float = FreezeConfig.stability,
        gate_reference: str = FreezeConfig.gate_reference,
        decide_every: int = FreezeConfig.decide_every,
        max_frozen_share: float = FreezeConfig.max_frozen_share,
        first_task: int = FreezeConfig.first_task,
        granularity: str = FreezeConfig.granularity,
        n_samples: int = FreezeConfig.n_samples,
        energy: float = FreezeConfig.energy,
        representation: str = FreezeConfig.representation,
        center: bool = FreezeConfig.center,
        warmup_epochs: int = FreezeConfig.warmup_epochs,
        normalize: bool = FreezeConfig.normalize,
        schedule: Optional[Sequence[Sequence[int]]] = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        schedule = [[int(v) if not isinstance(v, bool) else v for v in e] for e in (schedule or [])]
        FreezeConfig(measure=measure, tau=tau, stability=stability, gate_reference=gate_reference,
                     decide_every=decide_every, max_frozen_share=max_frozen_share, first_task=first_task,
                     granularity=granularity, n_samples=n_samples, energy=energy,
                     representation=representation, center=center, warmup_epochs=warmup_epochs,
                     normalize=normalize, schedule=schedule)
        self.measure = measure
        self.tau = tau
        self.stability = stability
        self.gate_reference = gate_reference
        self.decide_every = decide_every
        self.max_frozen_share = max_frozen_share
        self.first_task = first_task
        self.granularity = granularity
        self.n_samples = n_samples
        self.energy = energy
        self.representation = representation
        self.center = center
        self.warmup_epochs = warmup_epochs
        self.normalize = normalize
        self.schedule = schedule
        self.seed = seed
        #: ``subspace``: per unit, the merged basis of its flattened outputs on the old tasks.
        self.bases: Dict[int, SubspaceBasis] = {}
        #: ``gradient``: per unit, per conv, one input-patch basis per old task.
        self.patch_bases: Dict[int, List[List[Tensor]]] = {}
        #: Per unit: the score of held-out samples of the last finished task (``normalize`` only).
        self.ceilings: Dict[int, float] = {}
        self.snapshot: Optional[nn.Module] = None
        self.compute_shares: Optional[List[float]] = None
        self.history: List[dict] = []
        self.decision_seconds: List[float] = []
        self.tasks_done = 0
        # within a task (not checkpointed: checkpoints are taken between tasks)
        self._iteration = 0
        self._probe: Optional[Tensor] = None
        self._reference: Optional[List[Tensor]] = None  # per unit: centred Gram matrix at the last check
        self._grad_sums: Dict[int, List[Tensor]] = {}

    @property
    def deciding(self) -> bool:
        """True when the plugin decides (no fixed ``schedule``)."""
        return not self.schedule

    @property
    def may_freeze(self) -> bool:
        """True in the tasks where the rule may freeze units (from task ``first_task`` on)."""
        return self.tasks_done >= self.first_task - 1

    # ----------------------------------------------------------------- data
    def _samples(self, strategy, experience, *, held_out: bool = False) -> Optional[Tensor]:
        """``n_samples`` images of ``experience`` (normalised); ``held_out``: the next ``n_samples``
        of the same draw, disjoint from the first (``None`` when the task has no more)."""
        dataset = experience.dataset.eval()
        gen = torch.Generator().manual_seed(self.seed + experience.current_experience)
        start = self.n_samples if held_out else 0
        idx = torch.randperm(len(dataset), generator=gen)[start: start + self.n_samples].tolist()
        if not idx:
            return None
        # a private generator: iterating a DataLoader would otherwise draw from the global RNG
        loader = DataLoader(Subset(dataset, idx), batch_size=len(idx), shuffle=False, generator=gen)
        x = next(iter(loader))[0].to(strategy.device)
        return strategy.augmentation.normalize(x) if isinstance(strategy, SelfSupervisedState) else x

    @torch.no_grad()
    def _unit_outputs(self, backbone: FreezableBackbone, x: Tensor) -> List[Tensor]:
        was_training = backbone.training
        backbone.eval()
        outs = backbone.forward_units(x)
        backbone.train(was_training)
        return outs

    def _group(self, backbone: FreezableBackbone, block_values: List[float]) -> List[float]:
        """Values at the plugin's granularity (a stage takes its weakest block's value)."""
        if self.granularity == "block":
            return block_values
        out, start = [], 0
        for end in backbone.unit_boundaries(granularity="stage"):
            out.append(min(block_values[start:end]))
            start = end
        return out

    @staticmethod
    def _convs(unit: nn.Module) -> List[nn.Conv2d]:
        return [m for m in unit.modules() if isinstance(m, nn.Conv2d)]

    def _measure_compute_shares(self, strategy, backbone: FreezableBackbone) -> None:
        """Each unit's share of the forward compute, measured once on one image of the current task."""
        if self.compute_shares is None:
            self.compute_shares = unit_compute_shares(backbone, self._samples(strategy, strategy.experience)[:1])

    def _open_units(self, backbone: FreezableBackbone) -> List[int]:
        """Units that may still be frozen: past the frozen prefix and within the compute cap."""
        shares = self.compute_shares or [0.0] * len(backbone.units)
        out, total = [], 0.0
        for i, share in enumerate(shares):
            total += share
            if total > self.max_frozen_share + 1e-9:
                break
            if i >= backbone.num_frozen_units:
                out.append(i)
        return out

    # ------------------------------------------------------------ callbacks
    def before_training_exp(self, strategy, **kwargs):
        if (self.deciding and self.measure == "cka" and self.decide_every == 0 and self.may_freeze
                and 0 < strategy.train_epochs <= self.warmup_epochs):
            warnings.warn(f"CorrelationFreezePlugin(measure='cka', warmup_epochs={self.warmup_epochs}) decides after "
                          f"the warm-up epochs, but tasks train for {strategy.train_epochs}: nothing will be frozen",
                          RuntimeWarning)
        backbone = find_freezable_backbone(strategy.model)
        # keep earlier decisions applied (Avalanche's make_optimizer runs before this hook)
        self._apply(strategy, backbone, backbone.num_frozen_units)
        self._iteration = 0
        self.decision_seconds.append(0.0)
        if not self.deciding:
            self._follow_schedule(strategy, backbone)
            return
        start = time.perf_counter()
        self._measure_compute_shares(strategy, backbone)
        if self.may_freeze and self.decide_every == 0 and (self.measure == "subspace" or self.warmup_epochs == 0):
            self._decide(strategy, backbone)
        elif self.may_freeze and self.decide_every > 0:
            self.start_window(backbone, self._samples(strategy, strategy.experience))
        self.decision_seconds[-1] += time.perf_counter() - start

    def before_training_epoch(self, strategy, **kwargs):
        if self.deciding and self.measure == "cka" and self.decide_every == 0 and self.may_freeze \
                and self.warmup_epochs > 0 and strategy.clock.train_exp_epochs == self.warmup_epochs:
            self._decide(strategy, find_freezable_backbone(strategy.model))

    def after_backward(self, strategy, **kwargs):
        if self.deciding and self.measure == "gradient" and self.may_freeze and self.decide_every > 0:
            start = time.perf_counter()
            self.accumulate_gradients(find_freezable_backbone(strategy.model))
            self.decision_seconds[-1] += time.perf_counter() - start

    @torch.no_grad()
    def accumulate_gradients(self, backbone: FreezableBackbone) -> None:
        """``gradient`` measure: add the current weight gradients of every open unit's convs to the
        sums the next decision scores (called after each backward pass). An iteration whose gradients are
        not finite (a float16 step the gradient scaler skips) adds nothing."""
        per_unit = {i: [c.weight.grad for c in self._convs(backbone.units[i])] for i in self._open_units(backbone)}
        per_unit = {i: grads for i, grads in per_unit.items() if all(g is not None for g in grads)}
        if per_unit and not bool(torch.isfinite(torch.stack([g.sum() for grads in per_unit.values()
                                                             for g in grads])).all()):
            return
        for i, grads in per_unit.items():
            sums = self._grad_sums.get(i)
            if sums is None:
                self._grad_sums[i] = [g.detach().clone() for g in grads]
            else:
                for acc, g in zip(sums, grads):
                    acc.add_(g)

    def after_training_iteration(self, strategy, **kwargs):
        self._iteration += 1
        backbone = find_freezable_backbone(strategy.model)
        if not self.deciding:
            self._follow_schedule(strategy, backbone)
        elif (self.may_freeze and self.decide_every > 0 and self._iteration % self.decide_every == 0
              and self._open_units(backbone)):  # nothing left to decide once the prefix reaches the cap
            start = time.perf_counter()
            self._decide(strategy, backbone)
            self.decision_seconds[-1] += time.perf_counter() - start

    def after_training_exp(self, strategy, **kwargs):
        start = time.perf_counter()
        backbone = find_freezable_backbone(strategy.model)
        self.tasks_done += 1
        self._probe, self._reference, self._grad_sums = None, None, {}
        if self.deciding and self.measure == "subspace":
            outs = self._unit_outputs(backbone, self._samples(strategy, strategy.experience))
            for i, out in enumerate(outs):
                self.bases.setdefault(i, SubspaceBasis(energy=self.energy)).update(self._matrix(out))
            held_out = self._samples(strategy, strategy.experience, held_out=True) if self.normalize else None
            if held_out is not None:
                self.ceilings = dict(enumerate(self.raw_scores(backbone, held_out)))
        elif self.deciding and self.measure == "gradient":
            self.add_task_bases(backbone, self._samples(strategy, strategy.experience))
        elif self.deciding:
            self.snapshot = copy.deepcopy(backbone).eval()
        self.decision_seconds[-1] += time.perf_counter() - start
        publish = strategy.evaluator.publish_metric_value
        exp = strategy.experience.current_experience
        publish(MetricValue(self, f"Freeze_DecisionTime/Exp{exp:03d}", self.decision_seconds[-1],
                            strategy.clock.train_iterations))

    # ------------------------------------------------------------- measures
    def _matrix(self, features: Tensor) -> Tensor:
        return representation_matrix(features, self.representation, center=self.center)

    @torch.no_grad()
    def add_task_bases(self, backbone: FreezableBackbone, x: Tensor, *, chunk: int = 64) -> None:
        """``gradient`` measure: one input-patch basis per conv of every open unit for the task just finished; bases of
        units that can no longer be frozen (frozen or past the cap) are dropped."""
        open_units = self._open_units(backbone)
        self.patch_bases = {i: b for i, b in self.patch_bases.items() if i in open_units}
        convs = {c: (i, j) for i in open_units for j, c in enumerate(self._convs(backbone.units[i]))}
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
            per_conv = self.patch_bases.setdefault(i, [[] for _ in self._convs(backbone.units[i])])
            per_conv[j].append(energy_basis(grams[conv], self.energy).cpu())

    def gradient_scores(self, backbone: FreezableBackbone) -> List[float]:
        """Per block-level unit: the weakest conv's ``max over old tasks of ||G U U^T|| / ||G||`` for
        the gradients summed since the last check (1.0 for frozen units, 0.0 without gradients)."""
        scores = []
        for i in range(len(backbone.units)):
            if i < backbone.num_frozen_units:
                scores.append(1.0)
                continue
            sums, bases = self._grad_sums.get(i), self.patch_bases.get(i)
            if sums is None or not bases:
                scores.append(0.0)
                continue
            scores.append(min(max((gradient_projection_ratio(u.to(g.device), g) for u in per_task), default=0.0)
                              for g, per_task in zip(sums, bases)))
        return scores

    def raw_scores(self, backbone: FreezableBackbone, x: Tensor) -> List[float]:
        """Per block-level unit: the subspace ratio of the outputs on ``x`` against the old-task basis."""
        outs = self._unit_outputs(backbone, x)
        return [self.bases[i].ratio(self._matrix(o)) if i in self.bases else 0.0 for i, o in enumerate(outs)]

    def normalized_scores(self, backbone: FreezableBackbone, x: Tensor, noise: Tensor) -> List[float]:
        """Per unit: ``(s - floor) / (ceiling - floor)`` clipped to ``[0, 1]``, with ``s`` the raw score
        of ``x``, ``floor`` that of the ``noise`` images and ``ceiling`` that of held-out samples of
        the last finished task (1 where none were left)."""
        raw, floors = self.raw_scores(backbone, x), self.raw_scores(backbone, noise)
        return [min(1.0, max(0.0, (s - f) / max(self.ceilings.get(i, 1.0) - f, 1e-6)))
                for i, (s, f) in enumerate(zip(raw, floors))]

    def _noise_like(self, strategy, x: Tensor) -> Tensor:
        """Uniform-noise images of ``x``'s shape, normalised as the data are."""
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.tasks_done)
        noise = torch.rand(x.shape, generator=gen).to(x.device)
        return strategy.augmentation.normalize(noise) if isinstance(strategy, SelfSupervisedState) else noise

    def _scores(self, strategy, backbone: FreezableBackbone) -> List[float]:
        if self.measure == "gradient":
            return self.gradient_scores(backbone)
        x = self._probe if self._probe is not None else self._samples(strategy, strategy.experience)
        if self.measure == "subspace":
            if self.normalize:
                return self.normalized_scores(backbone, x, self._noise_like(strategy, x))
            return self.raw_scores(backbone, x)
        outs = self._unit_outputs(backbone, x)
        assert self.snapshot is not None
        old = self._unit_outputs(self.snapshot, x)
        return [linear_cka(a.flatten(1), b.flatten(1)) for a, b in zip(old, outs)]

    def start_window(self, backbone: FreezableBackbone, probe: Tensor) -> None:
        """Begin checking a task: ``probe`` (fixed samples of it) and the units' outputs on them
        now are the stability gate's reference; the gradient sums restart from zero."""
        self._probe = probe
        self._reference = self._unit_grams(backbone, probe) if self.stability > 0 else None
        self._grad_sums = {}

    def _unit_grams(self, backbone: FreezableBackbone, x: Tensor) -> List[Tensor]:
        """Per unit, the centred ``n x n`` Gram matrix of its outputs on ``x`` (what the gate keeps:
        ``n^2`` numbers a unit instead of its activations)."""
        grams, was_training = [], backbone.training
        backbone.eval()
        with torch.no_grad():
            for unit in backbone.units:  # one unit's activations alive at a time
                x = unit(x)
                grams.append(centered_gram(x))
        backbone.train(was_training)
        return grams

    def stability_scores(self, backbone: FreezableBackbone) -> List[float]:
        """Per block-level unit: linear CKA between its outputs on the task's fixed samples at the
        gate's reference point and now (1.0 without a gate); with ``gate_reference="check"`` the
        reference then moves to now."""
        if self.stability == 0 or self._probe is None or self._reference is None:
            return [1.0] * len(backbone.units)
        now = self._unit_grams(backbone, self._probe)
        values = [cka_from_grams(a, b) for a, b in zip(self._reference, now)]
        if self.gate_reference == "check":
            self._reference = now
        return values

    # ------------------------------------------------------------- decision
    def _decide(self, strategy, backbone: FreezableBackbone) -> None:
        start = time.perf_counter()
        assert self.compute_shares is not None
        scores = self._group(backbone, self._scores(strategy, backbone))
        stable = self._group(backbone, self.stability_scores(backbone))
        self._grad_sums = {}
        names = backbone.unit_names(granularity=self.granularity)
        choice = choose_prefix(scores, stable, ends=backbone.unit_boundaries(granularity=self.granularity),
                               shares=self.compute_shares, frozen_blocks=backbone.num_frozen_units, tau=self.tau,
                               stability=self.stability, max_frozen_share=self.max_frozen_share)
        # progressive (never unfreezes); under torchrun every process applies process 0's decision
        n_blocks = broadcast_from_main(choice.blocks)
        self._apply(strategy, backbone, n_blocks)
        self._record(strategy, backbone, n_blocks, dict(zip(names, scores)), dict(zip(names, stable)),
                     time.perf_counter() - start, stopped_by=choice.stopped_by)

    def _follow_schedule(self, strategy, backbone: FreezableBackbone) -> None:
        exp = strategy.experience.current_experience
        due = [blocks for task, iteration, blocks in self.schedule if task == exp and iteration == self._iteration]
        if not due:
            return
        n_blocks = min(max(max(due), backbone.num_frozen_units), len(backbone.units))
        self._measure_compute_shares(strategy, backbone)
        self._apply(strategy, backbone, n_blocks)
        self._record(strategy, backbone, n_blocks, {}, {}, 0.0)

    def _record(self, strategy, backbone: FreezableBackbone, n_blocks: int, scores: Dict[str, float],
                stable: Dict[str, float], seconds: float, *, stopped_by: Optional[str] = None) -> None:
        assert self.compute_shares is not None
        share = sum(self.compute_shares[:n_blocks])
        names = backbone.unit_names(granularity=self.granularity)
        ends = backbone.unit_boundaries(granularity=self.granularity)
        record = {
            "experience": strategy.experience.current_experience,
            "iteration": self._iteration,
            "scores": scores,
            "stability": stable,
            "frozen_units": [n for n, e in zip(names, ends) if e <= n_blocks],
            "frozen_blocks": n_blocks,
            "frozen_share": share,
            "stopped_by": stopped_by,
            "seconds": seconds,
        }
        self.history.append(record)
        x = strategy.clock.train_iterations
        exp = record["experience"]
        publish = strategy.evaluator.publish_metric_value
        for name, s in scores.items():
            publish(MetricValue(self, f"Freeze_Score/{name}/Exp{exp:03d}", s, x))
        if self.stability > 0:
            for name, s in stable.items():
                publish(MetricValue(self, f"Freeze_Stability/{name}/Exp{exp:03d}", s, x))
        publish(MetricValue(self, f"Freeze_Blocks/Exp{exp:03d}", n_blocks, x))
        publish(MetricValue(self, f"Freeze_ComputeShare/Exp{exp:03d}", share, x))

    def _apply(self, strategy, backbone: FreezableBackbone, n_blocks: int) -> None:
        apply_frozen_prefix(backbone, n_blocks, strategy.optimizer)

    def memory_bytes(self) -> Dict[str, int]:
        """Bytes the plugin holds, by part: ``bases`` (subspace and input-patch bases, kept across
        tasks and checkpointed), ``snapshot`` (``cka``'s copy of the backbone), ``gate`` (the stability
        reference, one ``n x n`` Gram matrix a unit, within a task) and ``gradient_sums`` (within a task)."""
        size = lambda tensors: sum(t.numel() * t.element_size() for t in tensors)  # noqa: E731
        return {
            "bases": size([b.basis for b in self.bases.values() if b.basis is not None])
            + size([u for convs in self.patch_bases.values() for per_task in convs for u in per_task]),
            "snapshot": size(self.snapshot.state_dict().values()) if self.snapshot is not None else 0,
            "gate": size(self._reference or []),
            "gradient_sums": size([g for sums in self._grad_sums.values() for g in sums]),
        }

    # ---------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "bases": {i: b.state_dict() for i, b in self.bases.items()},
            "patch_bases": {i: [list(per_task) for per_task in convs] for i, convs in self.patch_bases.items()},
            "snapshot": None if self.snapshot is None else self.snapshot.state_dict(),
            "compute_shares": self.compute_shares,
            "history": self.history,
            "decision_seconds": list(self.decision_seconds),
            "tasks_done": self.tasks_done,
            "frozen_blocks": self.history[-1]["frozen_blocks"] if self.history else 0,
            "ceilings": dict(self.ceilings),
        }

    def load_state_dict(self, state: dict, *, device: Union[str, torch.device, None] = None,
                        backbone: Optional[nn.Module] = None) -> None:
        """Restore the bases, snapshot and history, and re-freeze the saved prefix of ``backbone``
        (its parameters leave autograd and its BatchNorm layers stay in eval mode)."""
        self.bases = {}
        for i, b in state["bases"].items():
            basis = SubspaceBasis(energy=self.energy)
            basis.load_state_dict(b)
            self.bases[int(i)] = basis
        self.patch_bases = {int(i): [list(per_task) for per_task in convs]
                            for i, convs in state.get("patch_bases", {}).items()}
        if (state["snapshot"] is not None or state["frozen_blocks"]) and backbone is None:
            raise ValueError("restoring the freezing plugin needs the backbone (backbone=...)")
        if state["snapshot"] is not None:
            self.snapshot = copy.deepcopy(find_freezable_backbone(backbone)).eval()
            self.snapshot.load_state_dict(state["snapshot"])
        self.compute_shares = state["compute_shares"]
        self.ceilings = {int(i): c for i, c in state.get("ceilings", {}).items()}
        self.history = list(state["history"])
        self.decision_seconds = list(state.get("decision_seconds", []))
        self.tasks_done = state["tasks_done"]
        if backbone is not None:
            find_freezable_backbone(backbone).set_frozen_prefix(state["frozen_blocks"])
