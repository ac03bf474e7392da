"""Evaluation with probes: banks of training features, fitted probes, and probe accuracy metrics.

:class:`ProbeEvaluator` owns everything probes need: which training experiences were
seen, the backbone features of their data (the *banks*, cached until the model next
changes) and the probes fitted on them (cached too, so several metrics share one fit).
:class:`~avalanche_freeze.SelfSupervisedStrategy` adds one to its plugins.

:class:`ProbeAccuracy` reports the accuracy of a probe (kNN or linear) under one
protocol, per evaluated experience and over the stream, with metric names such as
``Top1_KNN_CI_Acc_Exp/eval_phase/test_stream/Exp002``, and keeps the per-experience
values as structured data (:attr:`ProbeAccuracy.last_values`) for result tables.

Example:
    >>> from avalanche.training.plugins import EvaluationPlugin
    >>> from avalanche.evaluation.metrics import forgetting_metrics
    >>> evaluator = EvaluationPlugin(
    ...     *probe_accuracy_metrics(probes=("knn",), protocols=("class_incremental", "task_incremental")),
    ...     forgetting_metrics(experience=True, stream=True))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation import GenericPluginMetric
from avalanche.evaluation.metrics import Accuracy
from torch import Tensor
from torch.utils.data import DataLoader

from .probes import PROBES, KNNProbe, Probe, make_probe
from .validation import ConfigError, check_choice, check_number

__all__ = [
    "EvalConfig",
    "PROTOCOLS",
    "PROTOCOL_TAGS",
    "ProbeAccuracy",
    "ProbeEvaluator",
    "probe_accuracy_metrics",
    "probe_metric_prefix",
]

#: Evaluation protocols of the probes, with their short tags in metric names and tables.
PROTOCOL_TAGS = {"class_incremental": "CI", "task_incremental": "TI"}
PROTOCOLS = tuple(PROTOCOL_TAGS)


@dataclass
class EvalConfig:
    """The ``eval`` configuration section.

    Attributes:
        probes: probes evaluated after every task, the first one also driving Avalanche's
            own accuracy metrics (``[knn]``; ``knn``, ``linear``).
        knn_k: kNN neighbours (200, capped only by the bank size).
        knn_temperature: kNN vote temperature (0.1).
        linear_probe_epochs: epochs of the linear probe's training (50).
        mb_size: evaluation minibatch size (512).
        knn_k_capped_by_tasks: LUMP's reference behaviour, for exact comparison with its
            tables: the kNN's k is capped at the number of tasks seen (a bug there; False).
    """

    probes: List[str] = field(default_factory=lambda: ["knn"])
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_probe_epochs: int = 50
    mb_size: int = 512
    knn_k_capped_by_tasks: bool = False

    def __post_init__(self) -> None:
        if not self.probes or len(set(self.probes)) != len(self.probes) or not set(self.probes) <= set(PROBES):
            raise ConfigError(f"probes={list(self.probes)!r} is not accepted; accepted: a non-empty list of "
                              f"distinct names from {', '.join(PROBES)}", key="probes")
        check_number("knn_k", self.knn_k, at_least=1, integer=True)
        check_number("knn_temperature", self.knn_temperature, above=0)
        check_number("linear_probe_epochs", self.linear_probe_epochs, at_least=1, integer=True)
        check_number("mb_size", self.mb_size, at_least=1, integer=True)

    def probe_options(self, *, seed: int) -> Dict[str, dict]:
        """Constructor options of every probe by name."""
        return {"knn": {"k": self.knn_k, "temperature": self.knn_temperature},
                "linear": {"epochs": self.linear_probe_epochs, "seed": seed}}


def probe_metric_prefix(probe_name: str, protocol: str) -> str:
    """Prefix of a probe metric's name, e.g. ``Top1_KNN_CI_Acc``."""
    return f"Top1_{probe_name.upper()}_{PROTOCOL_TAGS[protocol]}_Acc"


