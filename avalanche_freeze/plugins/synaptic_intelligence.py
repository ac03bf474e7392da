"""Synaptic Intelligence on the self-supervised loss (Zenke, Poole & Ganguli, "Continual
Learning Through Synaptic Intelligence", ICML 2017), as LUMP's SI baseline.

Each parameter ``k`` of the backbone collects, while a task trains, the path integral of
its contribution to the decrease of the SSL loss, ``omega_k += -g_k * delta_k`` per optimizer
step (``g_k`` the gradient of the SSL loss alone, without the SI penalty, as in the paper;
``delta_k`` the change the step made). At the
end of the task its importance grows by ``Omega_k += max(0, omega_k / (Delta_k^2 + xi))``
(``Delta_k``: the parameter's change over the whole task), the anchor ``theta*_k`` moves
to the current value and ``omega`` restarts. From the second task on the loss gets the
penalty ``c * sum_k Omega_k * (theta_k - theta*_k)^2``.

As LUMP's reference code (UCL, current version): the penalty is added, importances
accumulate over tasks, ``c = 0.4`` and ``xi = 1``, and every gradient of the model is clipped
to ``[-1, 1]`` before the optimizer step. Different on purpose: the path integral uses the
actual parameter change (exact for SGD with momentum) and the SSL loss's own gradient, where
the reference uses ``lr * g^2`` with the gradient of the penalised loss.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from ..protocols import SelfSupervisedState
from ..validation import build_section
from .config import SIConfig

__all__ = ["SIPlugin"]


def _regularised_module(strategy) -> nn.Module:
    """The backbone of a self-supervised strategy, or the whole model of another strategy."""
    return strategy.backbone if isinstance(strategy, SelfSupervisedState) else strategy.model


# not under torchrun: path integrals would be accumulated per process
class SIPlugin(SupervisedPlugin, supports_distributed=False):
    """Synaptic Intelligence for :class:`~avalanche_freeze.SelfSupervisedStrategy` (and other templates).

    Regularises the backbone only (the heads are re-learned freely, as in LUMP's SI).
    Parameters without a gradient in a step (a frozen prefix) collect no importance
    and are not penalised.

    Args:
        config: the options (:class:`~avalanche_freeze.plugins.config.SIConfig`: ``c``, ``xi``, ``clip_value``;
            its defaults when omitted), or give them as keywords (``c=1.0``), one or the other.

    Example:
        >>> from avalanche_freeze.plugins import SIPlugin
        >>> plugin = SIPlugin(c=1.0, xi=1.0)
        >>> plugin.importance
        {}
    """

    def __init__(self, config: Optional[SIConfig] = None, **options: Any) -> None:
        super().__init__()
        #: The plugin's options.
        self.config: SIConfig = build_section(SIConfig, config, options, owner=type(self).__name__)
        #: Omega per parameter name (accumulated over finished tasks).
        self.importance: Dict[str, Tensor] = {}
        #: theta* per parameter name: the values at the end of the last finished task, which
        #: are also the start of the task in progress (set at its start, so task 1 has one too).
        self.anchor: Dict[str, Tensor] = {}
        #: omega per parameter name (path integral over the task in progress).
        self.path_integral: Dict[str, Tensor] = {}
        self._before_step: Dict[str, Tensor] = {}
        self._grads: Dict[str, Tensor] = {}
        self.last_penalty: Optional[Tensor] = None

    # ------------------------------------------------------------- penalty
    def penalty(self, module: nn.Module) -> Optional[Tensor]:
        """``c * sum_k Omega_k (theta_k - theta*_k)^2`` over trainable parameters (None before task 2)."""
        if not self.importance:
            return None
        total: Optional[Tensor] = None
        for name, p in module.named_parameters():
            if not p.requires_grad or name not in self.importance:
                continue
            omega = self.importance[name].to(p.device)
            term = (omega * (p - self.anchor[name].to(p.device)) ** 2).sum()
            total = term if total is None else total + term
        return None if total is None else self.config.c * total

    # ----------------------------------------------------------- callbacks
    def before_training_exp(self, strategy, **kwargs):
        module = _regularised_module(strategy)
        self.anchor = {n: p.detach().clone() for n, p in module.named_parameters()}
        self.path_integral = {n: torch.zeros_like(p) for n, p in self.anchor.items()}

    def before_backward(self, strategy, **kwargs):
        self.last_penalty = self.penalty(_regularised_module(strategy))
        if self.last_penalty is not None:
            strategy.loss = strategy.loss + self.last_penalty

    @torch.no_grad()
    def before_update(self, strategy, **kwargs):
        self._before_step, self._grads = {}, {}
        for name, p in _regularised_module(strategy).named_parameters():
            if p.grad is not None and p.requires_grad:
                self._before_step[name] = p.detach().clone()
                grad = p.grad.detach().clone()
                if self.importance and name in self.importance:  # remove the penalty's 2 c Omega (theta - theta*)
                    grad -= 2 * self.config.c * self.importance[name].to(p.device) * (p - self.anchor[name].to(p.device))
                self._grads[name] = grad
        if self.config.clip_value is not None:
            torch.nn.utils.clip_grad_value_([p for p in strategy.model.parameters() if p.grad is not None],
                                            self.config.clip_value)

    @torch.no_grad()
    def after_update(self, strategy, **kwargs):
        params = dict(_regularised_module(strategy).named_parameters())
        for name, grad in self._grads.items():
            self.path_integral[name] -= grad * (params[name] - self._before_step[name])
        self._before_step, self._grads = {}, {}

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs):
        for name, p in _regularised_module(strategy).named_parameters():
            change = p.detach() - self.anchor[name]
            gained = (self.path_integral[name] / (change**2 + self.config.xi)).clamp_min(0)
            self.importance[name] = self.importance[name] + gained if name in self.importance else gained
            self.anchor[name] = p.detach().clone()
        self.path_integral = {}

    # --------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Importances and anchors (on the CPU); the path integral is empty between tasks."""
        return {
            "importance": {k: v.cpu() for k, v in self.importance.items()},
            "anchor": {k: v.cpu() for k, v in self.anchor.items()},
        }

    def load_state_dict(self, state: dict, *, device=None, backbone=None) -> None:
        self.importance = {k: v.to(device or "cpu") for k, v in state["importance"].items()}
        self.anchor = {k: v.to(device or "cpu") for k, v in state["anchor"].items()}
