"""What plugins may read or replace on a self-supervised strategy.

Plugins of this package that need more than Avalanche's own strategy attributes declare
it through :class:`SelfSupervisedState`: the attributes of one training iteration of
:class:`~avalanche_freeze.SelfSupervisedStrategy` that plugins read (``backbone``,
``ssl_method``, ``augmentation``, ``ssl_output``) or replace (``mb_views``, before the
forward pass; ``loss``, before the backward pass). Any strategy that provides them works
with those plugins; the check is a runtime ``isinstance`` against this protocol, not a
probe of single attributes.

Stateful plugins implement :class:`StatefulPlugin`, the one protocol checkpoints use to
save and restore a plugin together with its effects on the strategy.

Example:
    >>> from types import SimpleNamespace
    >>> isinstance(SimpleNamespace(mb_x=None), SelfSupervisedState)
    False
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Union, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .augmentations import TwoViewAugmentation
    from .ssl import SSLMethod, SSLOutput

__all__ = ["ModelExtension", "SelfSupervisedState", "StatefulPlugin", "require_self_supervised"]

#: Names the annotations of :class:`SelfSupervisedState` refer to, for listing its attributes.
_HINTS = {"SSLOutput": Any, "TwoViewAugmentation": Any, "SSLMethod": Any}


@runtime_checkable
class SelfSupervisedState(Protocol):
    """The strategy attributes of one self-supervised training iteration.

    Besides Avalanche's own (``mb_x``: the raw images in ``[0, 1]``, ``loss``, ``device``,
    ``train_mb_size``, ``optimizer``, ``clock``), plugins use:

    Attributes:
        mb_views: the two views the SSL loss will see; plugins may replace them in
            ``before_forward`` (LUMP mixes them with its buffer).
        ssl_output: the SSL forward's output (loss, features, projections), set in ``forward``.
        augmentation: the two-view augmentation (``light`` and ``normalize`` too).
        backbone: the backbone being trained.
        ssl_method: the SSL heads and loss.
    """

    mb_views: Optional[List[Tensor]]
    ssl_output: Optional["SSLOutput"]
    augmentation: "TwoViewAugmentation"
    backbone: nn.Module
    ssl_method: "SSLMethod"


@runtime_checkable
class StatefulPlugin(Protocol):
    """A plugin whose state a checkpoint saves and restores.

    ``load_state_dict`` restores the plugin *and its effects* on the strategy (a freezing
    plugin re-applies its frozen prefix; buffers return to ``device``), given the
    freshly built strategy's ``device`` and ``backbone``.
    """

    def state_dict(self) -> Dict[str, Any]:
        ...

    def load_state_dict(self, state: Dict[str, Any], *, device: Union[str, torch.device],
                        backbone: nn.Module) -> None:
        ...


def require_self_supervised(strategy: Any, plugin: Any) -> SelfSupervisedState:
    """``strategy`` if it provides :class:`SelfSupervisedState`; otherwise a ``TypeError`` naming the
    plugin, the strategy and the attributes it lacks. Plugins that need these call it in
    ``before_training``, so a wrong strategy is refused before any iteration.

    Example:
        >>> from avalanche_freeze.plugins import LUMPPlugin
        >>> require_self_supervised(object(), LUMPPlugin())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: LUMPPlugin needs a SelfSupervisedStrategy (...); object lacks mb_views, ssl_output, ...
    """
    if not isinstance(strategy, SelfSupervisedState):
        attributes = list(typing.get_type_hints(SelfSupervisedState, localns=_HINTS))
        missing = [a for a in attributes if not hasattr(strategy, a)]
        raise TypeError(f"{type(plugin).__name__} needs a SelfSupervisedStrategy (or a strategy with "
                        f"{', '.join(attributes)}); {type(strategy).__name__} lacks {', '.join(missing)}")
    return strategy


@runtime_checkable
class ModelExtension(Protocol):
    """A plugin that adds modules to ``strategy.model`` (CaSSLe's predictor).

    ``attach`` creates them if absent; a checkpoint restore calls it before loading the
    model's weights, so the saved weights of the added modules have somewhere to go.
    """

    def attach(self, strategy: Any) -> nn.Module:
        ...
