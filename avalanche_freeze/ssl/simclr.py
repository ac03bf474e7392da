"""SimCLR (Chen et al., ICML 2020)."""

from __future__ import annotations

from typing import Optional

from lightly.loss import NTXentLoss
from lightly.models.modules.heads import SimCLRProjectionHead
from torch import nn

from .base import SSLMethod

__all__ = ["SimCLR"]


class SimCLR(SSLMethod):
    """SimCLR: NT-Xent contrastive loss between the two views' projections.

    For a batch of ``N`` pairs, each of the ``2N`` projections has one positive
    (its other view) and ``2N - 2`` negatives; ``loss = mean_i -log softmax_i(positive)``
    over cosine similarities divided by ``temperature``.

    Args:
        feature_dim: backbone feature dimension.
        proj_dim: hidden width of the projector.
        out_dim: output dimension of the projector (128).
        temperature: softmax temperature (0.5).
        pred_dim, backbone: unused (every method takes them).

    Example:
        >>> import torch
        >>> m = SimCLR(feature_dim=8, proj_dim=16, out_dim=4)
        >>> float(m.loss_from_features(torch.randn(4, 8), torch.randn(4, 8), view1=None, view2=None).loss) > 0
        True
    """

    name = "simclr"
    global_batch = True

    def __init__(
        self,
        *,
        feature_dim: int,
        proj_dim: int = 2048,
        out_dim: int = 128,
        temperature: float = 0.5,
        pred_dim: Optional[int] = None,
        backbone: Optional[nn.Module] = None,
    ) -> None:
        super().__init__(feature_dim=feature_dim, projection_dim=out_dim)
        self.projector = SimCLRProjectionHead(feature_dim, proj_dim, out_dim)
        self.criterion = NTXentLoss(temperature=temperature)
