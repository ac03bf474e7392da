"""CaSSLe: self-supervised continual learning by predictive distillation (Fini et al.,
"Self-Supervised Models are Continual Learners", CVPR 2022).

From the second task on, a frozen copy of the model as it was at the end of the previous
task (backbone and projector) gives target projections ``zbar`` of both views, and a
trainable predictor ``g`` maps the current projections ``z`` onto them:

    ``loss += lam * 0.5 * (D(g(z1), zbar1) + D(g(z2), zbar2))``

where ``D`` is :meth:`~avalanche_freeze.ssl.SSLMethod.distillation_loss`, the loss of the
method's distiller in CaSSLe's reference code: ``2 - 2 cos`` for SimSiam and BYOL, the mean
squared error for VICReg, the method's own loss for Barlow Twins; for SimCLR the NT-Xent loss
between predicted and frozen projections (the reference uses a dedicated contrastive
distiller there). As in the reference, the frozen copy runs without autograd but in training
mode: its BatchNorm layers normalise with the batch's statistics.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Type

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from ..protocols import require_self_supervised
from ..validation import build_section
from .config import CaSSLeConfig, PFRConfig

__all__ = ["CaSSLePlugin", "PFRPlugin", "distillation_predictor"]


#: Attribute of ``strategy.model`` that holds CaSSLe's predictor (saved with the model).
PREDICTOR_ATTRIBUTE = "cassle_predictor"


def distillation_predictor(dim: int, hidden_dim: int) -> nn.Sequential:
    """CaSSLe's predictor: ``Linear(dim, hidden) -> BatchNorm -> ReLU -> Linear(hidden, dim)``."""
    return nn.Sequential(nn.Linear(dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, dim))


# not under torchrun: its predictor joins the model after DistributedDataParallel wrapped it, so
# its gradients would not be synchronised
class CaSSLePlugin(SupervisedPlugin, supports_distributed=False):
    """CaSSLe for :class:`~avalanche_freeze.SelfSupervisedStrategy`.

    The predictor is registered on ``strategy.model`` as ``cassle_predictor`` (so the
    strategy's optimizer trains it and checkpoints save it); call :meth:`attach` before
    restoring a checkpoint into a freshly built strategy (training attaches it anyway).

    Args:
        config: the options (:class:`~avalanche_freeze.plugins.config.CaSSLeConfig`: ``lam``, the weight of
            the distillation term, and ``hidden_dim``, the predictor's hidden width, by default the
            projection dimension; CaSSLe uses 2048 with 2048-d projections), or give them as keywords
            (``lam=0.5``), one or the other.

    Example:
        >>> from avalanche_freeze.plugins import CaSSLePlugin
        >>> CaSSLePlugin(lam=1.0).config.lam
        1.0
    """

    #: Attribute of ``strategy.model`` that holds the predictor (saved with the model).
    predictor_attribute = PREDICTOR_ATTRIBUTE
    #: Whether the frozen copy normalises with batch statistics (training mode) or running ones.
    teacher_in_training_mode = True

    #: The dataclass of the plugin's options.
    config_class: Type[Any] = CaSSLeConfig

    def __init__(self, config: Optional[Any] = None, **options: Any) -> None:
        super().__init__()
        #: The plugin's options.
        self.config = build_section(self.config_class, config, options, owner=type(self).__name__)
        self.frozen_backbone: Optional[nn.Module] = None
        self.frozen_ssl: Optional[nn.Module] = None
        self.last_penalty: Optional[Tensor] = None

    def _predictor_dim(self, strategy) -> int:
        """Dimension of what the predictor maps (here: projections)."""
        return require_self_supervised(strategy, self).ssl_method.projection_dim

    def attach(self, strategy) -> nn.Module:
        """Create the predictor on ``strategy.model`` if it is not there yet; returns it."""
        model = strategy.model
        if not hasattr(model, self.predictor_attribute):
            dim = self._predictor_dim(strategy)
            predictor = distillation_predictor(dim, self.config.hidden_dim or dim).to(strategy.device)
            model.add_module(self.predictor_attribute, predictor)
        return getattr(model, self.predictor_attribute)

    def before_training(self, strategy, **kwargs):
        require_self_supervised(strategy, self)  # refused before any iteration
        # before Avalanche's make_optimizer, so the predictor's parameters join the optimizer
        self.attach(strategy)

    def before_training_exp(self, strategy, **kwargs):
        # the model at the start of task t is the model at the end of task t - 1
        if strategy.clock.train_exp_counter == 0:
            self.frozen_backbone = self.frozen_ssl = None
            return
        self.frozen_backbone = self._frozen_copy(strategy.backbone)
        self.frozen_ssl = self._frozen_copy(strategy.ssl_method)

    def _frozen_copy(self, module: nn.Module) -> nn.Module:
        clone = copy.deepcopy(module).train(self.teacher_in_training_mode)
        for p in clone.parameters():
            p.requires_grad_(False)
        return clone

    def _pairs(self, strategy):
        """(current representation, frozen model's target) per view: projections here."""
        with torch.no_grad():
            targets = [self.frozen_ssl.project(self.frozen_backbone(v)) for v in strategy.mb_views]
        return zip(strategy.ssl_output.projections, targets)

    def _loss(self, strategy, predicted: Tensor, target: Tensor) -> Tensor:
        return strategy.ssl_method.distillation_loss(predicted, target)

    def distillation_loss(self, strategy) -> Tensor:
        """``0.5 * (D(g(z1), zbar1) + D(g(z2), zbar2))`` for the current iteration."""
        assert self.frozen_backbone is not None and self.frozen_ssl is not None
        predictor = getattr(strategy.model, self.predictor_attribute)
        return 0.5 * sum(self._loss(strategy, predictor(z), t) for z, t in self._pairs(strategy))

    def before_backward(self, strategy, **kwargs):
        self.last_penalty = None
        if self.frozen_backbone is None or self.config.lam == 0:
            return
        self.last_penalty = self.config.lam * self.distillation_loss(strategy)
        strategy.loss = strategy.loss + self.last_penalty

    def after_training_exp(self, strategy, **kwargs):
        self.frozen_backbone = self.frozen_ssl = None  # free the copy between tasks


