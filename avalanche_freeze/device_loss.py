"""Avalanche's loss metrics, accumulated on the training device: the host reads the loss once per epoch.

Avalanche's :class:`~avalanche.evaluation.metrics.LossMetric` turns every mini-batch loss into a
Python float, which on a GPU makes the host wait for the device at every iteration. The metrics
here keep the running sum as a device tensor and read it only when the metric emits its value
(at the end of an epoch or experience), under the same names as Avalanche's, so loggers and
dashboards see no difference.

Example:
    >>> import torch
    >>> mean = DeviceLossMean()
    >>> mean.update(torch.tensor(2.0), patterns=3)
    >>> mean.update(torch.tensor(4.0), patterns=1)
    >>> mean.result()
    2.5
"""

from __future__ import annotations

from typing import List, Optional

import torch
from avalanche.evaluation.metrics import EpochLoss, ExperienceLoss, LossMetric
from avalanche.evaluation.metrics.loss import LossPluginMetric
from torch import Tensor

__all__ = ["DeviceEpochLoss", "DeviceExperienceLoss", "DeviceLossMean", "device_loss_metrics"]


class DeviceLossMean(LossMetric):
    """:class:`~avalanche.evaluation.metrics.LossMetric` (the pattern-weighted mean loss) whose
    running sum stays on the loss's device until :meth:`result` reads it."""

    def __init__(self) -> None:
        super().__init__()
        self._sum: Optional[Tensor] = None
        self._weight = 0

    @torch.no_grad()
    def update(self, loss: Tensor, patterns: int) -> None:
        value = loss.detach().float().mean() * patterns
        self._sum = value if self._sum is None else self._sum + value
        self._weight += patterns

    def result(self) -> float:
        if self._sum is None or self._weight == 0:
            return 0.0
        return float(self._sum) / self._weight

    def reset(self) -> None:
        self._sum = None
        self._weight = 0


def _on_device(metric: LossPluginMetric) -> LossPluginMetric:
    metric._loss = metric._metric = DeviceLossMean()
    return metric


class DeviceEpochLoss(EpochLoss):
    """Avalanche's ``Loss_Epoch`` (mean training loss of an epoch), read once at the epoch's end."""

    def __init__(self) -> None:
        super().__init__()
        _on_device(self)


class DeviceExperienceLoss(ExperienceLoss):
    """Avalanche's ``Loss_Exp`` (mean loss over an evaluation experience), read once at its end."""

    def __init__(self) -> None:
        super().__init__()
        _on_device(self)


def device_loss_metrics(*, epoch: bool = False, experience: bool = False) -> List[LossPluginMetric]:
    """The device-side counterparts of ``avalanche.evaluation.metrics.loss_metrics(epoch=..., experience=...)``.

    Args:
        epoch: the mean training loss of each epoch (``Loss_Epoch``).
        experience: the mean loss of each evaluation experience (``Loss_Exp``).

    Example:
        >>> [str(m) for m in device_loss_metrics(epoch=True, experience=True)]
        ['Loss_Epoch', 'Loss_Exp']
    """
    metrics: List[LossPluginMetric] = []
    if epoch:
        metrics.append(DeviceEpochLoss())
    if experience:
        metrics.append(DeviceExperienceLoss())
    return metrics
