"""LUMP: Lifelong Unsupervised Mixup (Madaan et al., "Representational Continuity for
Unsupervised Continual Learning", ICLR 2022).

Each training iteration with a non-empty buffer draws one ``lambda ~ Beta(alpha, alpha)``
and ``B`` buffer samples (``B`` = batch size, capped by the buffer size, without
replacement), and replaces the two views of the batch with

* ``mixed1 = lambda * view1 + (1 - lambda) * T(buffer_raw)`` (``T``: the reference's random
  resized crop with scale 0.08-1, bicubic, then flip and normalise),
* ``mixed2 = lambda * view2 + (1 - lambda) * buffer_view2``,

so the SSL loss is computed on the mixed pair only (truncated to ``B`` samples
when the buffer holds fewer than the batch). After **every** iteration, from
the first task on, the batch's raw images and their second views are offered
to a reservoir buffer of ``mem_size`` images in total.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from avalanche.core import SupervisedPlugin

from ..distributed import world_size
from ..protocols import require_self_supervised
from ..validation import build_section
from .config import LUMPConfig
from .reservoir import ReservoirBuffer

__all__ = ["LUMPPlugin"]


class LUMPPlugin(SupervisedPlugin, supports_distributed=True):
    """LUMP for :class:`~avalanche_freeze.SelfSupervisedStrategy`.

    Args:
        config: the options (:class:`~avalanche_freeze.plugins.config.LUMPConfig`: ``mem_size``, ``alpha``;
            its defaults when omitted), or give them as keywords (``mem_size=512``), one or the other.
        seed: seed of the buffer and mixup draws (default: drawn from torch's global RNG,
            so a run seeded with ``torch.manual_seed`` is reproducible).

    Under ``torchrun`` with N processes each process keeps a reservoir of ``mem_size // N``
    images of its own shard of the data (``mem_size`` in all) and mixes its part of the batch
    with it.

    Example:
        >>> from avalanche_freeze.plugins import LUMPPlugin
        >>> plugin = LUMPPlugin(mem_size=256, alpha=0.4, seed=0)
        >>> plugin.buffer.capacity
        256
    """

    def __init__(self, config: Optional[LUMPConfig] = None, *, seed: Optional[int] = None, **options: Any) -> None:
        super().__init__()
        #: The plugin's options.
        self.config: LUMPConfig = build_section(LUMPConfig, config, options, owner=type(self).__name__)
        self.buffer = ReservoirBuffer(capacity=self.config.mem_size // world_size(), seed=seed)
        self.rng = np.random.default_rng(self.buffer.seed)
        self.last_lambda: Optional[float] = None
        self._clean_view2: Optional[torch.Tensor] = None

    def before_training(self, strategy, **kwargs):
        require_self_supervised(strategy, self)  # refused before any iteration

    def before_forward(self, strategy, **kwargs):
        views = require_self_supervised(strategy, self).mb_views
        self._clean_view2 = views[1]
        self.last_lambda = None
        if len(self.buffer) < 2:  # BatchNorm needs at least two mixed samples
            return
        lam = float(self.rng.beta(self.config.alpha, self.config.alpha))
        buf_raw, buf_view2 = self.buffer.sample(len(views[0]))
        k = len(buf_raw)
        buf_view1 = strategy.augmentation.light(buf_raw)
        strategy.mb_views = [
            lam * views[0][:k] + (1 - lam) * buf_view1,
            lam * views[1][:k] + (1 - lam) * buf_view2,
        ]
        self.last_lambda = lam

    def after_training_iteration(self, strategy, **kwargs):
        assert self._clean_view2 is not None
        self.buffer.add(strategy.mb_x, self._clean_view2)
        self._clean_view2 = None

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict, *, device=None, backbone=None) -> None:
        self.buffer.load_state_dict(state["buffer"], device=device)
        self.rng.bit_generator.state = state["rng"]
