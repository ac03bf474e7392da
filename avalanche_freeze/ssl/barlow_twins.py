"""Barlow Twins (Zbontar et al., ICML 2021), as configured by LUMP for CIFAR."""

from __future__ import annotations

from typing import Optional

from lightly.loss import BarlowTwinsLoss
from lightly.models.modules.heads import ProjectionHead
from torch import nn

from .base import SSLMethod

__all__ = ["BarlowTwins"]


class BarlowTwins(SSLMethod):
    """Barlow Twins: push the cross-correlation of the two views' projections to identity.

    With ``c`` the cross-correlation of the batch-standardised projections,
    ``loss = sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2``.

    Args:
        feature_dim: backbone feature dimension.
        proj_dim: width of the 2-layer projector, 2048 in LUMP.
        lambda_offdiag: weight of the redundancy term, 5e-3.
        pred_dim, backbone: unused (every method takes them).

    Example:
        >>> import torch
        >>> m = BarlowTwins(feature_dim=8, proj_dim=16)
        >>> f = torch.randn(6, 8)
        >>> float(m.loss_from_features(f, f, view1=None, view2=None).loss) >= 0
        True
    """

    name = "barlowtwins"
    global_batch = True

    def __init__(
        self,
        *,
        feature_dim: int,
        proj_dim: int = 2048,
        lambda_offdiag: float = 5e-3,
        pred_dim: Optional[int] = None,
        backbone: Optional[nn.Module] = None,
    ) -> None:
        super().__init__(feature_dim=feature_dim, projection_dim=proj_dim)
        self.projector = ProjectionHead(
            [
                (feature_dim, proj_dim, nn.BatchNorm1d(proj_dim), nn.ReLU()),
                (proj_dim, proj_dim, None, None),
            ]
        )
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_offdiag)