class PFRPlugin(CaSSLePlugin, supports_distributed=False):
    """Projected functional regularisation (Gomez-Villa et al., "Continually Learning
    Self-Supervised Representations with Projected Functional Regularization", CVPRW 2022).

    From the second task on, a trainable temporal projector ``p`` maps the current backbone
    features ``h`` of each view to those of the frozen end-of-previous-task backbone
    ``hbar`` (in eval mode, without autograd), and the loss gets
    ``lam * 0.5 * sum over views of -cos(p(h), hbar)``. It is CaSSLe's scheme on backbone
    features with a cosine loss, without the SSL heads in the teacher.

    Args:
        config: the options (:class:`~avalanche_freeze.plugins.config.PFRConfig`: ``lam``, the weight of the
            term, and ``hidden_dim``, the projector's hidden width, by default the feature dimension), or
            give them as keywords, one or the other.

    Example:
        >>> from avalanche_freeze.plugins import PFRPlugin
        >>> PFRPlugin(lam=1.0).predictor_attribute
        'pfr_predictor'
    """

    predictor_attribute = "pfr_predictor"
    teacher_in_training_mode = False
    config_class = PFRConfig

    def _predictor_dim(self, strategy) -> int:
        return require_self_supervised(strategy, self).ssl_method.feature_dim

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        self.frozen_ssl = None if self.frozen_backbone is None else nn.Identity()  # the heads are not needed

    def _pairs(self, strategy):
        with torch.no_grad():
            targets = [self.frozen_backbone(v) for v in strategy.mb_views]
        return zip(strategy.ssl_output.features, targets)

    def _loss(self, strategy, predicted: Tensor, target: Tensor) -> Tensor:
        return -F.cosine_similarity(predicted, target.detach(), dim=-1).mean()
