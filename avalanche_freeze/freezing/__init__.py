"""Progressive task-correlated layer freezing (Yang et al., arXiv 2303.07477), one module per part.

=================  ==================================================================
module             what it holds
=================  ==================================================================
``config``         :class:`FreezeConfig`, every option of the rule and its defaults
``correlation``    the linear algebra of the measures: subspace bases, input patches,
                   projection ratios, linear CKA
``decision``       :func:`choose_prefix`, the rule's choice as a pure function, and
                   :func:`replay_decisions`, which re-decides a finished run
``prefix``         :func:`apply_frozen_prefix`: a prefix out of autograd and the optimizer
``schedules``      fixed schedules at a given frozen compute (the controls)
``plugin``         :class:`CorrelationFreezePlugin`, the Avalanche hooks that measure,
                   decide, apply and record
=================  ==================================================================

Example:
    >>> from avalanche_freeze.freezing import CorrelationFreezePlugin, FreezeConfig
    >>> CorrelationFreezePlugin(FreezeConfig(tau=0.9)).config.tau
    0.9
"""

from .config import GATE_REFERENCES, MEASURES, FreezeConfig
from .decision import STOP_REASONS, PrefixChoice, backbone_layout, choose_prefix, replay_decisions
from .plugin import CorrelationFreezePlugin
from .prefix import apply_frozen_prefix, remove_from_optimizer
from .schedules import fixed_schedule, freezeout_schedule, frozen_compute, random_schedule

__all__ = [
    "GATE_REFERENCES",
    "MEASURES",
    "STOP_REASONS",
    "CorrelationFreezePlugin",
    "FreezeConfig",
    "PrefixChoice",
    "apply_frozen_prefix",
    "backbone_layout",
    "choose_prefix",
    "fixed_schedule",
    "freezeout_schedule",
    "frozen_compute",
    "random_schedule",
    "remove_from_optimizer",
    "replay_decisions",
]
