"""Training-health checks: non-finite losses and representation collapse stop the run."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor

from .protocols import SelfSupervisedState
from .validation import check_choice, check_number

__all__ = ["HealthConfig", "TrainingHealthError", "TrainingHealthPlugin"]

ON_NAN = ("stop", "warn")


@dataclass
class HealthConfig:
    """The ``health`` configuration section.

    Attributes:
        on_nan: ``stop`` (raise :class:`TrainingHealthError`) or ``warn``.
        collapse_std: collapse threshold on the mean per-dimension std of normalised features (0 disables).
        check_every: iterations between the host's reads of the loss check (0: once, at the end of
            each epoch; the check itself runs on the device at every iteration).
    """

    on_nan: str = "stop"
    collapse_std: float = 1e-4
    check_every: int = 0

    def __post_init__(self) -> None:
        check_choice("on_nan", self.on_nan, ON_NAN)
        check_number("collapse_std", self.collapse_std, at_least=0)
        check_number("check_every", self.check_every, at_least=0, integer=True)


class TrainingHealthError(RuntimeError):
    """Training produced garbage (NaN/inf loss or collapsed representations)."""


class TrainingHealthPlugin(SupervisedPlugin, supports_distributed=True):
    """Stop (or warn) when the loss is not finite, a weight is not finite at the end of a task
    (before evaluation and checkpointing), or the representation collapses.

    Collapse is measured as in SimSiam's paper: the mean over dimensions of the
    per-dimension standard deviation of the L2-normalised features of the last
    batch of an epoch; a value below ``collapse_std`` (about ``1/sqrt(D)`` when
    healthy) means all images map to one point.

    The loss is checked on the device at every iteration (the first non-finite iteration and
    its loss are kept as device tensors), and the host reads the result every ``check_every``
    iterations and at the end of every epoch, so the training loop never waits for the device
    because of this check. A non-finite loss therefore stops the task at the next read, always
    before the task is evaluated or checkpointed, and the message names the first iteration.

    Args:
        on_nan: ``stop`` (raise :class:`TrainingHealthError`) or ``warn``.
        collapse_std: collapse threshold (0 disables the check).
        check_every: iterations between reads of the loss check (0: at the end of each epoch).

    Example:
        >>> plugin = TrainingHealthPlugin(on_nan="stop", check_every=16)
        >>> plugin.check_every
        16
    """

    def __init__(self, *, on_nan: str = HealthConfig.on_nan, collapse_std: float = HealthConfig.collapse_std,
                 check_every: int = HealthConfig.check_every) -> None:
        super().__init__()
        HealthConfig(on_nan=on_nan, collapse_std=collapse_std, check_every=check_every)
        self.on_nan = on_nan
        self.collapse_std = collapse_std
        self.check_every = check_every
        self.last_feature_std = math.nan
        self._first_bad: Optional[Tensor] = None  # iteration of the first non-finite loss since the last read (-1: none)
        self._bad_loss: Optional[Tensor] = None
        self._unread = 0

    def _where(self, strategy) -> str:
        exp = strategy.experience.current_experience if strategy.experience is not None else "?"
        return f"task {exp}, epoch {strategy.clock.train_exp_epochs}, iteration {strategy.clock.train_epoch_iterations}"

    def _fail(self, message: str) -> None:
        if self.on_nan == "stop":
            raise TrainingHealthError(message)
        warnings.warn(message, RuntimeWarning)

    @torch.no_grad()
    def before_backward(self, strategy, **kwargs):
        loss = strategy.loss.detach()
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        assert self._bad_loss is not None
        first = ~torch.isfinite(loss).all() & (self._first_bad < 0)
        self._first_bad = torch.where(first, strategy.clock.train_epoch_iterations, self._first_bad)
        self._bad_loss = torch.where(first, loss.flatten()[0].float(), self._bad_loss)
        self._unread += 1
        if self.check_every and self._unread >= self.check_every:
            self._read_loss_check(strategy)

    def _read_loss_check(self, strategy) -> None:
        """The host's read of the device-side loss check (one wait on the device)."""
        self._unread = 0
        if self._first_bad is None or self._bad_loss is None:
            return
        iteration = int(self._first_bad)
        if iteration < 0:
            return
        value = float(self._bad_loss)
        self._first_bad.fill_(-1)
        exp = strategy.experience.current_experience if strategy.experience is not None else "?"
        self._fail(
            f"non-finite loss ({value}) at task {exp}, epoch {strategy.clock.train_exp_epochs}, iteration "
            f"{iteration}: lower lr or check the data; set health.on_nan=warn to continue anyway"
        )

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs):
        """Before the task is evaluated or checkpointed: every weight must be finite."""
        bad = [name for name, p in strategy.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            exp = strategy.experience.current_experience if strategy.experience is not None else "?"
            self._fail(f"non-finite weights after task {exp} in {len(bad)} parameter tensor(s), e.g. {bad[0]}: "
                       "lower lr or check the data; set health.on_nan=warn to continue anyway")

    @torch.no_grad()
    def after_training_epoch(self, strategy, **kwargs):
        self._read_loss_check(strategy)
        out = strategy.ssl_output if isinstance(strategy, SelfSupervisedState) else None
        if out is None or self.collapse_std <= 0:
            return
        feats = F.normalize(out.features[0].float(), dim=1)
        self.last_feature_std = float(feats.std(0).mean())
        if self.last_feature_std < self.collapse_std:
            self._fail(
                f"representation collapse at {self._where(strategy)}: feature std "
                f"{self.last_feature_std:.2e} < collapse_std={self.collapse_std:g}"
            )
