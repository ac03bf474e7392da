"""avalanche-freeze: efficient self-supervised continual learning for Avalanche.

Implements LUMP (Madaan et al., ICLR 2022) and progressive task-correlated layer
freezing (Yang et al., arXiv 2303.07477) as Avalanche plugins around a
self-supervised training template.
"""

import warnings as _warnings

# qpsolvers (pulled in by Avalanche's GEM) warns at import when no QP solver is installed;
# nothing here uses it.
_warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)

from .augmentations import TwoViewAugmentation  # noqa: E402
from .backbones import CifarResNet18, FreezableBackbone  # noqa: E402
from .benchmarks import DatasetError, SSLBenchmark, make_benchmark  # noqa: E402
from .probes import KNNProbe, LinearProbe  # noqa: E402
from .strategy import SelfSupervisedModel, SelfSupervisedStrategy, default_ssl_evaluator  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CifarResNet18",
    "DatasetError",
    "FreezableBackbone",
    "KNNProbe",
    "LinearProbe",
    "SSLBenchmark",
    "SelfSupervisedModel",
    "SelfSupervisedStrategy",
    "TwoViewAugmentation",
    "default_ssl_evaluator",
    "make_benchmark",
]
