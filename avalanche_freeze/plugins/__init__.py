"""Avalanche plugins: LUMP, progressive task-correlated layer freezing, and the
self-supervised continual-learning baselines (SI, DER, CaSSLe, PFR, label-free EWC)."""

from .cassle import CaSSLePlugin, PFRPlugin
from .correlation_freeze import CorrelationFreezePlugin
from .dark_experience_replay import DERPlugin
from .ewc import SelfSupervisedEWCPlugin
from .lump import LUMPPlugin
from .reservoir import ReservoirBuffer
from .synaptic_intelligence import SIPlugin

__all__ = [
    "CaSSLePlugin",
    "CorrelationFreezePlugin",
    "DERPlugin",
    "LUMPPlugin",
    "PFRPlugin",
    "ReservoirBuffer",
    "SIPlugin",
    "SelfSupervisedEWCPlugin",
]
