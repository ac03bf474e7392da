"""Training-health checks: non-finite losses and representation collapse stop the run."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

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
    """

    on_nan: str = "stop"
    collapse_std: float = 1e-4

    def __post_init__(self) -> None:
        check_choice("on_nan", self.on_nan, ON_NAN)
        check_number("collapse_std", self.collapse_std, at_least=0)


class TrainingHealthError(RuntimeError):
    """Training produced garbage (NaN/inf loss or collapsed representations)."""


class TrainingHealthPlugin(SupervisedPlugin, supports_distributed=True):
    """Stop (or warn) when the loss is not finite, a weight is not finite at the end of a task
    (before evaluation and checkpointing), or the representation collapses.

    Collapse is measured as in SimSiam's paper: the mean over dimensions of the
    per-dimension standard deviation of the L2-normalised features of the last
    batch of an epoch; a value below ``collapse_std`` (about ``1/sqrt(D)`` when
    healthy) means all images map to one point.

    Args:
        on_nan: ``stop`` (raise :class:`TrainingHealthError`) or ``warn``.
        collapse_std: collapse threshold (0 disables the check).
    """

    def __init__(self, *, on_nan: str = HealthConfig.on_nan, collapse_std: float = HealthConfig.collapse_std) -> None:
        super().__init__()
        HealthConfig(on_nan=on_nan, collapse_std=collapse_std)
        self.on_nan = on_nan
        self.collapse_std = collapse_std
        self.last_feature_std = math.nan

    def _where(self, strategy) -> str:
        exp = strategy.experience.current_experience if strategy.experience is not None else "?"
        return f"task {exp}, epoch {strategy.clock.train_exp_epochs}, iteration {strategy.clock.train_epoch_iterations}"

    def _fail(self, message: str) -> None:
        if self.on_nan == "stop":
            raise TrainingHealthError(message)
        warnings.warn(message, RuntimeWarning)

    def before_backward(self, strategy, **kwargs):
        loss = strategy.loss
        if not bool(torch.isfinite(loss).all()):
            self._fail(
                f"non-finite loss ({float(loss.detach().flatten()[0])}) at {self._where(strategy)}: "
                "lower lr or check the data; set health.on_nan=warn to continue anyway"
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
