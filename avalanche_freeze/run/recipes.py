"""The strategy registry: named recipes built from plugin components.

A recipe is a list of component names; each component builds one plugin from its
section of an :class:`~avalanche_freeze.run.config.ExperimentConfig` (``lump`` from
``cfg.lump``, ``freeze`` from ``cfg.freeze``, ...), so a plugin's defaults live only in
its configuration dataclass. The CLI's ``--strategy NAME`` and the config key
``strategy`` select a recipe; its YAML file (``strategies/NAME.yaml`` in a source
checkout, shipped in the package as ``avalanche_freeze.strategies``) names it and holds
only what differs from the defaults.

=============  ===========================  =============================================
recipe         components                   paper
=============  ===========================  =============================================
finetune       (none)                       lower bound: plain SSL fine-tuning
si             si                           Zenke et al., ICML 2017
der            der                          Buzzega et al., NeurIPS 2020
cassle         cassle                       Fini et al., CVPR 2022
pfr            pfr                          Gomez-Villa et al., CVPRW 2022
ewc            ewc                          Kirkpatrick et al., PNAS 2017 (Avalanche's plugin)
lump           lump                         Madaan et al., ICLR 2022
freeze         freeze                       Yang et al., arXiv 2303.07477 (without LUMP)
lump_freeze    lump, freeze                 Yang et al., arXiv 2303.07477
joint          (none)                       upper bound: SSL on all tasks' data at once
=============  ===========================  =============================================

Avalanche's own supervised strategies are accepted too, by their Avalanche class names
(``Naive``, ``Replay``, ``EWC``, ``LwF``, ``DER``; :mod:`~avalanche_freeze.run.supervised`):
they train the backbone with labels, and the run evaluates its features with the same probes.
:func:`strategy_kind` tells the three kinds apart (``ssl``, ``joint``, ``supervised``).

Example:
    >>> from avalanche_freeze.run.recipes import available_strategies, register_strategy
    >>> register_strategy("cassle_freeze", ["cassle", "freeze"])
    >>> "cassle_freeze" in available_strategies()
    True
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..augmentations import AugmentConfig
from ..freezing import CorrelationFreezePlugin
from ..freezing.decision import backbone_layout
from ..health import TrainingHealthPlugin
from ..plugins import CaSSLePlugin, DERPlugin, LUMPPlugin, PFRPlugin, SelfSupervisedEWCPlugin, SIPlugin
from ..validation import check_choice, not_accepted
from .config import ExperimentConfig
from .supervised import STRATEGY_OPTIONS, SUPERVISED_STRATEGIES, SupervisedConfig

__all__ = ["COMPONENTS", "STRATEGY_KINDS", "available_strategies", "build_plugins", "check_config", "recipe_path",
           "register_strategy", "strategy_components", "strategy_kind", "unused_keys", "unused_sections"]

#: Kinds of strategy: self-supervised continual (a recipe of plugins), self-supervised joint
#: training on all tasks at once (the upper bound), Avalanche's supervised strategies.
STRATEGY_KINDS = ("ssl", "joint", "supervised")


#: Plugin builders by component name: each takes its own configuration section whole.
COMPONENTS: Dict[str, Callable[[ExperimentConfig], Any]] = {
    "lump": lambda cfg: LUMPPlugin(cfg.lump, seed=cfg.seed),
    "freeze": lambda cfg: CorrelationFreezePlugin(cfg.freeze, seed=cfg.seed),
    "si": lambda cfg: SIPlugin(cfg.si),
    "der": lambda cfg: DERPlugin(cfg.der, seed=cfg.seed),
    "cassle": lambda cfg: CaSSLePlugin(cfg.cassle),
    "pfr": lambda cfg: PFRPlugin(cfg.pfr),
    "ewc": lambda cfg: SelfSupervisedEWCPlugin(cfg.ewc),
}

_RECIPES: Dict[str, List[str]] = {
    "finetune": [],
    "si": ["si"],
    "der": ["der"],
    "cassle": ["cassle"],
    "pfr": ["pfr"],
    "ewc": ["ewc"],
    "lump": ["lump"],
    "freeze": ["freeze"],
    "lump_freeze": ["lump", "freeze"],
    "joint": [],
}
_JOINT = {"joint"}


def available_strategies() -> List[str]:
    """Names accepted by the ``strategy`` config key and ``--strategy``: the recipes, ``joint``
    and Avalanche's supervised strategies."""
    return list(_RECIPES) + list(SUPERVISED_STRATEGIES)


def strategy_kind(name: str) -> str:
    """``ssl``, ``joint`` or ``supervised`` (raises ConfigError naming the accepted strategies)."""
    check_choice("strategy", name, available_strategies())
    if name in SUPERVISED_STRATEGIES:
        return "supervised"
    return "joint" if name in _JOINT else "ssl"