class ProbeEvaluator(SupervisedPlugin, supports_distributed=True):
    """Probe banks and fitted probes of a strategy, cached until the model next changes.

    The bank of a training experience is the backbone's features of its (un-augmented)
    images. Under ``task_incremental`` the probe for evaluated experience ``j`` is fitted
    on bank ``j``; under ``class_incremental`` on the union of the banks of the trained
    experiences.

    Args:
        bank_stream: training stream that provides banks of experiences not trained yet
            (task-incremental evaluation of future tasks) and of experiences trained
            before a checkpoint was restored.
        mb_size: minibatch size of the feature pass.
        num_workers: dataloader workers of the feature pass.
        knn_k_capped_by_tasks: cap a kNN probe's ``k`` at the number of tasks trained so
            far, as LUMP's reference code does (a bug kept as an option for exact comparison).
    """

    def __init__(self, *, bank_stream: Optional[Sequence] = None, mb_size: int = 256, num_workers: int = 0,
                 knn_k_capped_by_tasks: bool = False) -> None:
        super().__init__()
        self.bank_stream = list(bank_stream) if bank_stream is not None else None
        self.mb_size = mb_size
        self.num_workers = num_workers
        self.knn_k_capped_by_tasks = knn_k_capped_by_tasks
        #: Ids of the experiences trained so far, in training order.
        self.trained: List[int] = []
        self._experiences: Dict[int, Any] = {}
        self._banks: Dict[int, Tuple[Tensor, Tensor]] = {}
        self._fitted: Dict[tuple, Probe] = {}

    # ------------------------------------------------------------ callbacks
    def before_training_exp(self, strategy, **kwargs):
        self.add_trained(strategy.experience)

    def after_update(self, strategy, **kwargs):
        self.invalidate()

    def add_trained(self, experience) -> None:
        """Add ``experience`` to the trained ones when the backbone was trained on it elsewhere; its
        bank comes from its own images (no ``bank_stream`` needed)."""
        exp_id = experience.current_experience
        self._experiences[exp_id] = experience
        if exp_id not in self.trained:
            self.trained.append(exp_id)
        self.invalidate()

    def set_trained(self, exp_ids: Sequence[int]) -> None:
        """Declare the experiences the backbone has been trained on when it was trained outside this
        strategy's own per-experience loop (a supervised reference strategy, joint training on all
        tasks at once): their banks come from ``bank_stream``."""
        if self.bank_stream is None:
            raise RuntimeError("set_trained needs a bank_stream (the benchmark's training stream)")
        self.trained = [int(i) for i in exp_ids]
        self._experiences.clear()
        self.invalidate()

    def invalidate(self) -> None:
        """Forget cached banks and fits (the model changed)."""
        self._banks.clear()
        self._fitted.clear()

    # ---------------------------------------------------------------- banks
    def _training_experience(self, exp_id: int):
        if exp_id in self._experiences:
            return self._experiences[exp_id]
        if self.bank_stream is not None and exp_id < len(self.bank_stream):
            return self.bank_stream[exp_id]
        raise RuntimeError(
            f"no training data for experience {exp_id}: it was not trained on; "
            "pass probe_bank_stream=benchmark.train_stream to evaluate unseen experiences"
        )

    @torch.no_grad()
    def bank(self, strategy, exp_id: int) -> Tuple[Tensor, Tensor]:
        """Backbone features (model in eval mode, evaluation normalisation) and labels of the
        un-augmented images of training experience ``exp_id`` under the current model."""
        if exp_id not in self._banks:
            dataset = self._training_experience(exp_id).dataset.eval()
            # a private generator keeps evaluation from shifting the global RNG that drives training
            loader = DataLoader(dataset, batch_size=self.mb_size, shuffle=False, num_workers=self.num_workers,
                                generator=torch.Generator())
            was_training = strategy.model.training
            strategy.model.eval()
            feats, labels = [], []
            for batch in loader:
                feats.append(strategy.model(strategy.augmentation.normalize(batch[0].to(strategy.device))))
                labels.append(torch.as_tensor(batch[1]).to(strategy.device))
            strategy.model.train(was_training)
            self._banks[exp_id] = (torch.cat(feats), torch.cat(labels))
        return self._banks[exp_id]

    def bank_ids(self, protocol: str, eval_exp_id: int) -> List[int]:
        """Training experiences whose data form the probe's bank."""
        check_choice("protocol", protocol, PROTOCOLS)
        if protocol == "task_incremental":
            return [eval_exp_id]
        return sorted(self.trained) if self.trained else [eval_exp_id]

    def fitted(self, strategy, probe: Probe, protocol: str, eval_exp_id: Optional[int] = None) -> Probe:
        """A copy of ``probe`` fitted on the bank of ``protocol`` for the evaluated experience
        (default: the one the strategy is evaluating)."""
        if eval_exp_id is None:
            eval_exp_id = strategy.experience.current_experience
        ids = tuple(self.bank_ids(protocol, eval_exp_id))
        key = (id(probe), ids)
        if key not in self._fitted:
            banks = [self.bank(strategy, i) for i in ids]
            fitted = copy.copy(probe)
            if self.knn_k_capped_by_tasks and isinstance(fitted, KNNProbe):
                fitted.k = min(fitted.k, max(1, len(self.trained)))
            self._fitted[key] = fitted.fit(torch.cat([b[0] for b in banks]), torch.cat([b[1] for b in banks]))
        return self._fitted[key]

    # ---------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"trained": list(self.trained)}

    def load_state_dict(self, state: dict, *, device=None, backbone=None) -> None:
        self.trained = list(state["trained"])
        self.invalidate()


