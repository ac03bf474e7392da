"""The ``freeze`` configuration section: every option of the freezing rule and its fixed schedules.

Example:
    >>> cfg = FreezeConfig(tau=0.9, decide_every=32)
    >>> cfg.measure, cfg.resolved_score, cfg.max_frozen_share
    ('subspace', 'calibrated', 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from ..backbones import GRANULARITIES
from ..validation import check_choice, check_number, not_accepted
from .correlation import REPRESENTATIONS

__all__ = ["FreezeConfig", "GATE_REFERENCES", "MEASURES", "SCORES"]

MEASURES = ("gradient", "subspace", "cka")
GATE_REFERENCES = ("task", "check")
#: What ``tau`` is compared with: the measure's raw ratio, or the ratio calibrated between its chance
#: level and its same-task ceiling (:mod:`~avalanche_freeze.freezing.gradient`).
SCORES = ("raw", "calibrated")


@dataclass
class FreezeConfig:
    """The ``freeze`` configuration section.

    The defaults (``tau``, ``stability``, ``max_frozen_share``, ``first_task``) were chosen on
    validation data (unused training images of Split Fashion-MNIST, three seeds), never on
    test accuracy (see ``experiments/tune_freeze.py`` and docs/methods/freezing.md);
    ``measure`` and ``decide_every`` (one epoch there) were not tuned.

    Attributes:
        measure: ``subspace`` (default since 0.3.0: the only measure whose calibrated score tells a
            pixel-permuted task from a plain one, see docs/methods/freezing.md), ``gradient`` (the
            default before; after TRGP) or ``cka``.
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
        score: what ``tau`` applies to: ``calibrated`` (``gradient`` and ``subspace``: 0 at the ratio
            random gradients or features reach against the same bases, 1 at the ratio held-out images
            of the old task reach; see
            :meth:`~avalanche_freeze.freezing.gradient.GradientProjection.calibrated`) or ``raw`` (the
            measure's ratio). Default (``None``): ``calibrated``, and ``raw`` for ``cka``, which has
            no chance level. Runs saved before the key existed used ``raw``.
        shrink: ``subspace`` only: at the start of each task from ``first_task`` on, re-score the
            frozen prefix on the new task's images and unfreeze it from its first unit below ``tau``
            (units unfrozen train again: gradients, optimizer with fresh state, BatchNorm updates).
            False: the prefix only grows, as in the paper. Default (``None``): on with ``subspace``
            (chosen on the validation split: it never fired on plain Split Fashion-MNIST and turned
            a 1.8-point loss against LUMP into a 0.9-point gain on a stream with two permuted
            tasks), off with the other measures. Runs saved before the key existed did not shrink.
        schedule: ``[[task, iteration, blocks], ...]``: instead of deciding, freeze the first
            ``blocks`` block-level units at ``iteration`` of task ``task`` (0-based); a fixed
            schedule for controls. Empty (default): the plugin decides.
    """

    #: The options a ``schedule`` does not read: with one, they do not change a run's results.
    DECISION_OPTIONS = ("measure", "tau", "stability", "gate_reference", "decide_every", "max_frozen_share",
                        "first_task", "n_samples", "energy", "representation", "center", "warmup_epochs",
                        "normalize", "score", "shrink")

    measure: str = "subspace"
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
    score: Optional[str] = None
    shrink: Optional[bool] = None
    schedule: List[List[int]] = field(default_factory=list)

    @property
    def resolved_score(self) -> str:
        """The score ``tau`` applies to: ``score``, or for its default the measure's calibrated score
        where it has one (``raw`` for ``cka``)."""
        if self.score is not None:
            return self.score
        return "raw" if self.measure == "cka" else "calibrated"

    @property
    def shrinks(self) -> bool:
        """True when each task may unfreeze the frozen prefix (``shrink``, or its default: on with ``subspace``)."""
        return self.measure == "subspace" if self.shrink is None else bool(self.shrink)

    @property
    def calibrated(self) -> bool:
        """True when ``tau`` applies to the calibrated score."""
        return self.resolved_score == "calibrated"

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
        if self.score is not None:
            check_choice("score", self.score, SCORES)
        check_choice("shrink", self.shrink, (None, False, True))
        if self.shrink and self.measure != "subspace":
            raise not_accepted("shrink", self.shrink, "False with measure=" + self.measure + " (re-scoring a frozen "
                               "unit at a task's start needs a measure that scores it before training: subspace; "
                               "the gradient measure reads gradients a frozen unit does not get, cka compares with "
                               "the model after training)")
        if self.score == "calibrated" and self.measure == "cka":
            raise not_accepted("score", self.score, "raw with measure=cka (CKA has no basis to draw a chance level "
                               "against; calibrated scores exist for gradient and subspace)")
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
