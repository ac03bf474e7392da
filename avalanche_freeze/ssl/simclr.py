"""SimCLR (Chen et al., ICML 2020)."""

from __future__ import annotations

from typing import Optional

from lightly.loss import NTXentLoss
from lightly.models.modules.heads import SimCLRProjectionHead
from torch import Tensor, nn

from .base import SSLMethod, SSLOutput

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
        backbone: unused.

    Example:
        >>> import torch
        >>> m = SimCLR(feature_dim=8, proj_dim=16, out_dim=4)
        >>> float(m.loss_from_features(torch.randn(4, 8), torch.randn(4, 8), view1=None, view2=None).loss) > 0
        True
    """

    name = "simclr"

    def __init__(
        self,
        *,
        feature_dim: int,
        proj_dim: int = 2048,
        out_dim: int = 128,
        temperature: float = 0.5,
        backbone: Optional[nn.Module] = None,
    ) -> None:
        super().__init__(feature_dim=feature_dim)
        self.projector = SimCLRProjectionHead(feature_dim, proj_dim, out_dim)
        self.criterion = NTXentLoss(temperature=temperature)
        self._out_dim = out_dim

    @property
    def projection_dim(self) -> int:
        return self._out_dim

    def loss_from_features(self, f1, f2, *, view1, view2) -> SSLOutput:
        z1, z2 = self.projector(f1), self.projector(f2)
        return SSLOutput(loss=self.criterion(z1, z2), features=(f1, f2), projections=(z1, z2))

    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        return self.criterion(a, b.detach())
