"""solo-learn pretraining YAML files read as configuration files of this package.

A solo-learn pretraining file (``scripts/pretrain/cifar/*.yaml`` in solo-learn) describes one
method with four sections this package has counterparts for; :func:`from_solo` maps them onto
the ``ssl`` and ``train`` sections:

================================  =====================================================
solo-learn                         here
================================  =====================================================
``method: barlow_twins``           ``ssl.name: solo:barlowtwins`` (solo-learn's own loss and heads)
``method_kwargs.proj_hidden_dim``  ``ssl.proj_dim``
``method_kwargs.pred_hidden_dim``  ``ssl.pred_dim``
other ``method_kwargs``            ``ssl.options`` (e.g. ``proj_output_dim``, ``lamb``, ``scale_loss``)
``momentum.base_tau``              ``ssl.options.base_tau_momentum`` (BYOL, DINO, MoCo v2+)
``optimizer.name: sgd``            the strategy's SGD
``optimizer.lr / weight_decay``    ``train.lr`` / ``train.weight_decay``
``optimizer.batch_size``           ``train.batch_size``
``optimizer.kwargs.momentum``      ``train.momentum``
``backbone.name: resnet18``        the CIFAR ResNet-18 (``model.width`` stays this file's or 0.25)
================================  =====================================================

What would change training but has no counterpart is refused, naming the key (an optimizer
other than SGD such as LARS, a momentum schedule ending anywhere but at its start, a method
option the adapted method does not have, another backbone). The sections that describe a
solo-learn job rather than the method (data paths, augmentations, scheduler, checkpoints,
hardware, logging: :data:`NOT_READ`) and ``optimizer.classifier_lr`` (solo-learn's online
classifier; the probes here are fitted at evaluation) are not read; :func:`from_solo` lists them.

Example:
    >>> solo = {"method": "barlow_twins", "backbone": {"name": "resnet18"},
    ...         "method_kwargs": {"proj_hidden_dim": 2048, "proj_output_dim": 2048, "scale_loss": 0.1},
    ...         "optimizer": {"name": "sgd", "batch_size": 256, "lr": 0.3, "weight_decay": 1e-4}}
    >>> config, not_read = from_solo(solo)
    >>> config["ssl"]
    {'name': 'solo:barlowtwins', 'proj_dim': 2048, 'options': {'proj_output_dim': 2048, 'scale_loss': 0.1}}
    >>> config["train"]
    {'batch_size': 256, 'lr': 0.3, 'weight_decay': 0.0001}
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Tuple

from ..ssl.solo import SOLO_METHODS
from ..validation import ConfigError, not_accepted

__all__ = ["NOT_READ", "SOLO_NAMES", "from_solo", "is_solo_config", "translate"]

#: solo-learn's method names -> this package's ``solo:`` methods.
SOLO_NAMES = {"barlow_twins": "barlowtwins", "byol": "byol", "dino": "dino", "mocov2plus": "mocov2plus",
              "simclr": "simclr", "simsiam": "simsiam", "vicreg": "vicreg"}
#: Top-level sections of a solo-learn file that describe the job, not the method: not read.
NOT_READ = ("defaults", "hydra", "name", "data", "augmentations", "scheduler", "checkpoint", "auto_resume",
            "max_epochs", "devices", "sync_batchnorm", "accelerator", "strategy", "precision", "wandb", "seed",
            "knn_eval", "num_nodes", "dali", "performance", "resume_from_checkpoint", "auto_umap")


def is_solo_config(raw: Dict[str, Any]) -> bool:
    """Whether a configuration file's mapping is a solo-learn pretraining file (top-level ``method``
    and ``method_kwargs``)."""
    return isinstance(raw, dict) and "method" in raw and "method_kwargs" in raw


def _mapping(raw: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise not_accepted(key, value, "a mapping")
    return value


def from_solo(raw: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """This package's configuration (nested ``ssl`` / ``train`` sections) for a solo-learn file's
    mapping, and the keys it did not read; raises :class:`ConfigError` naming the first key
    that would change training and has no counterpart."""
    method = raw.get("method")
    if method not in SOLO_NAMES:
        raise not_accepted("method", method, "solo-learn methods adapted here: " + ", ".join(sorted(SOLO_NAMES)))
    name = SOLO_NAMES[method]
    accepted = SOLO_METHODS[name]
    unknown = sorted(set(raw) - set(NOT_READ) - {"method", "method_kwargs", "momentum", "optimizer", "backbone"})
    if unknown:
        raise not_accepted(unknown[0], raw[unknown[0]], "a solo-learn pretraining file's sections: method, "
                           "method_kwargs, momentum, optimizer, backbone, and (not read) " + ", ".join(NOT_READ))
    backbone = _mapping(raw, "backbone")
    if backbone.get("name", "resnet18") != "resnet18":
        raise not_accepted("backbone.name", backbone["name"], "resnet18 (this package's CIFAR ResNet-18)")
    unread_backbone = sorted(set(backbone) - {"name"})
    if unread_backbone:
        raise not_accepted(f"backbone.{unread_backbone[0]}", backbone[unread_backbone[0]], "backbone.name only")

    ssl: Dict[str, Any] = {"name": f"solo:{name}"}
    options: Dict[str, Any] = {}
    for key, value in _mapping(raw, "method_kwargs").items():
        if key == "proj_hidden_dim":
            ssl["proj_dim"] = value
        elif key == "pred_hidden_dim":
            ssl["pred_dim"] = value
        elif key in accepted:
            options[key] = value
        else:
            raise not_accepted(f"method_kwargs.{key}", value, f"the options of solo:{name}: proj_hidden_dim, "
                               + ("pred_hidden_dim, " if name in ("simsiam", "byol") else "") + ", ".join(accepted))
    momentum = _mapping(raw, "momentum")
    if momentum:
        if "base_tau_momentum" not in accepted:
            raise not_accepted("momentum", momentum, f"no momentum section: solo:{name} has no momentum encoder")
        extra = sorted(set(momentum) - {"base_tau", "final_tau", "classifier"})
        if extra:
            raise not_accepted(f"momentum.{extra[0]}", momentum[extra[0]], "base_tau, final_tau")
        if "base_tau" in momentum:
            options["base_tau_momentum"] = momentum["base_tau"]
        base = options.get("base_tau_momentum", accepted["base_tau_momentum"])
        if "final_tau" in momentum and momentum["final_tau"] != base:
            raise not_accepted("momentum.final_tau", momentum["final_tau"],
                               f"equal to base_tau ({base}): over a stream of tasks the momentum stays at base_tau "
                               "(there is no known number of steps to anneal it over)")
    if options:
        ssl["options"] = options

    train: Dict[str, Any] = {}
    not_read = [key for key in NOT_READ if key in raw]
    optimizer = _mapping(raw, "optimizer")
    if optimizer:
        if optimizer.get("name", "sgd") != "sgd":
            raise not_accepted("optimizer.name", optimizer["name"], "sgd (the strategy's optimizer; LARS and others "
                               "have no counterpart here: set name: sgd and a learning rate for it)")
        for key, target in (("batch_size", "batch_size"), ("lr", "lr"), ("weight_decay", "weight_decay")):
            if key in optimizer:
                train[target] = optimizer[key]
        kwargs = optimizer.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise not_accepted("optimizer.kwargs", kwargs, "a mapping")
        for key, value in kwargs.items():
            if key != "momentum":
                raise not_accepted(f"optimizer.kwargs.{key}", value, "momentum (SGD's only option here)")
            train["momentum"] = value
        extra = sorted(set(optimizer) - {"name", "batch_size", "lr", "weight_decay", "kwargs", "classifier_lr"})
        if extra:
            raise not_accepted(f"optimizer.{extra[0]}", optimizer[extra[0]],
                               "name, batch_size, lr, weight_decay, kwargs.momentum, classifier_lr (not read)")
        if "classifier_lr" in optimizer:
            not_read.append("optimizer.classifier_lr")
    config: Dict[str, Any] = {"ssl": ssl}
    if train:
        config["train"] = train
    return config, not_read


def translate(raw: Dict[str, Any], source: str) -> Dict[str, Any]:
    """:func:`from_solo` for a configuration file: errors name the file; the keys not read are said
    once on stderr."""
    try:
        config, not_read = from_solo(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source} (a solo-learn file): {exc}", key=exc.key) from None
    if not_read:
        print(f"avalanche-freeze: {source} is a solo-learn file; read: method, method_kwargs, momentum, optimizer, "
              f"backbone; not read (they describe solo-learn's job): {', '.join(not_read)}", file=sys.stderr)
    return config
