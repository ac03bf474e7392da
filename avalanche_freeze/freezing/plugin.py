"""Progressive task-correlated layer freezing (Yang et al., arXiv 2303.07477).

From task ``first_task`` on (3 by default; 2 in the paper), the plugin scores each
freezable unit of the backbone by how correlated the new task is with the earlier ones (see
:mod:`avalanche_freeze.freezing.correlation`) and freezes the longest prefix of units that
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
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ..backbones import FreezableBackbone, find_freezable_backbone, unit_compute_shares
from ..distributed import broadcast_from_main
from ..protocols import SelfSupervisedState
from ..validation import build_section
from .config import FreezeConfig
from .correlation import (SubspaceBasis, centered_gram, cka_from_grams, conv_input_patches, energy_basis,
                          gradient_projection_ratio, linear_cka, representation_matrix)
from .decision import choose_prefix
from .prefix import apply_frozen_prefix

__all__ = ["CorrelationFreezePlugin", "FreezingRecord"]


@dataclass(frozen=True)
class FreezingRecord:
    """What the freezing plugin has decided, as a run records it after each task
    (:meth:`CorrelationFreezePlugin.record`).

    Attributes:
        decisions: every decision so far, oldest first (``results.json``'s ``freeze_history``; the
            keys are those of :attr:`CorrelationFreezePlugin.history`).
        task_seconds: wall time of the plugin's own work in the last task trained (``None`` before
            the first task).
        frozen_blocks: block-level length of the frozen prefix now.
    """

    decisions: List[dict]
    task_seconds: Optional[float]
    frozen_blocks: int


class CorrelationFreezePlugin(SupervisedPlugin, supports_distributed=True):
    """Freeze the task-correlated, settled prefix of a :class:`~avalanche_freeze.backbones.FreezableBackbone`.

    Works with :class:`~avalanche_freeze.SelfSupervisedStrategy` (with or without LUMP) and
    with Avalanche's supervised strategies whose model contains the backbone.

    Args:
        config: the options (:class:`~avalanche_freeze.freezing.config.FreezeConfig`; its defaults when
            omitted); or give them as keywords (``tau=0.9``), one or the other.
        seed: seed of the sample selection.

    Attributes:
        config: the options.
        history: one dict per decision: ``experience``, ``iteration`` (within the task),
            ``scores`` and ``stability`` (unit -> value; empty for a schedule), ``frozen_units``
            (names), ``frozen_blocks`` (block-level count), ``frozen_share``, ``stopped_by`` (what ended
            the prefix: ``tau``, ``gate``, ``both``, ``cap`` or ``end``, see
            :func:`~avalanche_freeze.freezing.decision.choose_prefix`; ``None`` for a schedule), ``seconds`` (its cost).
        decision_seconds: per task, the wall time spent in the plugin's own work (bases,
            gradient sums, scores, gates), included in the task's training time.

    Example:
        >>> from avalanche_freeze.plugins import CorrelationFreezePlugin
        >>> plugin = CorrelationFreezePlugin(tau=0.5, stability=0.99, decide_every=20)
        >>> control = CorrelationFreezePlugin(schedule=[[1, 0, 3]])   # stem + layer1 from task 2 on
    """

    def __init__(self, config: Optional[FreezeConfig] = None, *, seed: int = 0, **options: Any) -> None:
        super().__init__()
        if options.get("schedule") is not None:  # integral values of any type (YAML, numpy) as ints
            options["schedule"] = [[int(v) if not isinstance(v, bool) else v for v in e] for e in options["schedule"]]
        elif "schedule" in options:
            options["schedule"] = []
        #: The plugin's options (:class:`~avalanche_freeze.freezing.config.FreezeConfig`).
        self.config: FreezeConfig = build_section(FreezeConfig, config, options, owner=type(self).__name__)
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
        return not self.config.schedule

    @property
    def may_freeze(self) -> bool:
        """True in the tasks where the rule may freeze units (from task ``first_task`` on)."""
        return self.tasks_done >= self.config.first_task - 1

    # ----------------------------------------------------------------- data
    def _samples(self, strategy, experience, *, held_out: bool = False) -> Optional[Tensor]:
        """``n_samples`` images of ``experience`` (normalised); ``held_out``: the next ``n_samples``
        of the same draw, disjoint from the first (``None`` when the task has no more)."""
        dataset = experience.dataset.eval()
        gen = torch.Generator().manual_seed(self.seed + experience.current_experience)
        start = self.config.n_samples if held_out else 0
        idx = torch.randperm(len(dataset), generator=gen)[start: start + self.config.n_samples].tolist()
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
        if self.config.granularity == "block":
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
            if total > self.config.max_frozen_share + 1e-9:
                break
            if i >= backbone.num_frozen_units:
                out.append(i)
        return out

    # ------------------------------------------------------------ callbacks
    def before_training_exp(self, strategy, **kwargs):
        if (self.deciding and self.config.measure == "cka" and self.config.decide_every == 0 and self.may_freeze
                and 0 < strategy.train_epochs <= self.config.warmup_epochs):
            warnings.warn(f"CorrelationFreezePlugin(measure='cka', warmup_epochs={self.config.warmup_epochs}) decides after "
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
        if self.may_freeze and self.config.decide_every == 0 and (self.config.measure == "subspace" or self.config.warmup_epochs == 0):
            self._decide(strategy, backbone)
        elif self.may_freeze and self.config.decide_every > 0:
            self.start_window(backbone, self._samples(strategy, strategy.experience))
        self.decision_seconds[-1] += time.perf_counter() - start

    def before_training_epoch(self, strategy, **kwargs):
        if self.deciding and self.config.measure == "cka" and self.config.decide_every == 0 and self.may_freeze \
                and self.config.warmup_epochs > 0 and strategy.clock.train_exp_epochs == self.config.warmup_epochs:
            self._decide(strategy, find_freezable_backbone(strategy.model))

    def after_backward(self, strategy, **kwargs):
        if self.deciding and self.config.measure == "gradient" and self.may_freeze and self.config.decide_every > 0:
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
        elif (self.may_freeze and self.config.decide_every > 0 and self._iteration % self.config.decide_every == 0
              and self._open_units(backbone)):  # nothing left to decide once the prefix reaches the cap
            start = time.perf_counter()
            self._decide(strategy, backbone)
            self.decision_seconds[-1] += time.perf_counter() - start

    def after_training_exp(self, strategy, **kwargs):
        start = time.perf_counter()
        backbone = find_freezable_backbone(strategy.model)
        self.tasks_done += 1
        self._probe, self._reference, self._grad_sums = None, None, {}
        if self.deciding and self.config.measure == "subspace":
            outs = self._unit_outputs(backbone, self._samples(strategy, strategy.experience))
            for i, out in enumerate(outs):
                self.bases.setdefault(i, SubspaceBasis(energy=self.config.energy)).update(self._matrix(out))
            held_out = self._samples(strategy, strategy.experience, held_out=True) if self.config.normalize else None
            if held_out is not None:
                self.ceilings = dict(enumerate(self.raw_scores(backbone, held_out)))
        elif self.deciding and self.config.measure == "gradient":
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
        return representation_matrix(features, self.config.representation, center=self.config.center)

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
            per_conv[j].append(energy_basis(grams[conv], self.config.energy).cpu())

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
        if self.config.measure == "gradient":
            return self.gradient_scores(backbone)
        x = self._probe if self._probe is not None else self._samples(strategy, strategy.experience)
        if self.config.measure == "subspace":
            if self.config.normalize:
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
        self._reference = self._unit_grams(backbone, probe) if self.config.stability > 0 else None
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
        if self.config.stability == 0 or self._probe is None or self._reference is None:
            return [1.0] * len(backbone.units)
        now = self._unit_grams(backbone, self._probe)
        values = [cka_from_grams(a, b) for a, b in zip(self._reference, now)]
        if self.config.gate_reference == "check":
            self._reference = now
        return values

    # ------------------------------------------------------------- decision
    def _decide(self, strategy, backbone: FreezableBackbone) -> None:
        start = time.perf_counter()
        assert self.compute_shares is not None
        scores = self._group(backbone, self._scores(strategy, backbone))
        stable = self._group(backbone, self.stability_scores(backbone))
        self._grad_sums = {}
        names = backbone.unit_names(granularity=self.config.granularity)
        choice = choose_prefix(scores, stable, ends=backbone.unit_boundaries(granularity=self.config.granularity),
                               shares=self.compute_shares, frozen_blocks=backbone.num_frozen_units, tau=self.config.tau,
                               stability=self.config.stability, max_frozen_share=self.config.max_frozen_share)
        # progressive (never unfreezes); under torchrun every process applies process 0's decision
        n_blocks = broadcast_from_main(choice.blocks)
        self._apply(strategy, backbone, n_blocks)
        self._record(strategy, backbone, n_blocks, dict(zip(names, scores)), dict(zip(names, stable)),
                     time.perf_counter() - start, stopped_by=choice.stopped_by)

    def _follow_schedule(self, strategy, backbone: FreezableBackbone) -> None:
        exp = strategy.experience.current_experience
        due = [blocks for task, iteration, blocks in self.config.schedule if task == exp and iteration == self._iteration]
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
        names = backbone.unit_names(granularity=self.config.granularity)
        ends = backbone.unit_boundaries(granularity=self.config.granularity)
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
        if self.config.stability > 0:
            for name, s in stable.items():
                publish(MetricValue(self, f"Freeze_Stability/{name}/Exp{exp:03d}", s, x))
        publish(MetricValue(self, f"Freeze_Blocks/Exp{exp:03d}", n_blocks, x))
        publish(MetricValue(self, f"Freeze_ComputeShare/Exp{exp:03d}", share, x))

    def _apply(self, strategy, backbone: FreezableBackbone, n_blocks: int) -> None:
        apply_frozen_prefix(backbone, n_blocks, strategy.optimizer)

    def record(self) -> FreezingRecord:
        """What the plugin has decided so far (the run layer reads this, never the plugin's internals)."""
        return FreezingRecord(decisions=list(self.history),
                              task_seconds=self.decision_seconds[-1] if self.decision_seconds else None,
                              frozen_blocks=self.history[-1]["frozen_blocks"] if self.history else 0)

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
            basis = SubspaceBasis(energy=self.config.energy)
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
