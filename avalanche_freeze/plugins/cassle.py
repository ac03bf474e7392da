"""CaSSLe: self-supervised continual learning by predictive distillation (Fini et al.,
"Self-Supervised Models are Continual Learners", CVPR 2022).

From the second task on, a frozen copy of the model as it was at the end of the previous
task (backbone and projector) gives target projections ``zbar`` of both views, and a
trainable predictor ``g`` maps the current projections ``z`` onto them. The SSL method's
own loss is the distillation term, so for two views

    ``loss += lam * 0.5 * (L_ssl(g(z1), zbar1) + L_ssl(g(z2), zbar2))``

where ``L_ssl`` is :meth:`~avalanche_freeze.ssl.SSLMethod.pair_loss` (negative cosine for
SimSiam/BYOL, the Barlow Twins / VICReg / NT-Xent loss for the others). The frozen copy
runs in eval mode (its BatchNorm layers use their running statistics) and without autograd.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from ..protocols import require_self_supervised
from ..validation import check_number

__all__ = ["CaSSLeConfig", "CaSSLePlugin", "distillation_predictor"]


@dataclass
class CaSSLeConfig:
    """The ``cassle`` configuration section.

    Attributes:
        lam: weight of the distillation term (1.0, as CaSSLe).
        hidden_dim: hidden width of the predictor (``None``: the projection dimension).
    """

    lam: float = 1.0
    hidden_dim: Optional[int] = None

    def __post_init__(self) -> None:
        check_number("lam", self.lam, at_least=0)
        check_number("hidden_dim", self.hidden_dim, at_least=1, integer=True, optional=True)

#: Attribute of ``strategy.model`` that holds the predictor (saved with the model).
PREDICTOR_ATTRIBUTE = "cassle_predictor"


def distillation_predictor(dim: int, hidden_dim: int) -> nn.Sequential:
    """CaSSLe's predictor: ``Linear(dim, hidden) -> BatchNorm -> ReLU -> Linear(hidden, dim)``."""
    return nn.Sequential(nn.Linear(dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, dim))


class CaSSLePlugin(SupervisedPlugin):
    """CaSSLe for :class:`~avalanche_freeze.SelfSupervisedStrategy`.

    The predictor is registered on ``strategy.model`` as ``cassle_predictor`` (so the
    strategy's optimizer trains it and checkpoints save it); call :meth:`attach` before
    restoring a checkpoint into a freshly built strategy (training attaches it anyway).

    Args:
        lam: weight of the distillation term (1.0, as CaSSLe).
        hidden_dim: hidden width of the predictor (default: the projection dimension;
            CaSSLe uses 2048 with 2048-d projections).

    Example:
        >>> from avalanche_freeze.plugins import CaSSLePlugin
        >>> CaSSLePlugin(lam=1.0).lam
        1.0
    """

    def __init__(self, *, lam: float = CaSSLeConfig.lam, hidden_dim: Optional[int] = CaSSLeConfig.hidden_dim) -> None:
        super().__init__()
        CaSSLeConfig(lam=lam, hidden_dim=hidden_dim)
        self.lam = lam
        self.hidden_dim = hidden_dim
        self.frozen_backbone: Optional[nn.Module] = None
        self.frozen_ssl: Optional[nn.Module] = None
        self.last_penalty: Optional[Tensor] = None

    def attach(self, strategy) -> nn.Module:
        """Create the predictor on ``strategy.model`` if it is not there yet; returns it."""
        model = strategy.model
        if not hasattr(model, PREDICTOR_ATTRIBUTE):
            dim = require_self_supervised(strategy, self).ssl_method.projection_dim
            predictor = distillation_predictor(dim, self.hidden_dim or dim).to(strategy.device)
            model.add_module(PREDICTOR_ATTRIBUTE, predictor)
        return getattr(model, PREDICTOR_ATTRIBUTE)

    def before_training(self, strategy, **kwargs):
        # before Avalanche's make_optimizer, so the predictor's parameters join the optimizer
        self.attach(strategy)

    def before_training_exp(self, strategy, **kwargs):
        # the model at the start of task t is the model at the end of task t - 1
        if strategy.clock.train_exp_counter == 0:
            self.frozen_backbone = self.frozen_ssl = None
            return
        self.frozen_backbone = self._frozen_copy(strategy.backbone)
        self.frozen_ssl = self._frozen_copy(strategy.ssl_method)

    @staticmethod
    def _frozen_copy(module: nn.Module) -> nn.Module:
        clone = copy.deepcopy(module).eval()
        for p in clone.parameters():
            p.requires_grad_(False)
        return clone

    def distillation_loss(self, strategy) -> Tensor:
        """``0.5 * (L(g(z1), zbar1) + L(g(z2), zbar2))`` for the current iteration."""
        assert self.frozen_backbone is not None and self.frozen_ssl is not None
        views, output = strategy.mb_views, strategy.ssl_output
        predictor = getattr(strategy.model, PREDICTOR_ATTRIBUTE)
        with torch.no_grad():
            targets = [self.frozen_ssl.project(self.frozen_backbone(v)) for v in views]
        ssl = strategy.ssl_method
        return 0.5 * sum(ssl.pair_loss(predictor(z), t) for z, t in zip(output.projections, targets))

    def before_backward(self, strategy, **kwargs):
        self.last_penalty = None
        if self.frozen_backbone is None or self.lam == 0:
            return
        self.last_penalty = self.lam * self.distillation_loss(strategy)
        strategy.loss = strategy.loss + self.last_penalty

    def after_training_exp(self, strategy, **kwargs):
        self.frozen_backbone = self.frozen_ssl = None  # free the copy between tasks
