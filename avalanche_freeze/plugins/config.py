"""The configuration sections of the plugins in this package, one dataclass each.

Each section holds its plugin's options with their defaults and checks its ranges; a plugin
takes its section whole or as keyword options (``LUMPPlugin(mem_size=512)``), and the run
schema (:class:`~avalanche_freeze.run.config.ExperimentConfig`) nests the same dataclasses, so
each option is written once. This module imports no plugin.

Example:
    >>> LUMPConfig().mem_size, SIConfig(c=1.0).xi
    (256, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..validation import check_number

__all__ = ["CaSSLeConfig", "DERConfig", "EWCConfig", "LUMPConfig", "PFRConfig", "SIConfig"]


@dataclass
class LUMPConfig:
    """The ``lump`` configuration section (defaults: LUMP's reference configuration).

    Attributes:
        mem_size: buffer capacity in images, over all tasks (256).
        alpha: Beta distribution parameter of the mixup coefficient (0.4).
    """

    mem_size: int = 256
    alpha: float = 0.4

    def __post_init__(self) -> None:
        check_number("mem_size", self.mem_size, at_least=0, integer=True)
        check_number("alpha", self.alpha, above=0)


@dataclass
class SIConfig:
    """The ``si`` configuration section.

    Attributes:
        c: strength of the penalty (0.4, LUMP's value).
        xi: damping of the importance denominator (1.0, LUMP's value).
        clip_value: every gradient of the model is clipped to ``[-clip_value, clip_value]``
            before the step (1.0, as LUMP's reference; ``None``: no clipping).
    """

    c: float = 0.4
    xi: float = 1.0
    clip_value: Optional[float] = 1.0

    def __post_init__(self) -> None:
        check_number("c", self.c, at_least=0)
        check_number("xi", self.xi, above=0)
        check_number("clip_value", self.clip_value, above=0, optional=True)


@dataclass
class DERConfig:
    """The ``der`` configuration section (defaults: LUMP's DER configuration).

    Attributes:
        mem_size: buffer capacity in images, over all tasks (256).
        alpha: weight of the feature-replay term (0.4).
    """

    mem_size: int = 256
    alpha: float = 0.4

    def __post_init__(self) -> None:
        check_number("mem_size", self.mem_size, at_least=0, integer=True)
        check_number("alpha", self.alpha, at_least=0)


@dataclass
class CaSSLeConfig:
    """The ``cassle`` configuration section.

    Attributes:
        lam: weight of the distillation term (1.0, as CaSSLe).
        hidden_dim: hidden width of the predictor (``None``: the projection dimension).
    """

    lam: float = 1.0
    hidden_dim: Optional[int] = None

    def __post_init__(self) -> None:
        check_number("lam", self.lam, at_least=0)
        check_number("hidden_dim", self.hidden_dim, at_least=1, integer=True, optional=True)


@dataclass
class PFRConfig:
    """The ``pfr`` configuration section.

    Attributes:
        lam: weight of the regularisation term (1.0, not tuned).
        hidden_dim: hidden width of the temporal projector (``None``: the feature dimension).
    """

    lam: float = 1.0
    hidden_dim: Optional[int] = None

    def __post_init__(self) -> None:
        check_number("lam", self.lam, at_least=0)
        check_number("hidden_dim", self.hidden_dim, at_least=1, integer=True, optional=True)


@dataclass
class EWCConfig:
    """The ``ewc`` configuration section.

    Attributes:
        ewc_lambda: penalty strength (100, not tuned).
    """

    ewc_lambda: float = 100.0

    def __post_init__(self) -> None:
        check_number("ewc_lambda", self.ewc_lambda, at_least=0)
