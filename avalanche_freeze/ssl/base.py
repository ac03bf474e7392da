"""The interface every self-supervised method implements, and the method registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from torch import Tensor, nn

__all__ = [
    "SSLMethod",
    "SSLOutput",
    "available_ssl_methods",
    "create_ssl_method",
    "register_ssl_method",
]


@dataclass
class SSLOutput:
    """What one self-supervised forward pass produces.

    Attributes:
        loss: the method's loss on the pair of views (a scalar).
        features: backbone features of the two views ``(f1, f2)``.
        projections: projector outputs of the two views ``(z1, z2)``.
    """

    loss: Tensor
    features: tuple
    projections: tuple


class SSLMethod(nn.Module):
    """A self-supervised method: heads on top of a backbone, and a loss on two views.

    Subclasses implement :meth:`loss_from_features` and :meth:`pair_loss`;
    methods with extra state (BYOL's momentum encoder) also override
    :meth:`after_update`, called after every optimizer step.

    Args:
        feature_dim: dimension of the backbone's pooled features.
    """

    name: str = "base"

    def __init__(self, *, feature_dim: int) -> None:
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"feature_dim={feature_dim} must be >= 1")
        self.feature_dim = feature_dim

    def forward(self, backbone: nn.Module, view1: Tensor, view2: Tensor) -> SSLOutput:  # type: ignore[override]
        """Run the backbone on both views and compute the loss."""
        f1, f2 = backbone(view1), backbone(view2)
        return self.loss_from_features(f1, f2, view1=view1, view2=view2)

    def loss_from_features(
        self, f1: Tensor, f2: Tensor, *, view1: Tensor, view2: Tensor
    ) -> SSLOutput:
        """Compute the loss from the backbone features of the two views."""
        raise NotImplementedError

    def project(self, features: Tensor) -> Tensor:
        """Projector output for backbone ``features`` (used by distillation plugins)."""
        return self.projector(features)  # type: ignore[attr-defined]

    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        """The method's own loss between two batches of projections.

        Used as the distillation term by CaSSLe (``a`` = predicted, ``b`` = frozen target).
        """
        raise NotImplementedError

    @property
    def projection_dim(self) -> int:
        """Output dimension of :meth:`project`."""
        raise NotImplementedError

    def after_update(self, backbone: nn.Module) -> None:
        """Hook called after each optimizer step (momentum updates)."""


_REGISTRY: Dict[str, Callable[..., SSLMethod]] = {}


def register_ssl_method(name: str, factory: Callable[..., SSLMethod]) -> None:
    """Register a method under ``name`` (a class or a function returning an SSLMethod).

    The factory is called as ``factory(feature_dim=..., backbone=..., **options)``.

    Example:
        >>> from avalanche_freeze.ssl import SimSiam
        >>> register_ssl_method("my_simsiam", lambda **kw: SimSiam(proj_dim=64, pred_dim=16, **kw))
        >>> "my_simsiam" in available_ssl_methods()
        True
    """
    _REGISTRY[name.lower()] = factory


def available_ssl_methods() -> List[str]:
    """Names accepted by :func:`create_ssl_method`."""
    return sorted(_REGISTRY)


def create_ssl_method(
    name: str, *, feature_dim: int, backbone: Optional[nn.Module] = None, **options
) -> SSLMethod:
    """Build a registered method by name.

    Raises:
        ValueError: unknown name (the message lists the accepted ones).
    """
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown ssl method {name!r}; accepted: {', '.join(available_ssl_methods())}"
        )
    return _REGISTRY[key](feature_dim=feature_dim, backbone=backbone, **options)
