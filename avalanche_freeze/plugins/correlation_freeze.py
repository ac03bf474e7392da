"""Progressive task-correlated layer freezing (Yang et al., arXiv 2303.07477).

At the start of every task after the first, the plugin scores each freezable
unit of the backbone by how correlated its features on the new task are with
the earlier tasks (see :mod:`avalanche_freeze.correlation`), and freezes the
longest prefix of units whose scores all reach ``tau``, capped at a share of
the backbone's forward compute. The frozen prefix only grows.

Freezing a unit means: ``requires_grad=False`` for its parameters, its
parameters removed from the optimizer (with their momentum state), its
BatchNorm layers kept in eval mode across ``model.train()`` calls, and its
forward run under ``torch.no_grad()`` (no activations saved for backward).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torch.utils.flop_counter import FlopCounterMode

from ..backbones import GRANULARITIES, FreezableBackbone, find_freezable_backbone
from ..correlation import REPRESENTATIONS, SubspaceBasis, linear_cka, representation_matrix
from ..protocols import SelfSupervisedState
from ..validation import check_choice, check_number

__all__ = ["CorrelationFreezePlugin", "FreezeConfig", "MEASURES", "apply_frozen_prefix", "remove_from_optimizer",
           "unit_compute_shares"]

MEASURES = ("subspace", "cka")


@dataclass
class FreezeConfig:
    """The ``freeze`` configuration section (defaults: METHOD.md section 3).

    Attributes:
        measure: ``subspace`` (default) or ``cka``.
        tau: score threshold a unit must reach to be frozen (0.9).
        max_frozen_share: cap on the frozen prefix's share of backbone forward compute (1.0 = no cap).
        granularity: ``block`` (stem + 8 blocks) or ``stage`` (4 stages).
        n_samples: samples of a task used to build bases and score units (256).
        energy: subspace energy threshold ``eps`` (0.97).
        representation: subspace only: ``flatten`` (each sample's output flattened,
            default) or ``channel`` (channel vectors at every position).
        center: subspace only: subtract the mean before building bases and scores (False).
        warmup_epochs: ``cka`` only: epochs trained on a new task before scoring (1).
        normalize: subspace only: score each unit relative to what its estimator can reach,
            ``(s - floor) / (ceiling - floor)`` clipped to ``[0, 1]``, with ``ceiling`` the score of
            held-out samples of the task just finished against the merged basis and ``floor``
            the score of uniform-noise images (False: the raw ratio, as before).
    """

    measure: str = "subspace"
    tau: float = 0.9
    max_frozen_share: float = 1.0
    granularity: str = "block"
    n_samples: int = 256
    energy: float = 0.97
    representation: str = "flatten"
    center: bool = False
    warmup_epochs: int = 1
    normalize: bool = False

    def __post_init__(self) -> None:
        check_choice("measure", self.measure, MEASURES)
        check_number("tau", self.tau, at_least=0, at_most=1)
        check_number("max_frozen_share", self.max_frozen_share, at_least=0, at_most=1)
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_number("n_samples", self.n_samples, at_least=2, integer=True)
        check_number("energy", self.energy, above=0, at_most=1)
        check_choice("representation", self.representation, REPRESENTATIONS)
        check_choice("center", self.center, (False, True))
        check_number("warmup_epochs", self.warmup_epochs, at_least=0, integer=True)
        check_choice("normalize", self.normalize, (False, True))


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


@torch.no_grad()
def unit_compute_shares(backbone: FreezableBackbone, example: Tensor) -> List[float]:
    """Share of the backbone's forward FLOPs spent in each block-level unit, measured
    with :class:`torch.utils.flop_counter.FlopCounterMode` on ``example`` (one batch)."""
    flops = []
    x = example
    was_training = backbone.training
    backbone.eval()
    for unit in backbone.units:
        with FlopCounterMode(display=False) as counter:
            x = unit(x)
        flops.append(counter.get_total_flops())
    backbone.train(was_training)
    total = sum(flops)
    return [f / total for f in flops] if total else [0.0] * len(flops)


class CorrelationFreezePlugin(SupervisedPlugin):
    """Freeze the task-correlated prefix of a :class:`~avalanche_freeze.backbones.FreezableBackbone`.

    Works with :class:`~avalanche_freeze.SelfSupervisedStrategy` (with or without LUMP) and
    with Avalanche's supervised strategies whose model contains the backbone.

    Args:
        measure, tau, max_frozen_share, granularity, n_samples, energy, representation,
            center, warmup_epochs, normalize: the options of :class:`FreezeConfig` (same defaults).
        seed: seed of the sample selection.

    Attributes:
        history: one dict per decision: ``experience``, ``scores`` (unit -> score),
            ``frozen_units`` (names), ``frozen_blocks`` (block-level count), ``frozen_share``.

    Example:
        >>> from avalanche_freeze.plugins import CorrelationFreezePlugin
        >>> plugin = CorrelationFreezePlugin(tau=0.9, granularity="stage")
    """

    def __init__(
        self,
        *,
        measure: str = FreezeConfig.measure,
        tau: float = FreezeConfig.tau,
        max_frozen_share: float = FreezeConfig.max_frozen_share,
        granularity: str = FreezeConfig.granularity,
        n_samples: int = FreezeConfig.n_samples,
        energy: float = FreezeConfig.energy,
        representation: str = FreezeConfig.representation,
        center: bool = FreezeConfig.center,
        warmup_epochs: int = FreezeConfig.warmup_epochs,
        normalize: bool = FreezeConfig.normalize,
        seed: int = 0,
    ) -> None:
        super().__init__()
        FreezeConfig(measure=measure, tau=tau, max_frozen_share=max_frozen_share, granularity=granularity,
                     n_samples=n_samples, energy=energy, representation=representation, center=center,
                     warmup_epochs=warmup_epochs, normalize=normalize)
        self.measure = measure
        self.tau = tau
        self.max_frozen_share = max_frozen_share
        self.granularity = granularity
        self.n_samples = n_samples
        self.energy = energy
        self.representation = representation
        self.center = center
        self.warmup_epochs = warmup_epochs
        self.normalize = normalize
        self.seed = seed
        self.bases: Dict[int, SubspaceBasis] = {}
        #: Per unit: the score of held-out samples of the last finished task (``normalize`` only).
        self.ceilings: Dict[int, float] = {}
        self.snapshot: Optional[nn.Module] = None
        self.compute_shares: Optional[List[float]] = None
        self.history: List[dict] = []
        self.tasks_done = 0

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

    def _group_scores(self, backbone: FreezableBackbone, block_scores: List[float]) -> List[float]:
        """Scores at the plugin's granularity (a stage scores as its weakest block)."""
        if self.granularity == "block":
            return block_scores
        out, start = [], 0
        for end in backbone.unit_boundaries(granularity="stage"):
            out.append(min(block_scores[start:end]))
            start = end
        return out

    # ------------------------------------------------------------ callbacks
    def after_training_exp(self, strategy, **kwargs):
        backbone = find_freezable_backbone(strategy.model)
        self.tasks_done += 1
        if self.measure == "subspace":
            outs = self._unit_outputs(backbone, self._samples(strategy, strategy.experience))
            for i, out in enumerate(outs):
                self.bases.setdefault(i, SubspaceBasis(energy=self.energy)).update(self._matrix(out))
            held_out = self._samples(strategy, strategy.experience, held_out=True) if self.normalize else None
            if held_out is not None:
                self.ceilings = dict(enumerate(self.raw_scores(backbone, held_out)))
        else:
            self.snapshot = copy.deepcopy(backbone).eval()

    def before_training_exp(self, strategy, **kwargs):
        if self.measure == "cka" and self.tasks_done and 0 < strategy.train_epochs <= self.warmup_epochs:
            warnings.warn(f"CorrelationFreezePlugin(measure='cka', warmup_epochs={self.warmup_epochs}) decides after "
                          f"the warm-up epochs, but tasks train for {strategy.train_epochs}: nothing will be frozen",
                          RuntimeWarning)
        backbone = find_freezable_backbone(strategy.model)
        # keep earlier decisions applied (Avalanche's make_optimizer runs before this hook)
        self._apply(strategy, backbone, backbone.num_frozen_units)
        if self.tasks_done and (self.measure == "subspace" or self.warmup_epochs == 0):
            self._decide(strategy, backbone)

    def before_training_epoch(self, strategy, **kwargs):
        if self.measure == "cka" and self.tasks_done and self.warmup_epochs > 0:
            if strategy.clock.train_exp_epochs == self.warmup_epochs:
                self._decide(strategy, find_freezable_backbone(strategy.model))

    # ------------------------------------------------------------- decision
    def _matrix(self, features: Tensor) -> Tensor:
        return representation_matrix(features, self.representation, center=self.center)

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
        x = self._samples(strategy, strategy.experience)
        if self.compute_shares is None:
            self.compute_shares = unit_compute_shares(backbone, x[:1])
        if self.measure == "subspace":
            if self.normalize:
                return self.normalized_scores(backbone, x, self._noise_like(strategy, x))
            return self.raw_scores(backbone, x)
        outs = self._unit_outputs(backbone, x)
        assert self.snapshot is not None
        old = self._unit_outputs(self.snapshot, x)
        return [linear_cka(a.flatten(1), b.flatten(1)) for a, b in zip(old, outs)]

    def _decide(self, strategy, backbone: FreezableBackbone) -> None:
        block_scores = self._scores(strategy, backbone)
        assert self.compute_shares is not None
        scores = self._group_scores(backbone, block_scores)
        names = backbone.unit_names(granularity=self.granularity)
        ends = backbone.unit_boundaries(granularity=self.granularity)
        chosen = 0
        for k, score in enumerate(scores):
            share = sum(self.compute_shares[: ends[k]])
            if score < self.tau or share > self.max_frozen_share + 1e-9:
                break
            chosen = ends[k]
        n_blocks = max(chosen, backbone.num_frozen_units)  # progressive: never unfreeze
        self._apply(strategy, backbone, n_blocks)
        share = sum(self.compute_shares[:n_blocks])
        frozen_names = [n for n, e in zip(names, ends) if e <= n_blocks]
        record = {
            "experience": strategy.experience.current_experience,
            "scores": dict(zip(names, scores)),
            "frozen_units": frozen_names,
            "frozen_blocks": n_blocks,
            "frozen_share": share,
        }
        self.history.append(record)
        x = strategy.clock.train_iterations
        exp = record["experience"]
        publish = strategy.evaluator.publish_metric_value
        for name, s in record["scores"].items():
            publish(MetricValue(self, f"Freeze_Score/{name}/Exp{exp:03d}", s, x))
        publish(MetricValue(self, f"Freeze_Blocks/Exp{exp:03d}", n_blocks, x))
        publish(MetricValue(self, f"Freeze_ComputeShare/Exp{exp:03d}", share, x))

    def _apply(self, strategy, backbone: FreezableBackbone, n_blocks: int) -> None:
        apply_frozen_prefix(backbone, n_blocks, strategy.optimizer)

    # ---------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "bases": {i: b.state_dict() for i, b in self.bases.items()},
            "snapshot": None if self.snapshot is None else self.snapshot.state_dict(),
            "compute_shares": self.compute_shares,
            "history": self.history,
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
        if (state["snapshot"] is not None or state["frozen_blocks"]) and backbone is None:
            raise ValueError("restoring the freezing plugin needs the backbone (backbone=...)")
        if state["snapshot"] is not None:
            self.snapshot = copy.deepcopy(find_freezable_backbone(backbone)).eval()
            self.snapshot.load_state_dict(state["snapshot"])
        self.compute_shares = state["compute_shares"]
        self.ceilings = {int(i): c for i, c in state.get("ceilings", {}).items()}
        self.history = list(state["history"])
        self.tasks_done = state["tasks_done"]
        if backbone is not None:
            find_freezable_backbone(backbone).set_frozen_prefix(state["frozen_blocks"])