def strategy_components(name: str) -> List[str]:
    """The component names of recipe ``name`` (none for ``joint`` and the supervised strategies;
    raises ConfigError naming the accepted ones)."""
    check_choice("strategy", name, available_strategies())
    return list(_RECIPES.get(name, []))


def unused_sections(name: str) -> List[str]:
    """Configuration sections that cannot change the results of strategy ``name``: the plugin
    components it does not use, ``supervised`` for self-supervised strategies, ``ssl`` for
    supervised ones (of ``augment`` they read only ``backend``: see :func:`unused_keys`)."""
    unused = set(COMPONENTS) - set(strategy_components(name))
    if strategy_kind(name) == "supervised":
        unused |= {"ssl"}
    else:
        unused.add("supervised")
    return sorted(unused)


def unused_keys(name: str) -> List[str]:
    """Dotted keys of the sections strategy ``name`` uses that it does not read: for a supervised
    strategy, the options of the other supervised strategies (``supervised.ewc_lambda`` for
    ``Replay``, ...) and the strong views' options (``augment.min_scale``, ...: it trains on
    labels with the light view, which only ``augment.backend`` changes)."""
    if strategy_kind(name) != "supervised":
        return []
    used = {"lr", "augment", *STRATEGY_OPTIONS[name]}
    strong = [f"augment.{f.name}" for f in dataclasses.fields(AugmentConfig) if f.name != "backend"]
    return [f"supervised.{f.name}" for f in dataclasses.fields(SupervisedConfig) if f.name not in used] + strong


def register_strategy(name: str, components: Sequence[str]) -> None:
    """Register a recipe made of existing components (e.g. ``["cassle", "freeze"]``)."""
    for component in components:
        check_choice("component", component, COMPONENTS)
    if name in SUPERVISED_STRATEGIES or name in _JOINT:
        raise ValueError(f"strategy name {name!r} is taken by a built-in strategy that is not a recipe")
    _RECIPES[name] = list(components)


def recipe_path(name: str) -> Optional[Path]:
    """The YAML file shipped for recipe ``name`` (``None`` for recipes registered in code only)."""
    path = resources.files("avalanche_freeze.strategies") / f"{name}.yaml"
    return Path(str(path)) if path.is_file() else None


def check_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` if its strategy is registered and its sections agree with that strategy; raises
    :class:`~avalanche_freeze.validation.ConfigError` naming the key otherwise.

    The schema checks each section alone; this is where checks that read the strategy and
    several sections at once live (the command line, grids and
    :meth:`~avalanche_freeze.run.experiment.ExperimentRun.build` call it).

    Example:
        >>> from avalanche_freeze.run.config import ExperimentConfig
        >>> check_config(ExperimentConfig(strategy="lump")).strategy
        'lump'
    """
    check_choice("strategy", cfg.strategy, available_strategies())
    freeze = cfg.freeze
    if ("freeze" in strategy_components(cfg.strategy) and freeze.measure == "cka" and freeze.decide_every == 0
            and not freeze.schedule and freeze.warmup_epochs >= cfg.train.epochs):
        raise not_accepted("freeze.warmup_epochs", freeze.warmup_epochs,
                           f"fewer than train.epochs={cfg.train.epochs} (CKA scores after the warm-up epochs; "
                           "with as many, it would never decide)")
    if cfg.train.data_on_device and strategy_kind(cfg.strategy) == "supervised":
        raise not_accepted("train.data_on_device", True, f"false with --strategy {cfg.strategy} (Avalanche's "
                           "supervised strategies read their data with Avalanche's loader)")
    components = strategy_components(cfg.strategy)
    for name in ("lump", "der"):
        if name in components and getattr(cfg, name).mem_size == 0:
            raise not_accepted(f"{name}.mem_size", 0, f"at least 1 with --strategy {cfg.strategy} (an empty buffer "
                               "trains as --strategy finetune: use that)")
    if "freeze" in components and freeze.schedule:
        units = len(backbone_layout(benchmark=cfg.data.benchmark, width=cfg.model.width, granularity="block").shares)
        beyond = [entry for entry in freeze.schedule if entry[2] > units]
        if beyond:
            raise not_accepted("freeze.schedule", freeze.schedule,
                               f"[task, iteration, blocks] entries with blocks <= {units} (the backbone's block-level "
                               f"units); {beyond[0]} asks for {beyond[0][2]}")
    return cfg


def build_plugins(cfg: ExperimentConfig) -> Dict[str, Any]:
    """The training-health plugin (first, so that its end-of-task weight check runs before other
    plugins use the weights), then the configured recipe's plugins, by component name."""
    plugins = {"health": TrainingHealthPlugin(**dataclasses.asdict(cfg.health))}
    plugins.update((name, COMPONENTS[name](cfg)) for name in strategy_components(cfg.strategy))
    return plugins
