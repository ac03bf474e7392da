"""Progressive task-correlated layer freezing (Yang et al., arXiv 2303.07477), one module per part.

=================  ==================================================================
module             what it holds
=================  ==================================================================
``config``         :class:`FreezeConfig`, every option of the rule and its defaults
``measure``        :class:`CorrelationMeasure`, the interface of a correlation measure
``gradient``       the default measure: gradients against old tasks' input-patch bases
``subspace``       unit outputs against a merged old-task basis
``cka``            linear CKA against the previous task's model
``gate``           :class:`StabilityGate`: units whose features still move stay trainable
``correlation``    the linear algebra of the measures: subspace bases, input patches,
                   projection ratios, linear CKA
``decision``       :func:`choose_prefix`, the rule's choice as a pure function, and
                   :func:`replay_decisions`, which re-decides a finished run
``prefix``         :func:`apply_frozen_prefix`: a prefix out of autograd and the optimizer
``schedules``      fixed schedules at a given frozen compute (the controls)
``plugin``         :class:`CorrelationFreezePlugin`, the Avalanche hooks that call the
                   measure, the gate and the decision, apply and record
=================  ==================================================================

Example:
    >>> from avalanche_freeze.freezing import CorrelationFreezePlugin, FreezeConfig
    >>> CorrelationFreezePlugin(FreezeConfig(tau=0.9)).config.tau
    0.9
"""

from .cka import LinearCKA
from .config import GATE_REFERENCES, MEASURES, FreezeConfig
from .decision import STOP_REASONS, PrefixChoice, backbone_layout, choose_prefix, replay_decisions
from .gate import StabilityGate
from .gradient import GradientProjection
from .measure import CorrelationMeasure, TaskImages
from .plugin import CorrelationFreezePlugin, FreezingRecord
from .prefix import apply_frozen_prefix, remove_from_optimizer
from .schedules import fixed_schedule, freezeout_schedule, frozen_compute, random_schedule
from .subspace import SubspaceProjection

__all__ = [
    "GATE_REFERENCES",
    "MEASURES",
    "STOP_REASONS",
    "CorrelationFreezePlugin",
    "CorrelationMeasure",
    "FreezeConfig",
    "FreezingRecord",
    "GradientProjection",
    "LinearCKA",
    "PrefixChoice",
    "StabilityGate",
    "SubspaceProjection",
    "TaskImages",
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