@runtime_checkable
class ProbedState(Protocol):
    """What probe metrics read from the strategy: its probe evaluator and the batch's features."""

    probe_evaluator: ProbeEvaluator
    mb_features: Optional[Tensor]


class ProbeAccuracy(GenericPluginMetric[float, Accuracy]):
    """Accuracy of ``probe`` under ``protocol``, emitted per experience or per stream.

    Args:
        probe: a probe instance (it is copied before every fit).
        protocol: ``class_incremental`` or ``task_incremental``.
        emit_at: ``experience`` or ``stream``.

    Attributes:
        last_values: per-experience metrics only: the accuracy of every experience of the
            last evaluated stream, by experience id.
    """

    def __init__(self, probe: Probe, protocol: str, *, emit_at: str = "experience") -> None:
        check_choice("protocol", protocol, PROTOCOLS)
        check_choice("emit_at", emit_at, ("experience", "stream"))
        super().__init__(Accuracy(), reset_at=emit_at, emit_at=emit_at, mode="eval")
        self.probe = probe
        self.protocol = protocol
        self.emit_at = emit_at
        self.last_values: Dict[int, float] = {}

    def update(self, strategy) -> None:
        if not isinstance(strategy, ProbedState) or strategy.mb_features is None:
            raise TypeError("ProbeAccuracy needs a SelfSupervisedStrategy (it reads strategy.mb_features "
                            "and strategy.probe_evaluator)")
        fitted = strategy.probe_evaluator.fitted(strategy, self.probe, self.protocol)
        scores = fitted.predict_scores(strategy.mb_features)
        self._metric.update(scores.argmax(1), strategy.mb_y)

    def before_eval(self, strategy):
        self.last_values = {}
        return super().before_eval(strategy)

    def after_eval_exp(self, strategy):
        if self.emit_at == "experience":
            self.last_values[strategy.experience.current_experience] = float(self.result())
        return super().after_eval_exp(strategy)

    @property
    def key(self) -> str:
        """``knn_ci``, ``linear_ti``, ...: the name of this probe and protocol in results files."""
        return f"{self.probe.name}_{PROTOCOL_TAGS[self.protocol].lower()}"

    def __str__(self) -> str:
        suffix = "Exp" if self.emit_at == "experience" else "Stream"
        return f"{probe_metric_prefix(self.probe.name, self.protocol)}_{suffix}"


def probe_accuracy_metrics(
    *,
    probes: Sequence[str] = ("knn",),
    protocols: Sequence[str] = PROTOCOLS,
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
