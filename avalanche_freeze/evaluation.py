"""Avalanche plugin metrics for probe accuracy, and the evaluator used by the CLI.

:class:`ProbeAccuracy` reports the accuracy of a probe (kNN or linear) under
one protocol, per evaluated experience and over the stream, with metric names
such as ``Top1_KNN_CI_Acc_Exp/eval_phase/test_stream/Exp002``. It reads the
backbone features the strategy computed for the batch (``strategy.mb_features``)
and the probe the strategy fitted on the protocol's bank, so several probe
metrics share one feature pass and one fit.

Example:
    >>> from avalanche.training.plugins import EvaluationPlugin
    >>> from avalanche.evaluation.metrics import forgetting_metrics
    >>> evaluator = EvaluationPlugin(
    ...     *probe_accuracy_metrics(probes=("knn",), protocols=("class_incremental", "task_incremental")),
    ...     forgetting_metrics(experience=True, stream=True))
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from avalanche.evaluation import GenericPluginMetric
from avalanche.evaluation.metrics import Accuracy

from .probes import Probe, make_probe

__all__ = ["ProbeAccuracy", "PROTOCOL_TAGS", "probe_accuracy_metrics", "probe_metric_prefix"]

PROTOCOL_TAGS = {"class_incremental": "CI", "task_incremental": "TI"}


def probe_metric_prefix(probe_name: str, protocol: str) -> str:
    """Prefix of a probe metric's name, e.g. ``Top1_KNN_CI_Acc``."""
    return f"Top1_{probe_name.upper()}_{PROTOCOL_TAGS[protocol]}_Acc"


class ProbeAccuracy(GenericPluginMetric[float, Accuracy]):
    """Accuracy of ``probe`` under ``protocol``, emitted per experience or per stream.

    Args:
        probe: a probe instance (it is copied before every fit).
        protocol: ``class_incremental`` or ``task_incremental``.
        emit_at: ``experience`` or ``stream``.
    """

    def __init__(self, probe: Probe, protocol: str, *, emit_at: str = "experience") -> None:
        if protocol not in PROTOCOL_TAGS:
            raise ValueError(f"protocol={protocol!r} is not accepted; accepted: {', '.join(PROTOCOL_TAGS)}")
        if emit_at not in ("experience", "stream"):
            raise ValueError(f"emit_at={emit_at!r} is not accepted; accepted: experience, stream")
        super().__init__(Accuracy(), reset_at=emit_at, emit_at=emit_at, mode="eval")
        self.probe = probe
        self.protocol = protocol
        self._suffix = "Exp" if emit_at == "experience" else "Stream"

    def update(self, strategy) -> None:
        if getattr(strategy, "mb_features", None) is None:
            raise TypeError("ProbeAccuracy needs a SelfSupervisedStrategy (it reads strategy.mb_features)")
        fitted = strategy.fitted_probe(self.probe, self.protocol)
        scores = fitted.predict_scores(strategy.mb_features)
        self._metric.update(scores.argmax(1), strategy.mb_y)

    def __str__(self) -> str:
        return f"{probe_metric_prefix(self.probe.name, self.protocol)}_{self._suffix}"


def probe_accuracy_metrics(
    *,
    probes: Sequence[str] = ("knn",),
    protocols: Sequence[str] = ("class_incremental", "task_incremental"),
    probe_options: Optional[Dict[str, dict]] = None,
    experience: bool = True,
    stream: bool = True,
) -> List[ProbeAccuracy]:
    """Probe accuracy metrics for every (probe, protocol) pair.

    Args:
        probes: probe names (``knn``, ``linear``).
        protocols: protocol names.
        probe_options: per-probe constructor options, e.g. ``{"knn": {"k": 200}}``.
        experience: emit one value per evaluated experience.
        stream: emit the accuracy over the whole evaluated stream.
    """
    metrics: List[ProbeAccuracy] = []
    for name in probes:
        probe = make_probe(name, **(probe_options or {}).get(name, {}))
        for protocol in protocols:
            if experience:
                metrics.append(ProbeAccuracy(probe, protocol, emit_at="experience"))
            if stream:
                metrics.append(ProbeAccuracy(probe, protocol, emit_at="stream"))
    return metrics
