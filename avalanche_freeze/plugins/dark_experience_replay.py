"""Dark Experience Replay on backbone features (Buzzega et al., "Dark Experience for General
Continual Learning: a Strong, Simple Baseline", NeurIPS 2020), as LUMP's DER baseline.

Labels and logits do not exist in self-supervised training, so the "dark knowledge"
replayed is the backbone's feature vector: a reservoir buffer keeps raw images with
the features the backbone gave their first view when they were seen. Every iteration
with a non-empty buffer adds

    ``alpha * mean((backbone(T(buffer_raw)) - buffer_features)^2)``

to the loss, with ``T`` LUMP's buffer transform (random resized crop 0.08-1, flip, normalise).
The buffer is offered every batch after every iteration (reservoir sampling over the whole stream).
"""

from __future__ import annotations

from typing import Any, Optional

import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor

from ..protocols import require_self_supervised
from ..validation import build_section
from .config import DERConfig
from .lump import LUMPPlugin
from .reservoir import ReservoirBuffer

__all__ = ["DERPlugin"]


# not under torchrun: its extra forward of the buffer bypasses DistributedDataParallel
class DERPlugin(SupervisedPlugin, supports_distributed=False):
    """DER for :class:`~avalanche_freeze.SelfSupervisedStrategy`.

    Args:
        config: the options (:class:`~avalanche_freeze.plugins.config.DERConfig`: ``mem_size``, ``alpha``;
            its defaults when omitted), or give them as keywords (``alpha=0.2``), one or the other.
        seed: seed of the buffer's sampling (default: drawn from torch's global RNG).

    Example:
        >>> from avalanche_freeze.plugins import DERPlugin
        >>> DERPlugin(mem_size=256, alpha=0.4, seed=0).buffer.capacity
        256
    """

    def __init__(self, config: Optional[DERConfig] = None, *, seed: Optional[int] = None, **options: Any) -> None:
        super().__init__()
        #: The plugin's options.
        self.config: DERConfig = build_section(DERConfig, config, options, owner=type(self).__name__)
        self.buffer = ReservoirBuffer(capacity=self.config.mem_size, seed=seed)
        #: The last replayed inputs (after ``T``), their stored features and the added term.
        self.last_replay_inputs: Optional[Tensor] = None
        self.last_replay_targets: Optional[Tensor] = None
        self.last_penalty: Optional[Tensor] = None
        self._features: Optional[Tensor] = None

    def before_training(self, strategy, **kwargs):
        require_self_supervised(strategy, self)  # refused before any iteration
        if any(isinstance(p, LUMPPlugin) for p in strategy.plugins):
            raise ValueError("DERPlugin cannot be combined with LUMPPlugin: DER would store features of LUMP's "
                             "mixed views under unmixed images; use one of the two baselines")

    def after_forward(self, strategy, **kwargs):
        output = require_self_supervised(strategy, self).ssl_output
        assert output is not None
        self._features = output.features[0].detach()

    def before_backward(self, strategy, **kwargs):
        self.last_replay_inputs = self.last_replay_targets = self.last_penalty = None
        if len(self.buffer) < 2:  # BatchNorm needs two samples
            return
        raw, stored = self.buffer.sample(strategy.train_mb_size)
        inputs = strategy.augmentation.light(raw)
        self.last_penalty = self.config.alpha * F.mse_loss(strategy.backbone(inputs), stored)
        self.last_replay_inputs, self.last_replay_targets = inputs, stored
        strategy.loss = strategy.loss + self.last_penalty

    def after_training_iteration(self, strategy, **kwargs):
        assert self._features is not None
        self.buffer.add(strategy.mb_x, self._features)  # features of the batch's first view
        self._features = None

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict, *, device=None, backbone=None) -> None:
        self.buffer.load_state_dict(state["buffer"], device=device)
