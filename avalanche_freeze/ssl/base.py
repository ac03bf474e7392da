"""The interface every self-supervised method implements, and the method registry."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..validation import check_choice, check_like_default, check_number, not_accepted

__all__ = [
    "DEFAULT_LR",
    "SSLConfig",
    "gather_batch",
    "SSLMethod",
    "SSLOutput",
    "available_ssl_methods",
    "create_ssl_method",
    "recommended_lr",
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

    A subclass sets ``self.projector`` (backbone features -> projections) and
    ``self.criterion`` (a loss between two batches of projections). By default the loss
    is ``criterion(projector(f1), projector(f2))`` and the distillation loss
    :meth:`pair_loss` is ``criterion(a, sg(b))``; methods with a predictor or a target
    network override :meth:`loss_from_features`, and methods with extra state (BYOL's
    momentum encoder) override :meth:`after_update`, called after every optimizer step.

    Losses are computed in float32 with autocast off (:meth:`ssl_loss`), whatever the training
    precision. A method whose loss depends on the whole batch (``global_batch = True``: batch
    statistics or negatives) computes it, when training distributed, on the projections
    gathered from every process (gradients flow back through the gather), so the loss equals
    the single-process loss on the global batch.

    Every registered method is built as ``factory(feature_dim=..., backbone=...,
    proj_dim=..., pred_dim=..., **options)``; a method ignores what it does not use.

    Args:
        feature_dim: dimension of the backbone's pooled features.
        projection_dim: output dimension of the projector.
    """

    name: str = "base"
    #: whether the loss depends on the whole batch (gathered across processes when distributed)
    global_batch: bool = False
    #: whether the method trains under torchrun (:mod:`~avalanche_freeze.distributed`)
    supports_distributed: bool = True
    #: the learning rate ``train.lr`` takes for this method when it is not set (None:
    #: :data:`DEFAULT_LR`); a method sets its own where it needs one (:func:`recommended_lr`)
    recommended_lr: Optional[float] = None
    projector: nn.Module
    criterion: nn.Module

    def __init__(self, *, feature_dim: int, projection_dim: int) -> None:
        super().__init__()
        check_number("feature_dim", feature_dim, at_least=1, integer=True)
        check_number("projection_dim", projection_dim, at_least=1, integer=True)
        self.feature_dim = feature_dim
        self._projection_dim = projection_dim

    def forward(self, backbone: nn.Module, view1: Tensor, view2: Tensor) -> SSLOutput:  # type: ignore[override]
        """Run the backbone on both views and compute the loss."""
        f1, f2 = backbone(view1), backbone(view2)
        return self.loss_from_features(f1, f2, view1=view1, view2=view2)

    def loss_from_features(
        self, f1: Tensor, f2: Tensor, *, view1: Optional[Tensor], view2: Optional[Tensor]
    ) -> SSLOutput:
        """Compute the loss from the backbone features of the two views (the views themselves
        serve methods with a target network)."""
        z1, z2 = self.projector(f1), self.projector(f2)
        return SSLOutput(loss=self.ssl_loss(z1, z2), features=(f1, f2), projections=(z1, z2))

    def ssl_loss(self, a: Tensor, b: Tensor) -> Tensor:
        """``criterion(a, b)`` in float32 with autocast off; on the global batch (gathered from every
        process) when the method has ``global_batch`` and training is distributed."""
        with torch.autocast(device_type=a.device.type, enabled=False):
            a, b = a.float(), b.float()
            if self.global_batch:
                a, b = gather_batch(a), gather_batch(b)
            return self.criterion(a, b)

    def project(self, features: Tensor) -> Tensor:
        """Projector output for backbone ``features`` (used by distillation plugins)."""
        return self.projector(features)

    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        """The method's own loss between two batches of projections, ``b`` a stop-gradient target.

        Used as the distillation term by CaSSLe (``a`` = predicted, ``b`` = frozen target).
        """
        with torch.autocast(device_type=a.device.type, enabled=False):
            return self.criterion(a.float(), b.detach().float())

    def distillation_loss(self, predicted: Tensor, target: Tensor) -> Tensor:
        """The loss CaSSLe distils with, between predicted and frozen-model projections.

        Defaults to :meth:`pair_loss`; methods whose CaSSLe distiller differs override it
        (the cosine methods use ``2 - 2 cos``, VICReg the mean squared error).
        """
        return self.pair_loss(predicted, target)

    @property
    def projection_dim(self) -> int:
        """Output dimension of :meth:`project`."""
        return self._projection_dim

    def after_update(self, backbone: nn.Module) -> None:
        """Hook called after each optimizer step (momentum updates)."""


