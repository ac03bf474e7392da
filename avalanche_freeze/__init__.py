"""avalanche-freeze: efficient self-supervised continual learning for Avalanche.

Implements LUMP (Madaan et al., ICLR 2022) and progressive task-correlated layer
freezing (Yang et al., arXiv 2303.07477) as Avalanche plugins around a
self-supervised training template.

The names below are loaded on first use (PEP 562), so ``import avalanche_freeze`` itself is
light: the command line (:mod:`avalanche_freeze.launcher`) can then catch a Ctrl-C that arrives
while torch and Avalanche are still being imported.

Example:
    >>> import avalanche_freeze
    >>> avalanche_freeze.CifarResNet18.__name__
    'CifarResNet18'
"""

from __future__ import annotations

import importlib
import warnings as _warnings
from typing import TYPE_CHECKING, Any, List

__version__ = "0.3.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "CifarResNet18": "backbones",
    "ConfigError": "validation",
    "DatasetError": "benchmarks",
    "FreezableBackbone": "backbones",
    "KNNProbe": "probes",
    "LinearProbe": "probes",
    "SSLBenchmark": "benchmarks",
    "SelfSupervisedModel": "strategy",
    "SelfSupervisedStrategy": "strategy",
    "TwoViewAugmentation": "augmentations",
    "default_ssl_evaluator": "strategy",
    "load_backbone": "backbone_files",
    "make_benchmark": "benchmarks",
    "save_backbone": "backbone_files",
    "torchvision_fmnist_root": "benchmarks",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use
    from .augmentations import TwoViewAugmentation
    from .backbone_files import load_backbone, save_backbone
    from .backbones import CifarResNet18, FreezableBackbone
    from .benchmarks import DatasetError, SSLBenchmark, make_benchmark, torchvision_fmnist_root
    from .probes import KNNProbe, LinearProbe
    from .strategy import SelfSupervisedModel, SelfSupervisedStrategy, default_ssl_evaluator
    from .validation import ConfigError


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _warnings.catch_warnings():  # restores the caller's warning filters afterwards
        # qpsolvers (imported by Avalanche's GEM) warns when no QP solver is installed; nothing here uses it
        _warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
