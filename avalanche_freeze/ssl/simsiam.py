"""SimSiam (Chen & He, CVPR 2021), as configured by LUMP for CIFAR."""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import ProjectionHead, SimSiamPredictionHead
from torch import Tensor, nn

from .base import SSLMethod, SSLOutput

__all__ = ["SimSiam"]


class SimSiam(SSLMethod):
    """SimSiam: symmetric negative cosine between predictions and stop-gradient projections.

    ``loss = 0.5 * (D(p1, sg(z2)) + D(p2, sg(z1)))`` with ``D(p, z) = -cos(p, z)``.

    Args:
        feature_dim: backbone feature dimension.
        proj_dim: width of the 2-layer projector (hidden and output), 2048 in LUMP.
        pred_dim: bottleneck of the predictor, 512 in LUMP.
        backbone: unused (every method takes it).

    Example:
        >>> import torch
        >>> m = SimSiam(feature_dim=8, proj_dim=16, pred_dim=4)
        >>> out = m.loss_from_features(torch.randn(4, 8), torch.randn(4, 8), view1=None, view2=None)
        >>> bool(-1 <= out.loss <= 1)
        True
    """

    name = "simsiam"

    def __init__(
        self,
        *,
        feature_dim: int,
        proj_dim: int = 2048,
        pred_dim: int = 512,
        backbone: Optional[nn.Module] = None,
    ) -> None:
        super().__init__(feature_dim=feature_dim, projection_dim=proj_dim)
        self.projector = ProjectionHead(
            [
                (feature_dim, proj_dim, nn.BatchNorm1d(proj_dim), nn.ReLU()),
                (proj_dim, proj_dim, nn.BatchNorm1d(proj_dim), None),
            ]
        )
        self.predictor = SimSiamPredictionHead(proj_dim, pred_dim, proj_dim)
        self.criterion = NegativeCosineSimilarity()

    def loss_from_features(self, f1, f2, *, view1, view2) -> SSLOutput:
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * (self.ssl_loss(p1, z2.detach()) + self.ssl_loss(p2, z1.detach()))
        return SSLOutput(loss=loss, features=(f1, f2), projections=(z1, z2))

    def distillation_loss(self, predicted: Tensor, target: Tensor) -> Tensor:
        """CaSSLe's predictive distiller: ``2 - 2 cos(p, sg(z))``."""
        return 2 - 2 * F.cosine_similarity(predicted, target.detach(), dim=-1).mean()