def gather_batch(x: Tensor) -> Tensor:
    """``x`` of every process concatenated along the batch (rank order), differentiable: the
    gradient reaching each process's part is the sum over processes of the gradients of their
    losses; ``x`` itself when not distributed.

    With every process computing the same loss on the gathered batch and DistributedDataParallel
    averaging the parameter gradients, the update equals the single-process one on the global batch.

    Example:
        >>> import torch
        >>> gather_batch(torch.ones(2, 3)).shape  # not distributed: unchanged
        torch.Size([2, 3])
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return torch.cat(_GatherWithGradient.apply(x.contiguous()), dim=0)


class _GatherWithGradient(torch.autograd.Function):
    """all_gather forward; backward: the summed gradients of this process's slice."""

    @staticmethod
    def forward(ctx, x: Tensor):  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: Tensor):  # type: ignore[override]
        summed = torch.stack([g.contiguous() for g in grads])
        dist.all_reduce(summed)
        return summed[dist.get_rank()]


_REGISTRY: Dict[str, Callable[..., SSLMethod]] = {}

#: ``train.lr`` for a method that recommends no rate of its own (SGD, momentum 0.9, batch 128).
DEFAULT_LR = 0.06


def recommended_lr(method: Union[str, SSLMethod]) -> float:
    """The learning rate ``train.lr`` defaults to for ``method`` (a registered name or a built
    method): the method's ``recommended_lr`` where it sets one (a class attribute, or an attribute
    of a registered factory function), else :data:`DEFAULT_LR`. An unknown name gets
    :data:`DEFAULT_LR` (the name itself is refused where the method is built).

    Parameters:
        method: a name of :func:`available_ssl_methods` or an :class:`SSLMethod`.

    Example:
        >>> recommended_lr("simsiam")
        0.06
    """
    holder = _REGISTRY.get(method.lower()) if isinstance(method, str) else method
    value = getattr(holder, "recommended_lr", None)
    return DEFAULT_LR if value is None else float(value)


def register_ssl_method(name: str, factory: Callable[..., SSLMethod]) -> None:
    """Register a method under ``name`` (a class or a function returning an SSLMethod).

    The factory is called as ``factory(feature_dim=..., backbone=..., proj_dim=...,
    pred_dim=..., **options)``; once registered, the name is accepted by the ``ssl.name``
    configuration key and ``--set ssl.name=NAME`` on the command line.

    Example:
        >>> from avalanche_freeze.ssl import SimSiam
        >>> def narrow_simsiam(*, feature_dim, backbone=None, proj_dim, pred_dim):
        ...     return SimSiam(feature_dim=feature_dim, proj_dim=proj_dim, pred_dim=max(1, pred_dim // 2))
        >>> register_ssl_method("narrow_simsiam", narrow_simsiam)
        >>> "narrow_simsiam" in available_ssl_methods()
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
        ConfigError: unknown name (the message lists the accepted ones).
    """
    key = name.lower()
    check_choice("ssl", key, available_ssl_methods())
    return _REGISTRY[key](feature_dim=feature_dim, backbone=backbone, **options)


@dataclass
class SSLConfig:
    """The ``ssl`` configuration section: which method, and its head sizes.

    Attributes:
        name: a registered method (:func:`available_ssl_methods`; ``simsiam``).
        proj_dim: projector width (512 for CPU runs; 2048 in LUMP's configuration).
        pred_dim: predictor bottleneck of methods that have one (SimSiam; 128 for CPU runs, 512 in LUMP's).
        options: further keyword options of the method (e.g. ``{"temperature": 0.2}`` for SimCLR).
    """

    name: str = "simsiam"
    proj_dim: int = 512
    pred_dim: int = 128
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("name", self.name.lower(), available_ssl_methods())
        check_number("proj_dim", self.proj_dim, at_least=1, integer=True)
        check_number("pred_dim", self.pred_dim, at_least=1, integer=True)
        params = inspect.signature(_REGISTRY[self.name.lower()]).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            accepted = sorted(set(params) - {"feature_dim", "backbone", "proj_dim", "pred_dim"})
            for option in self.options:
                if option not in accepted:
                    raise not_accepted(f"options.{option}", self.options[option],
                                       f"options of {self.name!r}: {', '.join(accepted) or 'none'}")
                check_like_default(f"options.{option}", self.options[option], params[option].default)

    def build(self, *, feature_dim: int, backbone: Optional[nn.Module] = None) -> SSLMethod:
        """The configured method for a backbone with ``feature_dim`` features."""
        return create_ssl_method(self.name, feature_dim=feature_dim, backbone=backbone, proj_dim=self.proj_dim,
                                 pred_dim=self.pred_dim, **self.options)
