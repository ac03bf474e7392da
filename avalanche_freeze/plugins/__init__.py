"""Avalanche plugins: LUMP, the self-supervised continual-learning baselines (SI, DER, CaSSLe,
PFR, label-free EWC) and, re-exported from :mod:`avalanche_freeze.freezing`, progressive
task-correlated layer freezing. Each plugin's options are a dataclass of
:mod:`avalanche_freeze.plugins.config`."""

from ..freezing.plugin import CorrelationFreezePlugin
from .cassle import CaSSLePlugin, PFRPlugin
from .config import CaSSLeConfig, DERConfig, EWCConfig, LUMPConfig, PFRConfig, SIConfig
from .dark_experience_replay import DERPlugin
from .ewc import SelfSupervisedEWCPlugin
from .lump import LUMPPlugin
from .reservoir import ReservoirBuffer
from .synaptic_intelligence import SIPlugin

__all__ = [
    "CaSSLeConfig",
    "CaSSLePlugin",
    "CorrelationFreezePlugin",
    "DERConfig",
    "DERPlugin",
    "EWCConfig",
    "LUMPConfig",
    "LUMPPlugin",
    "PFRConfig",
    "PFRPlugin",
    "ReservoirBuffer",
    "SIConfig",
    "SIPlugin",
    "SelfSupervisedEWCPlugin",
]
