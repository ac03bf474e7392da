"""BYOL (Grill et al., NeurIPS 2020)."""

from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor, nn

from .base import SSLMethod, SSLOutput

__all__ = ["BYOL"]


class BYOL(SSLMethod):
    """BYOL: online predictions regress a momentum (EMA) target network's projections.

    ``loss = 0.5 * (D(q1, sg(z'2)) + D(q2, sg(z'1)))`` with ``D = -cos`` and ``z'`` the
    target network's projections; after every step ``target = m * target + (1 - m) * online``.

    Args:
        feature_dim: backbone feature dimension.
        backbone: the online backbone; a copy of it becomes the momentum target.
        proj_dim: hidden width of projector and predictor.
        out_dim: projection dimension (256).
        momentum: EMA coefficient ``m`` (0.99).
        pred_dim: unused (the predictor's hidden width is ``proj_dim``, as in BYOL).

    Example:
        >>> import torch
        >>> from avalanche_freeze.backbones import CifarResNet18
        >>> net = CifarResNet18(width=0.125, in_channels=1)
        >>> m = BYOL(feature_dim=net.feature_dim, backbone=net, proj_dim=16, out_dim=8)
        >>> out = m(net, torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8))
        >>> out.loss.shape
        torch.Size([])
    """

    name = "byol"

    def __init__(
        self,
        *,
        feature_dim: int,
        backbone: Optional[nn.Module] = None,
        proj_dim: int = 2048,
        out_dim: int = 256,
        momentum: float = 0.99,
        pred_dim: Optional[int] = None,
    ) -> None:
        super().__init__(feature_dim=feature_dim, projection_dim=out_dim)
        if backbone is None:
            raise ValueError("BYOL needs the backbone (backbone=...) to build its momentum target")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum} must be in [0, 1)")
        self.projector = BYOLProjectionHead(feature_dim, proj_dim, out_dim)
        self.predictor = BYOLPredictionHead(out_dim, proj_dim, out_dim)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projector = copy.deepcopy(self.projector)
        deactivate_requires_grad(self.target_backbone)
        deactivate_requires_grad(self.target_projector)
        self.criterion = NegativeCosineSimilarity()
        self.momentum = momentum

    def loss_from_features(self, f1, f2, *, view1, view2) -> SSLOutput:
        z1, z2 = self.projector(f1), self.projector(f2)
        q1, q2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(view1))
            t2 = self.target_projector(self.target_backbone(view2))
        loss = 0.5 * (self.ssl_loss(q1, t2) + self.ssl_loss(q2, t1))
        return SSLOutput(loss=loss, features=(f1, f2), projections=(z1, z2))

    @torch.no_grad()
    def after_update(self, backbone: nn.Module) -> None:
        update_momentum(backbone, self.target_backbone, m=self.momentum)
        update_momentum(self.projector, self.target_projector, m=self.momentum)

    def distillation_loss(self, predicted: Tensor, target: Tensor) -> Tensor:
        """CaSSLe's predictive distiller: ``2 - 2 cos(p, sg(z))``."""
        return 2 - 2 * F.cosine_similarity(predicted, target.detach(), dim=-1).mean()
