"""Avalanche plugins: LUMP and progressive task-correlated layer freezing."""

from .correlation_freeze import CorrelationFreezePlugin
from .lump import LUMPPlugin
from .reservoir import ReservoirBuffer

__all__ = ["CorrelationFreezePlugin", "LUMPPlugin", "ReservoirBuffer"]
