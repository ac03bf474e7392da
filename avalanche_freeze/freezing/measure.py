"""What every correlation measure of the freezing rule implements (:class:`CorrelationMeasure`).

A measure scores each block-level unit of a :class:`~avalanche_freeze.backbones.FreezableBackbone`
by how correlated the current task is with the tasks before it. At the end of each task it keeps
what later scores compare against (:meth:`CorrelationMeasure.learn_task`); at each check of a
later task it scores every unit (:meth:`CorrelationMeasure.scores`). Three measures ship, one
module each: :mod:`~avalanche_freeze.freezing.gradient` (the default),
:mod:`~avalanche_freeze.freezing.subspace` and :mod:`~avalanche_freeze.freezing.cka`. The
plugin (:class:`~avalanche_freeze.freezing.plugin.CorrelationFreezePlugin`) calls them and never
looks inside.

Images reach a measure through :class:`TaskImages`, whose functions draw them only when the
measure asks (so a measure that needs none costs no data loading).

Example:
    >>> import torch
    >>> from avalanche_freeze.backbones import CifarResNet18
    >>> net = CifarResNet18(width=0.125, in_channels=1)
    >>> [tuple(o.shape) for o in unit_outputs(net, torch.zeros(2, 1, 28, 28))][:2]
    [(2, 8, 28, 28), (2, 8, 28, 28)]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..backbones import FreezableBackbone
from .config import FreezeConfig

__all__ = ["CorrelationMeasure", "TaskImages", "calibrate", "tensor_bytes", "unit_outputs"]


@dataclass
class TaskImages:
    """Fixed images of the task at hand, drawn on demand.

    Attributes:
        samples: the task's ``n_samples`` fixed images, normalised (during a task: the check
            window's images, the same at every check of the window).
        held_out: the next ``n_samples`` images of the same draw, disjoint from ``samples``
            (``None`` when the task has no more).
        noise_like: uniform-noise images of a tensor's shape, normalised as the data are.
    """

    samples: Callable[[], Tensor]
    held_out: Callable[[], Optional[Tensor]]
    noise_like: Callable[[Tensor], Tensor]


@torch.no_grad()
def unit_outputs(backbone: FreezableBackbone, x: Tensor) -> List[Tensor]:
    """Every block-level unit's output on ``x``, in eval mode (the backbone's mode is restored)."""
    was_training = backbone.training
    backbone.eval()
    outs = backbone.forward_units(x)
    backbone.train(was_training)
    return outs


def calibrate(raw: float, chance: float, ceiling: float) -> float:
    """``(raw - chance) / (ceiling - chance)`` clipped to ``[0, 1]``: 0 at (or below) the chance level,
    1 at (or above) the same-task ceiling; 0 when the ceiling does not exceed the chance level (the
    measure cannot tell the task from chance there).

    A difference over a range, not a z-score: the range is what separates an unrelated task from
    the same task, so the value reads the same at any dimension, rank or depth, while a z-score's
    spread of the null shrinks with the dimension and would make ``tau`` depend on the width.

    Example:
        >>> calibrate(0.9, 0.5, 1.0), calibrate(0.4, 0.5, 1.0), calibrate(0.7, 0.7, 0.7)
        (0.8, 0.0, 0.0)
    """
    if ceiling <= chance + 1e-9:
        return 0.0
    return min(1.0, max(0.0, (raw - chance) / (ceiling - chance)))


def tensor_bytes(tensors) -> int:
    """Bytes held by ``tensors``."""
    return sum(t.numel() * t.element_size() for t in tensors)


class CorrelationMeasure(ABC):
    """Scores of task correlation, one per block-level unit.

    Args:
        config: the freezing options (:class:`~avalanche_freeze.freezing.config.FreezeConfig`).

    A subclass names itself (``name``, the value of ``freeze.measure``), says whether it reads
    the weight gradients after every backward pass (``reads_gradients``) and whether, with
    ``decide_every=0``, it scores only after ``warmup_epochs`` of training on the new task
    (``scores_after_warmup``).
    """

    #: The value of ``freeze.measure`` that selects this measure.
    name: ClassVar[str]
    #: True when :meth:`observe_backward` must run after every backward pass of a deciding task.
    reads_gradients: ClassVar[bool] = False
    #: True when, deciding once per task, the measure scores after the warm-up epochs (not at the start).
    scores_after_warmup: ClassVar[bool] = False

    def __init__(self, config: FreezeConfig) -> None:
        self.config = config

    @abstractmethod
    def learn_task(self, backbone: FreezableBackbone, task: TaskImages, *, open_units: Sequence[int]) -> None:
        """At the end of a task: keep what later tasks are compared with (``open_units``: the units
        that may still be frozen; what belongs to the others may be dropped)."""

    @abstractmethod
    def scores(self, backbone: FreezableBackbone, task: TaskImages) -> List[float]:
        """Per block-level unit, the correlation of the current task with the old ones."""

    def observe_backward(self, backbone: FreezableBackbone, *, open_units: Sequence[int]) -> None:
        """After a backward pass of a deciding task (only called when ``reads_gradients``)."""

    def restart_window(self) -> None:
        """Forget what was gathered since the last check (at each check and between tasks)."""

    def details(self) -> Dict[str, List[float]]:
        """The parts of the last :meth:`scores`, per block-level unit, when they are calibrated:
        ``raw`` (the ratio), ``chance`` (what unrelated data score) and ``ceiling`` (what the old
        task's own held-out images score); empty for raw scores."""
        return {}

    def state_dict(self) -> Dict[str, object]:
        """What the measure keeps across tasks, as plain values and tensors."""
        return {}

    def load_state_dict(self, state: Dict[str, object], *, backbone: Optional[nn.Module] = None) -> None:
        """Restore :meth:`state_dict` (``backbone``: the model being trained, for measures that copy it)."""

    def memory_bytes(self) -> Dict[str, int]:
        """Bytes held, by part (``bases``, ``snapshot``, ``gradient_sums``)."""
        return {}
