"""avalanche-freeze: efficient self-supervised continual learning for Avalanche.

Implements LUMP (Madaan et al., ICLR 2022) and progressive task-correlated layer
freezing (Yang et al., arXiv 2303.07477) as Avalanche plugins around a
self-supervised training template.
"""

import warnings as _warnings

with _warnings.catch_warnings():  # restores the caller's warning filters afterwards
    # qpsolvers (imported by Avalanche's GEM) warns when no QP solver is installed; nothing here uses it
    _warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
    from .augmentations import TwoViewAugmentation
    from .backbone_files import load_backbone, save_backbone
    from .backbones import CifarResNet18, FreezableBackbone
    from .benchmarks import DatasetError, SSLBenchmark, make_benchmark, torchvision_fmnist_root
    from .probes import KNNProbe, LinearProbe
    from .strategy import SelfSupervisedModel, SelfSupervisedStrategy, default_ssl_evaluator
    from .validation import ConfigError

__version__ = "0.3.0"

__all__ = [
    "CifarResNet18",
    "ConfigError",
    "DatasetError",
    "FreezableBackbone",
    "KNNProbe",
    "LinearProbe",
    "SSLBenchmark",
    "SelfSupervisedModel",
    "SelfSupervisedStrategy",
    "TwoViewAugmentation",
    "default_ssl_evaluator",
    "load_backbone",
    "make_benchmark",
    "save_backbone",
    "torchvision_fmnist_root",
]
