"""Progressive task-correlated layer freezing (Yang et al., arXiv 2303.07477).

From task ``first_task`` on (3 by default; 2 in the paper), the plugin scores each
freezable unit of the backbone by how correlated the new task is with the earlier ones
and freezes the longest prefix of units that
pass, capped at a share of the backbone's forward compute. The frozen prefix only
grows, unless ``shrink`` is on: then each task from ``first_task`` on starts by re-scoring the
frozen prefix on the new task and unfreezing it from its first unit below ``tau``
(:func:`~avalanche_freeze.freezing.decision.revise_prefix`). Two decision timings:

* ``decide_every = 0``: once, at the start of each task, before any update (the
  paper's reconstructed rule; measures ``subspace`` and ``cka``);
* ``decide_every = K`` (default): every ``K`` training iterations of each such task,
  so that a unit that settles mid-task is frozen then. Here a unit must
  also pass the **stability gate**: linear CKA between its outputs on fixed samples
  of the task at the start of the task (``gate_reference="task"``) or at the previous
  check (``"check"``) and now must reach ``stability`` (a unit whose features move is
  not frozen, however correlated the tasks are).

The measure (``freeze.measure``) is one object behind one small interface
(:class:`~avalanche_freeze.freezing.measure.CorrelationMeasure`), one module each:
:mod:`~avalanche_freeze.freezing.gradient` (default; after TRGP, the new task's gradients against
the old tasks' input-patch bases), :mod:`~avalanche_freeze.freezing.subspace` (outputs against a
merged old-task basis) and :mod:`~avalanche_freeze.freezing.cka`; the gate is
:mod:`~avalanche_freeze.freezing.gate` and the choice of prefix
:func:`~avalanche_freeze.freezing.decision.choose_prefix`. The plugin holds them and calls them
from Avalanche's callbacks.

A ``schedule`` replaces the decision by a fixed list of ``(task, iteration, blocks)``
freezes: the fixed-schedule controls of ``experiments/bench_freeze.py``.

Freezing a unit means: ``requires_grad=False`` for its parameters, its
parameters removed from the optimizer (with their momentum state), its
BatchNorm layers kept in eval mode across ``model.train()`` calls, and its
forward run under ``torch.no_grad()`` (no activations saved for backward).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Type, Union

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ..backbones import FreezableBackbone, find_freezable_backbone, unit_compute_shares
from ..distributed import broadcast_from_main
from ..protocols import SelfSupervisedState
from ..validation import build_section
from .cka import LinearCKA
from .config import FreezeConfig
from .decision import choose_prefix, revise_prefix
from .gate import StabilityGate
from .gradient import GradientProjection
from .measure import CorrelationMeasure, TaskImages
from .prefix import apply_frozen_prefix
from .subspace import SubspaceProjection

__all__ = ["MEASURE_CLASSES", "CorrelationFreezePlugin", "FreezingRecord"]

#: The measures by ``freeze.measure`` name.
MEASURE_CLASSES: Dict[str, Type[CorrelationMeasure]] = {
    m.name: m for m in (GradientProjection, SubspaceProjection, LinearCKA)}


@dataclass(frozen=True)
class FreezingRecord:
    """What the freezing plugin has decided, as a run records it after each task
    (:meth:`CorrelationFreezePlugin.record`).

    Attributes:
        decisions: every decision so far, oldest first (``results.json``'s ``freeze_history``; the
            keys are those of :attr:`CorrelationFreezePlugin.history`).
        task_seconds: wall time of the plugin's own work in the last task trained (``None`` before
            the first task).
    """

    decisions: List[dict]
    task_seconds: Optional[float]


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
            ``scores`` (what ``tau`` applied to) and ``stability`` (unit -> value; empty for a schedule); with
            ``score="calibrated"`` also ``score_raw``, ``score_chance`` and ``score_ceiling`` (block-level
            unit -> value), ``frozen_units``
            (names), ``frozen_blocks`` (block-level count), ``frozen_share``, ``stopped_by`` (what ended
            the prefix: ``tau``, ``gate``, ``both``, ``cap`` or ``end``, see
            :func:`~avalanche_freeze.freezing.decision.choose_prefix`; ``None`` for a schedule), ``seconds`` (its cost),
            ``revision`` (True for ``shrink``'s task-start re-scoring of the frozen prefix, which has no
            stability values).
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
        self.config: FreezeConfig = build_section(FreezeConfig, config, options, owner=type(self).__name__)
        self.seed = seed
        #: The correlation measure (``freeze.measure``; :mod:`~avalanche_freeze.freezing.measure`).
        self.measure: CorrelationMeasure = MEASURE_CLASSES[self.config.measure](self.config)
        #: The stability gate (``freeze.stability``, ``freeze.gate_reference``).
        self.gate = StabilityGate(threshold=self.config.stability, reference=self.config.gate_reference)
        self.compute_shares: Optional[List[float]] = None
        self.history: List[dict] = []
        self.decision_seconds: List[float] = []
        self.tasks_done = 0
        # within a task (not checkpointed: checkpoints are taken between tasks)
        self._iteration = 0
        self._probe: Optional[Tensor] = None

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

    def _noise_like(self, strategy, x: Tensor) -> Tensor:
        """Uniform-noise images of ``x``'s shape, normalised as the data are."""
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.tasks_done)
        noise = torch.rand(x.shape, generator=gen).to(x.device)
        return strategy.augmentation.normalize(noise) if isinstance(strategy, SelfSupervisedState) else noise

    def task_images(self, strategy, experience=None) -> TaskImages:
        """The images of ``experience`` (default: the strategy's current one) the measure reads: the
        check window's fixed images when a window is open, else a fresh draw of the task's fixed
        images; its held-out images; noise normalised as the data are."""
        experience = experience if experience is not None else strategy.experience
        return TaskImages(
            samples=lambda: self._probe if self._probe is not None else self._samples(strategy, experience),
            held_out=lambda: self._samples(strategy, experience, held_out=True),
            noise_like=lambda x: self._noise_like(strategy, x))

    def _group(self, backbone: FreezableBackbone, block_values: List[float]) -> List[float]:
        """Values at the plugin's granularity (a stage takes its weakest block's value)."""
        if self.config.granularity == "block":
            return block_values
        out, start = [], 0
        for end in backbone.unit_boundaries(granularity="stage"):
            out.append(min(block_values[start:end]))
            start = end
        return out

    def _measure_compute_shares(self, strategy, backbone: FreezableBackbone) -> None:
        """Each unit's share of the forward compute, measured once on one image of the current task."""
        if self.compute_shares is None:
            self.compute_shares = unit_compute_shares(backbone, self._samples(strategy, strategy.experience)[:1])

    def open_units(self, backbone: FreezableBackbone) -> List[int]:
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

    @property
    def _decides_once_after_warmup(self) -> bool:
        return self.deciding and self.config.decide_every == 0 and self.measure.scores_after_warmup

    # ------------------------------------------------------------ callbacks
    def before_training_exp(self, strategy, **kwargs):
        if self._decides_once_after_warmup and self.may_freeze and 0 < strategy.train_epochs <= self.config.warmup_epochs:
            warnings.warn(f"CorrelationFreezePlugin(measure={self.config.measure!r}, warmup_epochs="
                          f"{self.config.warmup_epochs}) decides after the warm-up epochs, but tasks train for "
                          f"{strategy.train_epochs}: nothing will be frozen", RuntimeWarning)
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
        if self.may_freeze and self.config.shrinks and backbone.num_frozen_units:
            self._revise(strategy, backbone)
        if self.may_freeze and self.config.decide_every == 0 and (not self.measure.scores_after_warmup
                                                                   or self.config.warmup_epochs == 0):
            self._decide(strategy, backbone)
        elif self.may_freeze and self.config.decide_every > 0:
            self.start_window(backbone, self._samples(strategy, strategy.experience))
        self.decision_seconds[-1] += time.perf_counter() - start

    def before_training_epoch(self, strategy, **kwargs):
        if self._decides_once_after_warmup and self.may_freeze and self.config.warmup_epochs > 0 \
                and strategy.clock.train_exp_epochs == self.config.warmup_epochs:
            self._decide(strategy, find_freezable_backbone(strategy.model))

    def after_backward(self, strategy, **kwargs):
        if self.deciding and self.measure.reads_gradients and self.may_freeze and self.config.decide_every > 0:
            start = time.perf_counter()
            backbone = find_freezable_backbone(strategy.model)
            self.measure.observe_backward(backbone, open_units=self.open_units(backbone))
            self.decision_seconds[-1] += time.perf_counter() - start

    def after_training_iteration(self, strategy, **kwargs):
        self._iteration += 1
        backbone = find_freezable_backbone(strategy.model)
        if not self.deciding:
            self._follow_schedule(strategy, backbone)
        elif (self.may_freeze and self.config.decide_every > 0 and self._iteration % self.config.decide_every == 0
              and self.open_units(backbone)):  # nothing left to decide once the prefix reaches the cap
            start = time.perf_counter()
            self._decide(strategy, backbone)
            self.decision_seconds[-1] += time.perf_counter() - start

    def after_training_exp(self, strategy, **kwargs):
        start = time.perf_counter()
        backbone = find_freezable_backbone(strategy.model)
        self.tasks_done += 1
        self._probe = None
        self.gate.reset()
        self.measure.restart_window()
        if self.deciding:
            self.measure.learn_task(backbone, self.task_images(strategy), open_units=self.open_units(backbone))
        self.decision_seconds[-1] += time.perf_counter() - start
        publish = strategy.evaluator.publish_metric_value
        exp = strategy.experience.current_experience
        publish(MetricValue(self, f"Freeze_DecisionTime/Exp{exp:03d}", self.decision_seconds[-1],
                            strategy.clock.train_iterations))

    def start_window(self, backbone: FreezableBackbone, probe: Tensor) -> None:
        """Begin checking a task: ``probe`` (fixed images of it) is what the measure scores and, with
        the units' outputs on it now, the stability gate's reference; what the measure gathered
        restarts from nothing."""
        self._probe = probe
        self.gate.start(backbone, probe)
        self.measure.restart_window()

    # ------------------------------------------------------------- decision
    def _decide(self, strategy, backbone: FreezableBackbone) -> None:
        start = time.perf_counter()
        assert self.compute_shares is not None
        scores = self._group(backbone, self.measure.scores(backbone, self.task_images(strategy)))
        blocks = backbone.unit_names(granularity="block")
        parts = {key: dict(zip(blocks, values)) for key, values in self.measure.details().items()}
        stable = self._group(backbone, self.gate.values(backbone))
        self.measure.restart_window()
        names = backbone.unit_names(granularity=self.config.granularity)
        choice = choose_prefix(scores, stable, ends=backbone.unit_boundaries(granularity=self.config.granularity),
                               shares=self.compute_shares, frozen_blocks=backbone.num_frozen_units, tau=self.config.tau,
                               stability=self.config.stability, max_frozen_share=self.config.max_frozen_share)
        # grows only (a prefix shrinks in _revise alone); under torchrun every process applies process 0's decision
        n_blocks = broadcast_from_main(choice.blocks)
        self._apply(strategy, backbone, n_blocks)
        self._record(strategy, backbone, n_blocks, dict(zip(names, scores)), dict(zip(names, stable)),
                     time.perf_counter() - start, stopped_by=choice.stopped_by, parts=parts)

    def _revise(self, strategy, backbone: FreezableBackbone) -> None:
        """``shrink``: re-score the frozen prefix on the new task's images (before any update) and
        unfreeze it from its first unit below ``tau``."""
        start = time.perf_counter()
        scores = self._group(backbone, self.measure.scores(backbone, self.task_images(strategy)))
        blocks = backbone.unit_names(granularity="block")
        parts = {key: dict(zip(blocks, values)) for key, values in self.measure.details().items()}
        names = backbone.unit_names(granularity=self.config.granularity)
        choice = revise_prefix(scores, ends=backbone.unit_boundaries(granularity=self.config.granularity),
                               frozen_blocks=backbone.num_frozen_units, tau=self.config.tau)
        n_blocks = broadcast_from_main(choice.blocks)
        self._apply(strategy, backbone, n_blocks)
        self._record(strategy, backbone, n_blocks, dict(zip(names, scores)), {}, time.perf_counter() - start,
                     stopped_by=choice.stopped_by, parts=parts, revision=True)

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
                stable: Dict[str, float], seconds: float, *, stopped_by: Optional[str] = None,
                parts: Optional[Dict[str, Dict[str, float]]] = None, revision: bool = False) -> None:
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
        if revision:
            record["revision"] = True
        for key, values in (parts or {}).items():  # calibrated scores: their raw ratio, chance level, ceiling
            record[f"score_{key}"] = values
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

    @property
    def frozen_blocks(self) -> int:
        """Block-level length of the prefix the plugin has frozen (0 before its first decision)."""
        return self.history[-1]["frozen_blocks"] if self.history else 0

    def record(self) -> FreezingRecord:
        """What the plugin has decided so far (the run layer reads this, never the plugin's internals)."""
        return FreezingRecord(decisions=list(self.history),
                              task_seconds=self.decision_seconds[-1] if self.decision_seconds else None)

    def memory_bytes(self) -> Dict[str, int]:
        """Bytes the plugin holds, by part: ``bases`` (the measure's old-task bases, kept across tasks and
        checkpointed), ``snapshot`` (``cka``'s copy of the backbone), ``gate`` (the stability
        reference, one ``n x n`` Gram matrix a unit, within a task) and ``gradient_sums`` (within a task)."""
        return {"bases": 0, "snapshot": 0, "gradient_sums": 0, **self.measure.memory_bytes(),
                "gate": self.gate.memory_bytes()}

    # ---------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        # every measure's keys are present (empty when another measure ran), so the checkpoint's
        # layout does not depend on the measure
        return {
            "bases": {}, "patch_bases": {}, "patch_chances": {}, "patch_ceilings": {}, "snapshot": None,
            "ceilings": {}, "chances": {},
            **self.measure.state_dict(),
            "compute_shares": self.compute_shares,
            "history": self.history,
            "decision_seconds": list(self.decision_seconds),
            "tasks_done": self.tasks_done,
            "frozen_blocks": self.frozen_blocks,
        }

    def load_state_dict(self, state: dict, *, device: Union[str, torch.device, None] = None,
                        backbone: Optional[nn.Module] = None) -> None:
        """Restore the measure's bases or snapshot and the history, and re-freeze the saved prefix of
        ``backbone`` (its parameters leave autograd and its BatchNorm layers stay in eval mode)."""
        if (state.get("snapshot") is not None or state["frozen_blocks"]) and backbone is None:
            raise ValueError("restoring the freezing plugin needs the backbone (backbone=...)")
        self.measure.load_state_dict(state, backbone=backbone)
        self.compute_shares = state["compute_shares"]
        self.history = list(state["history"])
        self.decision_seconds = list(state.get("decision_seconds", []))
        self.tasks_done = state["tasks_done"]
        if backbone is not None:
            find_freezable_backbone(backbone).set_frozen_prefix(state["frozen_blocks"])
