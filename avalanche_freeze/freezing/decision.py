"""The freezing rule's choice of prefix, as a pure function of what a check measures, and its replay.

At each check the freezing plugin (:class:`~avalanche_freeze.plugins.CorrelationFreezePlugin`)
measures, per unit, a correlation score and a stability value, and freezes the longest prefix
of units that pass both thresholds within the compute cap; the prefix never shrinks.
:func:`choose_prefix` is that choice, and says what ended the prefix: the first unit left open
failed ``tau`` (``"tau"``), the stability gate (``"gate"``), both (``"both"``), lies past the
compute cap (``"cap"``), or no unit is left open (``"end"``). With ``freeze.shrink``, each task
from ``first_task`` on also begins with :func:`revise_prefix`: the frozen prefix is re-scored on the
new task and cut at its first unit below ``tau`` (the only way a prefix shrinks).

Because a run records every check's scores and stability values (``results.json``'s
``freeze_history``), :func:`replay_decisions` can re-decide a finished run under other
thresholds (``tau``, ``stability``, a smaller ``max_frozen_share``) without training again. The
replay is exact up to the first check where it chooses differently from the run: from there on
the backbone would have trained differently, so the recorded values no longer apply and the
replay stops, reporting where it diverged.

Example:
    >>> choice = choose_prefix([1.0, 0.95, 0.7, 0.9], [1.0, 0.999, 0.999, 0.5], ends=[1, 2, 3, 4],
    ...                        shares=[0.1, 0.2, 0.3, 0.4], frozen_blocks=0, tau=0.8, stability=0.99,
    ...                        max_frozen_share=1.0)
    >>> choice.blocks, choice.stopped_by
    (2, 'tau')
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..backbones import CifarResNet18, unit_compute_shares
from ..benchmarks import BENCHMARKS
from ..validation import check_number

__all__ = ["BackboneLayout", "PrefixChoice", "Replay", "STOP_REASONS", "backbone_layout", "choose_prefix",
           "replay_decisions", "revise_prefix"]

#: What can end the chosen prefix (see :func:`choose_prefix`).
STOP_REASONS = ("tau", "gate", "both", "cap", "end")


@dataclass(frozen=True)
class PrefixChoice:
    """One check's decision.

    Attributes:
        blocks: block-level length of the frozen prefix after the check (never below the one before).
        stopped_by: what ended the prefix, one of :data:`STOP_REASONS`.
    """

    blocks: int
    stopped_by: str


def choose_prefix(scores: Sequence[float], stable: Sequence[float], *, ends: Sequence[int], shares: Sequence[float],
                  frozen_blocks: int, tau: float, stability: float, max_frozen_share: float) -> PrefixChoice:
    """The longest prefix of units that pass, within the cap, never shorter than the frozen one.

    Args:
        scores: per unit (at the plugin's granularity), the correlation score.
        stable: per unit, the stability value (1.0 everywhere without a gate).
        ends: per unit, the block-level prefix length it ends at (``backbone.unit_boundaries``).
        shares: per block-level unit, its share of the backbone's forward compute.
        frozen_blocks: the block-level prefix frozen before the check (its units pass whatever they score).
        tau: the score a unit must reach.
        stability: the stability value a unit must reach.
        max_frozen_share: the largest share of forward compute the prefix may hold.

    Returns:
        The new prefix length and what ended it: the first unit left open scored below ``tau``
        (``"tau"``), below ``stability`` (``"gate"``), below both (``"both"``), would take the
        prefix past ``max_frozen_share`` (``"cap"``), or every unit is frozen (``"end"``).

    Example:
        >>> choose_prefix([0.9, 0.9], [1.0, 1.0], ends=[1, 2], shares=[0.3, 0.7], frozen_blocks=0, tau=0.8,
        ...               stability=0.99, max_frozen_share=0.5)
        PrefixChoice(blocks=1, stopped_by='cap')
    """
    if not len(scores) == len(stable) == len(ends):
        raise ValueError(f"choose_prefix: {len(scores)} scores, {len(stable)} stability values and {len(ends)} unit "
                         "ends: accepted: one of each per unit")
    chosen, stopped_by = 0, "end"
    for score, steady, end in zip(scores, stable, ends):
        if sum(shares[:end]) > max_frozen_share + 1e-9:
            stopped_by = "cap"
            break
        if end > frozen_blocks:
            low_score, moving = score < tau, steady < stability
            if low_score or moving:
                stopped_by = "both" if low_score and moving else ("tau" if low_score else "gate")
                break
        chosen = end
    return PrefixChoice(max(chosen, frozen_blocks), stopped_by)


def revise_prefix(scores: Sequence[float], *, ends: Sequence[int], frozen_blocks: int, tau: float) -> PrefixChoice:
    """The frozen prefix cut at its first unit whose score on the new task is below ``tau`` (``freeze.shrink``).

    A frozen unit does not move, so the stability gate has nothing to say about it; only the
    correlation can send it back to training. The prefix never grows here (growing needs the
    gate's checks during the task).

    Args:
        scores: per unit (at the plugin's granularity), the correlation score on the new task.
        ends: per unit, the block-level prefix length it ends at.
        frozen_blocks: the block-level prefix frozen now.
        tau: the score a frozen unit must keep to stay frozen.

    Returns:
        The kept prefix and what ended it: ``"tau"`` when a frozen unit failed, ``"end"`` when the
        whole prefix is kept.

    Example:
        >>> revise_prefix([0.9, 0.5, 0.9], ends=[1, 2, 3], frozen_blocks=3, tau=0.8)
        PrefixChoice(blocks=1, stopped_by='tau')
    """
    if len(scores) != len(ends):
        raise ValueError(f"revise_prefix: {len(scores)} scores and {len(ends)} unit ends: accepted: one of each per unit")
    kept = 0
    for score, end in zip(scores, ends):
        if end > frozen_blocks:
            break
        if score < tau:
            return PrefixChoice(kept, "tau")
        kept = end
    return PrefixChoice(frozen_blocks, "end")


@dataclass(frozen=True)
class BackboneLayout:
    """What the decision needs to know of a backbone.

    Attributes:
        ends: per unit at the freezing granularity, the block-level prefix length it ends at.
        shares: per block-level unit, its share of the backbone's forward compute.
    """

    ends: List[int]
    shares: List[float]


def backbone_layout(*, benchmark: str, width: float, granularity: str) -> BackboneLayout:
    """The unit ends (at ``granularity``) and compute shares of the backbone of ``width`` for
    ``benchmark`` (a run's ``data.benchmark``, ``model.width`` and ``freeze.granularity``), measured
    on one zero image of the benchmark's shape (FLOPs do not depend on the pixel values, so they
    equal the shares the plugin measured during the run)."""
    ends, shares = _measured_layout(benchmark, width, granularity)
    return BackboneLayout(list(ends), list(shares))


@functools.lru_cache(maxsize=None)
def _measured_layout(benchmark: str, width: float, granularity: str) -> Tuple[Tuple[int, ...], Tuple[float, ...]]:
    """Build the backbone and count its FLOPs once per (benchmark, width, granularity): a grid's
    runs share a handful of layouts."""
    spec = BENCHMARKS[benchmark]
    net = CifarResNet18(width=width, in_channels=spec.channels)
    shares = unit_compute_shares(net, torch.zeros(1, spec.channels, spec.image_size, spec.image_size))
    return tuple(net.unit_boundaries(granularity=granularity)), tuple(shares)


@dataclass
class Replay:
    """A finished run's checks re-decided under other thresholds (see :func:`replay_decisions`).

    Attributes:
        checks: how many recorded checks the replay re-decided (up to and including a divergence).
        recorded_checks: how many checks the run recorded.
        choices: the replayed decision of each re-decided check.
        recorded_blocks: the run's prefix after each re-decided check.
        diverged_at: ``(experience, iteration)`` of the first check decided differently from the
            run (``None``: the same decision at every check, so the run is what the thresholds
            would have made).
    """

    checks: int = 0
    recorded_checks: int = 0
    choices: List[PrefixChoice] = field(default_factory=list)
    recorded_blocks: List[int] = field(default_factory=list)
    diverged_at: Optional[tuple] = None

    @property
    def identical(self) -> bool:
        """True when every recorded check is decided as the run decided it."""
        return self.diverged_at is None

    def stop_counts(self) -> Dict[str, int]:
        """How often each of :data:`STOP_REASONS` ended the prefix over the replayed checks."""
        counts = dict.fromkeys(STOP_REASONS, 0)
        for choice in self.choices:
            counts[choice.stopped_by] += 1
        return counts


def replay_decisions(history: Sequence[dict], *, ends: Sequence[int], shares: Sequence[float], tau: float,
                     stability: float, max_frozen_share: float, recorded_stability: float,
                     recorded_max_frozen_share: float) -> Replay:
    """Re-decide a run's recorded checks under ``tau``, ``stability`` and ``max_frozen_share``.

    Args:
        history: the run's ``freeze_history`` (one dict per check: ``experience``, ``iteration``,
            ``scores`` and ``stability`` by unit name in unit order, ``frozen_blocks``).
        ends, shares: the backbone's unit ends and block compute shares (see :func:`choose_prefix`).
        tau, stability, max_frozen_share: the thresholds to replay under.
        recorded_stability, recorded_max_frozen_share: those the run used. A replay may not lift the
            cap (units past the run's cap were never scored) nor turn on a gate the run had off
            (no stability values were measured).

    Returns:
        The replay, stopped after the first check decided differently from the run.

    Raises:
        ValueError: a history without scores (a fixed schedule), a larger cap, a gate the run did
            not measure, or scores that do not match ``ends``.
    """
    check_number("tau", tau, at_least=0, at_most=1)
    check_number("stability", stability, at_least=0, at_most=1)
    check_number("max_frozen_share", max_frozen_share, at_least=0, at_most=1)
    if max_frozen_share > recorded_max_frozen_share + 1e-9:
        raise ValueError(f"max_frozen_share={max_frozen_share} is not accepted: the run was capped at "
                         f"{recorded_max_frozen_share} and never scored the units past it; accepted: at most "
                         f"{recorded_max_frozen_share}")
    if stability > 0 and recorded_stability == 0:
        raise ValueError(f"stability={stability} is not accepted: the run had no stability gate, so no stability "
                         "values were recorded; accepted: 0")
    if any(not h.get("scores") for h in history):
        raise ValueError("the run's freeze_history has checks without scores (a fixed schedule decides nothing); "
                         "accepted: the history of a run where the rule decided")
    replay = Replay(recorded_checks=len(history))
    frozen = 0
    for record in history:
        scores, stable = list(record["scores"].values()), list(record["stability"].values())
        if record.get("revision"):  # freeze.shrink's task-start re-scoring of the frozen prefix
            choice = revise_prefix(scores, ends=ends, frozen_blocks=frozen, tau=tau)
        else:
            choice = choose_prefix(scores, stable, ends=ends, shares=shares, frozen_blocks=frozen, tau=tau,
                                   stability=stability, max_frozen_share=max_frozen_share)
        replay.checks += 1
        replay.choices.append(choice)
        replay.recorded_blocks.append(int(record["frozen_blocks"]))
        if choice.blocks != record["frozen_blocks"]:
            replay.diverged_at = (record["experience"], record.get("iteration", 0))
            break
        frozen = choice.blocks
    return replay
