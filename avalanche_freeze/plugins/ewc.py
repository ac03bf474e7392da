"""Avalanche's own EWC plugin, made label-free: importances from the self-supervised loss.

Avalanche's :class:`~avalanche.training.plugins.EWCPlugin` keeps its penalty
(``lambda * sum_k F_k (theta_k - theta*_k)^2``) unchanged; only its importance pass
needs labels (``criterion(model(x), y)``). :class:`SelfSupervisedEWCPlugin` overrides
that pass to estimate the diagonal empirical Fisher ``F_k = mean over minibatches of
(dL_ssl / dtheta_k)^2`` with the strategy's own SSL loss on two fresh views, so EWC
runs on a :class:`~avalanche_freeze.SelfSupervisedStrategy` without reading a label.

Avalanche's ``LwFPlugin`` does not apply here: it distils the softmax over the output
units of the classes seen so far, which a self-supervised model does not have
(:class:`~avalanche_freeze.plugins.CaSSLePlugin` is the self-supervised analogue).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from avalanche.training.plugins import EWCPlugin
from avalanche.training.utils import ParamData, zerolike_params_dict
from torch.utils.data import DataLoader

from ..protocols import SelfSupervisedState, require_self_supervised
from ..validation import build_section
from .config import EWCConfig

__all__ = ["SelfSupervisedEWCPlugin"]


# not under torchrun: importances would be computed from each process's shard alone
class SelfSupervisedEWCPlugin(EWCPlugin, supports_distributed=False):
    """EWC on the self-supervised loss, for :class:`~avalanche_freeze.SelfSupervisedStrategy`.

    Args:
        config: the options (:class:`~avalanche_freeze.plugins.config.EWCConfig`: ``ewc_lambda``, the penalty
            strength as in Avalanche's ``EWCPlugin``), or ``ewc_lambda=`` as a keyword, one or the other.
        mode, decay_factor, keep_importance_data: as Avalanche's ``EWCPlugin``
            (``separate``: one penalty per previous experience).

    Example:
        >>> from avalanche_freeze.plugins import SelfSupervisedEWCPlugin
        >>> SelfSupervisedEWCPlugin(ewc_lambda=10.0).config.ewc_lambda
        10.0
    """

    def __init__(self, config: Optional[EWCConfig] = None, *, mode: str = "separate", decay_factor=None,
                 keep_importance_data: bool = False, **options: Any) -> None:
        section = build_section(EWCConfig, config, options, owner=type(self).__name__)
        super().__init__(section.ewc_lambda, mode=mode, decay_factor=decay_factor,
                         keep_importance_data=keep_importance_data)
        #: The plugin's options (Avalanche's ``EWCPlugin`` keeps ``ewc_lambda`` as an attribute too).
        self.config: EWCConfig = section
        self._strategy = None

    def before_training(self, strategy, **kwargs):
        require_self_supervised(strategy, self)  # refused before any iteration, not after the first task
        super().before_training(strategy, **kwargs)

    def after_training_exp(self, strategy, **kwargs):
        self._strategy = strategy
        try:
            super().after_training_exp(strategy, **kwargs)
        finally:
            self._strategy = None

    def compute_importances(self, model, criterion, optimizer, dataset, device, batch_size,
                            num_workers=0) -> Dict[str, ParamData]:
        """Avalanche's importance hook: :meth:`ssl_importances` with the strategy being trained."""
        return self.ssl_importances(self._strategy, dataset, batch_size=batch_size, num_workers=num_workers)

    def ssl_importances(self, strategy, dataset, *, batch_size: int, num_workers: int = 0) -> Dict[str, ParamData]:
        """Diagonal empirical Fisher of ``strategy``'s SSL loss over ``dataset`` (labels are not read)."""
        if not isinstance(strategy, SelfSupervisedState):
            raise TypeError("SelfSupervisedEWCPlugin needs a SelfSupervisedStrategy (it uses its augmentation and SSL loss)")
        model, optimizer, device = strategy.model, strategy.optimizer, strategy.device
        importances = zerolike_params_dict(model)
        # a private generator keeps the importance pass off the global RNG's data order
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            generator=torch.Generator(), drop_last=len(dataset) >= batch_size)
        # eval mode: the importance pass must not move BatchNorm running statistics
        was_training = model.training
        model.eval()
        n_batches = 0
        for batch in loader:
            x = batch[0].to(device)
            optimizer.zero_grad()
            loss = model.ssl(model.backbone, *strategy.augmentation(x)).loss
            loss.backward()
            for name, p in model.named_parameters():
                if p.grad is not None:
                    importances[name].data += p.grad.detach().pow(2)
            n_batches += 1
        optimizer.zero_grad()
        model.train(was_training)
        for imp in importances.values():
            imp.data /= float(max(1, n_batches))
        return importances

    # --------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Saved parameters and importances per experience (on the CPU)."""
        def tensors(store):
            return {exp: {k: v.data.cpu() for k, v in d.items()} for exp, d in store.items()}
        return {"saved_params": tensors(self.saved_params), "importances": tensors(self.importances)}

    def load_state_dict(self, state: dict, *, device=None, backbone=None) -> None:
        def params(store, target):
            target.clear()
            for exp, d in store.items():
                target[exp] = {k: ParamData(k, init_tensor=v.to(device or "cpu"), device=device or "cpu")
                               for k, v in d.items()}
        params(state["saved_params"], self.saved_params)
        params(state["importances"], self.importances)
