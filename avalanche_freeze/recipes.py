"""The strategy registry: named recipes built from plugin components.

A recipe is a list of component names; each component builds one plugin from an
:class:`~avalanche_freeze.config.ExperimentConfig`. The CLI's ``--strategy NAME`` and the
config key ``strategy`` select a recipe; ``strategies/NAME.yaml`` holds its defaults.

=============  ===========================  =============================================
recipe         components                   paper
=============  ===========================  =============================================
finetune       (none)                       lower bound: plain SSL fine-tuning
si             si                           Zenke et al., ICML 2017
der            der                          Buzzega et al., NeurIPS 2020
cassle         cassle                       Fini et al., CVPR 2022
ewc            ewc                          Kirkpatrick et al., PNAS 2017 (Avalanche's plugin)
lump           lump                         Madaan et al., ICLR 2022
freeze         freeze                       Yang et al., arXiv 2303.07477 (without LUMP)
lump_freeze    lump, freeze                 Yang et al., arXiv 2303.07477
=============  ===========================  =============================================

Example:
    >>> from avalanche_freeze.recipes import available_strategies, register_strategy
    >>> register_strategy("cassle_freeze", ["cassle", "freeze"])
    >>> "cassle_freeze" in available_strategies()
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Sequence

from .health import TrainingHealthPlugin
from .plugins import (
    CaSSLePlugin,
    CorrelationFreezePlugin,
    DERPlugin,
    LUMPPlugin,
    SelfSupervisedEWCPlugin,
    SIPlugin,
)

if TYPE_CHECKING:
    from .config import ExperimentConfig

__all__ = ["COMPONENTS", "available_strategies", "build_plugins", "register_strategy", "strategy_components"]

#: Plugin builders by component name.
COMPONENTS: Dict[str, Callable[["ExperimentConfig"], Any]] = {
    "lump": lambda cfg: LUMPPlugin(mem_size=cfg.lump_mem_size, alpha=cfg.lump_alpha, seed=cfg.seed),
    "freeze": lambda cfg: CorrelationFreezePlugin(
        measure=cfg.freeze_measure, tau=cfg.freeze_tau, max_frozen_share=cfg.freeze_max_share,
        granularity=cfg.freeze_granularity, n_samples=cfg.freeze_samples, energy=cfg.freeze_energy,
        warmup_epochs=cfg.freeze_warmup_epochs, seed=cfg.seed,
    ),
    "si": lambda cfg: SIPlugin(c=cfg.si_c, xi=cfg.si_xi),
    "der": lambda cfg: DERPlugin(mem_size=cfg.der_mem_size, alpha=cfg.der_alpha, seed=cfg.seed),
    "cassle": lambda cfg: CaSSLePlugin(lam=cfg.cassle_lambda),
    "ewc": lambda cfg: SelfSupervisedEWCPlugin(ewc_lambda=cfg.ewc_lambda),
}

_RECIPES: Dict[str, List[str]] = {
    "finetune": [],
    "si": ["si"],
    "der": ["der"],
    "cassle": ["cassle"],
    "ewc": ["ewc"],
    "lump": ["lump"],
    "freeze": ["freeze"],
    "lump_freeze": ["lump", "freeze"],
}


def available_strategies() -> List[str]:
    """Names accepted by the ``strategy`` config key and ``--strategy``."""
    return list(_RECIPES)


def strategy_components(name: str) -> List[str]:
    """The component names of recipe ``name`` (raises ValueError naming the accepted ones)."""
    if name not in _RECIPES:
        raise ValueError(f"unknown strategy {name!r}; accepted: {', '.join(available_strategies())}")
    return list(_RECIPES[name])


def register_strategy(name: str, components: Sequence[str]) -> None:
    """Register a recipe made of existing components (e.g. ``["cassle", "freeze"]``)."""
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown component(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(COMPONENTS)}")
    _RECIPES[name] = list(components)


def build_plugins(cfg: "ExperimentConfig") -> Dict[str, Any]:
    """The configured recipe's plugins by component name, plus the training-health plugin."""
    plugins = {name: COMPONENTS[name](cfg) for name in strategy_components(cfg.strategy)}
    plugins["health"] = TrainingHealthPlugin(on_nan=cfg.on_nan, collapse_std=cfg.collapse_std)
    return plugins
