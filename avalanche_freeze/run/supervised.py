"""Avalanche's stock supervised strategies as references, evaluated with the same probes.

Supervised continual learning is what Avalanche users already run; LUMP's paper compares
self-supervised strategies with it. :func:`build_supervised_strategy` builds one of
Avalanche's own strategy classes (:data:`SUPERVISED_STRATEGIES`: ``Naive``, ``Replay``,
``EWC``, ``LwF``, ``DER``, named exactly as in :mod:`avalanche.training`) around a
:class:`SupervisedModel`: the project's backbone with a linear classifier over all the
benchmark's classes, trained with cross-entropy on one lightly augmented view (random
resized crop and flip, the augmentation LUMP's buffer uses). The run then evaluates the
*backbone's features* with the kNN / linear probes under both protocols, exactly as it
evaluates a self-supervised backbone, so both kinds of strategy sit in one table
(:class:`~avalanche_freeze.run.experiment.ExperimentRun` does this for ``strategy=Naive`` etc.).

The options live in the ``supervised`` configuration section (:class:`SupervisedConfig`);
the epochs, batch size and schedule are the run's ``train`` section, so a supervised arm has
the self-supervised arms' budget (its learning rate is its own: ``supervised.lr``).

Example:
    >>> from avalanche_freeze import CifarResNet18, TwoViewAugmentation
    >>> augmentation = TwoViewAugmentation(image_size=28, channels=1, mean=(0.29,), std=(0.35,))
    >>> model = SupervisedModel(backbone=CifarResNet18(width=0.125, in_channels=1), num_classes=10,
    ...                         augmentation=augmentation)
    >>> strategy = build_supervised_strategy("Replay", model=model, options=SupervisedConfig(),
    ...                                      train=TrainConfig(epochs=1), evaluator=EvaluationPlugin())
    >>> type(strategy).__name__, model.eval()(torch.rand(2, 1, 28, 28)).shape
    ('Replay', torch.Size([2, 10]))
    >>> # then, per task: strategy.train(experience), and evaluate the backbone with the probes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from avalanche.training import DER, EWC, LwF, Naive, Replay
from avalanche.training.plugins import EvaluationPlugin, LRSchedulerPlugin
from torch import Tensor, nn

from ..augmentations import TwoViewAugmentation
from .checkpoint import restore_training_state, training_state
from .stock_state import STOCK_PLUGINS, buffer_state, load_buffer_state, load_plugin_state, plugin_state
from ..strategy import TrainConfig
from ..validation import check_choice, check_number

__all__ = ["STRATEGY_OPTIONS", "SUPERVISED_STRATEGIES", "SupervisedConfig", "SupervisedModel", "build_supervised_strategy",
           "supervised_state", "restore_supervised_state"]

#: Avalanche's supervised strategies available as references, by their Avalanche class names.
SUPERVISED_STRATEGIES = ("Naive", "Replay", "EWC", "LwF", "DER")
#: The keys of the ``supervised`` section each strategy reads (besides ``lr`` and ``augment``).
STRATEGY_OPTIONS = {"Naive": (), "Replay": ("mem_size",), "EWC": ("ewc_lambda",), "LwF": ("lwf_alpha", "lwf_temperature"),
                    "DER": ("mem_size", "der_alpha", "der_beta")}


@dataclass
class SupervisedConfig:
    """The ``supervised`` configuration section: options of the supervised reference strategies.

    Attributes:
        lr: SGD learning rate (0.01; momentum, weight decay, batch size, epochs and schedule are the
            ``train`` section's). The self-supervised rate (``train.lr``, 0.06) makes EWC and DER
            diverge with momentum 0.9.
        mem_size: replay buffer of ``Replay`` and ``DER`` in images over all tasks (256, LUMP's buffer).
        ewc_lambda: ``EWC``'s penalty weight (1; Avalanche's ``separate`` mode: one penalty per task;
            100 diverged on Split Fashion-MNIST at ``lr`` 0.01).
        lwf_alpha: ``LwF``'s distillation weight (1).
        lwf_temperature: ``LwF``'s distillation temperature (2, Li & Hoiem's value).
        der_alpha: ``DER``'s logit-matching weight (0.1, DER++'s value and Avalanche's default).
        der_beta: ``DER``'s replayed-label weight (0.5, idem).
        augment: train on one lightly augmented view (random resized crop, flip) instead of the plain image (True).
    """

    lr: float = 0.01
    mem_size: int = 256
    ewc_lambda: float = 1.0
    lwf_alpha: float = 1.0
    lwf_temperature: float = 2.0
    der_alpha: float = 0.1
    der_beta: float = 0.5
    augment: bool = True

    def __post_init__(self) -> None:
        check_number("lr", self.lr, above=0)
        check_number("mem_size", self.mem_size, at_least=1, integer=True)
        check_number("ewc_lambda", self.ewc_lambda, at_least=0)
        check_number("lwf_alpha", self.lwf_alpha, at_least=0)
        check_number("lwf_temperature", self.lwf_temperature, above=0)
        check_number("der_alpha", self.der_alpha, at_least=0)
        check_number("der_beta", self.der_beta, at_least=0)


class SupervisedModel(nn.Module):
    """A backbone and a linear classifier over all classes; the input pipeline included.

    Avalanche's strategies feed raw images in ``[0, 1]``; while training, the model
    augments them (one light view) and normalises them, at evaluation it only normalises,
    so replayed buffer images (``Replay``, ``DER``) are augmented like fresh ones.

    Args:
        backbone: the feature extractor (returns ``[B, D]``; ``feature_dim`` attribute or ``feature_dim``).
        num_classes: classes of the whole benchmark (one head, class-incremental).
        augmentation: the benchmark's augmentation (its ``light`` view and ``normalize``).
        feature_dim: the backbone's output size when it has no ``feature_dim`` attribute.
        augment: augment while training (True).
    """

    def __init__(self, *, backbone: nn.Module, num_classes: int, augmentation: TwoViewAugmentation,
                 feature_dim: Optional[int] = None, augment: bool = True) -> None:
        super().__init__()
        dim = feature_dim if feature_dim is not None else getattr(backbone, "feature_dim", None)
        if not isinstance(dim, int):
            raise ValueError("the backbone has no integer feature_dim attribute; pass feature_dim")
        check_number("num_classes", num_classes, at_least=2, integer=True)
        self.backbone = backbone
        self.head = nn.Linear(dim, num_classes)
        self.augmentation = augmentation
        self.augment = augment

    def forward(self, x: Tensor) -> Tensor:
        x = self.augmentation.light(x) if self.training and self.augment else self.augmentation.normalize(x)
        return self.head(self.backbone(x))


def build_supervised_strategy(name: str, *, model: SupervisedModel, options: SupervisedConfig, train: TrainConfig,
                              device: Any = "cpu", eval_mb_size: int = 512,
                              evaluator: Optional[EvaluationPlugin] = None, plugins: Optional[List] = None):
    """One of Avalanche's supervised strategies (:data:`SUPERVISED_STRATEGIES`) on ``model``.

    Args:
        name: the Avalanche class name (``Naive``, ``Replay``, ``EWC``, ``LwF``, ``DER``).
        model: the :class:`SupervisedModel` to train.
        options: the ``supervised`` section (buffer size, penalty weights).
        train: the ``train`` section: SGD momentum, weight decay, batch size, epochs per task,
            and the cosine schedule (reset at every task) when chosen (the learning rate is ``options.lr``).
        device, eval_mb_size, evaluator, plugins: as Avalanche's templates.
    """
    check_choice("strategy", name, SUPERVISED_STRATEGIES)
    optimizer = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    plugins = list(plugins or [])
    if train.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, train.epochs))
        plugins.append(LRSchedulerPlugin(scheduler, reset_scheduler=True, reset_lr=True, step_granularity="epoch"))
    common: Dict[str, Any] = dict(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
                                  train_mb_size=train.batch_size, train_epochs=train.epochs,
                                  eval_mb_size=eval_mb_size, device=device, plugins=plugins)
    if evaluator is not None:
        common["evaluator"] = evaluator
    if name == "Naive":
        return Naive(**common)
    if name == "Replay":
        return Replay(mem_size=options.mem_size, **common)
    if name == "EWC":
        return EWC(ewc_lambda=options.ewc_lambda, **common)
    if name == "LwF":
        return LwF(alpha=options.lwf_alpha, temperature=options.lwf_temperature, **common)
    return DER(mem_size=options.mem_size, alpha=options.der_alpha, beta=options.der_beta,
               batch_size_mem=train.batch_size, **common)


def supervised_state(strategy) -> Dict[str, Any]:
    """The state a resumed supervised run needs: the model (head included), the optimizer (its
    momentum carries over from task to task), the training clock and the stock strategy's
    buffers / importances / previous model, as tensors and plain values (:mod:`.stock_state`)."""
    return {
        **training_state(strategy),
        "plugins": [[i, plugin_state(p)] for i, p in enumerate(strategy.plugins) if isinstance(p, STOCK_PLUGINS)],
        # DER keeps its buffer (images and logits) on the strategy
        "storage_policy": buffer_state(strategy.storage_policy) if isinstance(strategy, DER) else None,
    }


def restore_supervised_state(strategy, state: Dict[str, Any]) -> None:
    """Put a :func:`supervised_state` back into a freshly built strategy of the same kind."""
    restore_training_state(strategy, state)  # buffers and penalties are keyed by the clock's task counter
    for index, plugin in state["plugins"]:
        if index >= len(strategy.plugins):
            raise ValueError(f"the checkpoint holds a {plugin['kind']}'s state that this strategy does not have")
        load_plugin_state(strategy.plugins[index], plugin, model=strategy.model, device=strategy.device)
    if state["storage_policy"] is not None:
        load_buffer_state(strategy.storage_policy, state["storage_policy"])
