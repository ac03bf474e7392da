"""Training-efficiency metrics as Avalanche plugin metrics.

:class:`EfficiencyMetrics` measures, for every training experience:

* ``TrainTime_Exp`` wall time of training (seconds, CUDA-synchronised at the experience's
  start and end only), with the counting kept out: each counted iteration's
  forward/backward/update window is replaced by the median window of the uncounted
  iterations of the experience (with ``count_every = 1`` every iteration is counted, nothing
  is left to compare with, and the time includes the counting: use ``count_every > 1`` when
  time matters). On CUDA the windows are timed with CUDA events read at the end of the
  experience, so timing never makes the host wait inside the training loop;
* ``CountedTime_Exp``: the wall time of the counted iterations' windows that was replaced;
* ``Throughput_Exp`` training images per second;
* ``FwdFLOPs_Exp`` / ``BwdFLOPs_Exp``: forward / backward FLOPs over the experience, counted
  with :class:`torch.utils.flop_counter.FlopCounterMode`, and ``FwdFLOPs_Iter`` /
  ``BwdFLOPs_Iter`` their mean per iteration;
* ``SavedActBytes_Iter``: bytes of tensors autograd saves for backward in one
  iteration, excluding parameters (device independent; mean over iterations);
* ``PeakGPUMem_Exp``: peak allocated CUDA memory in bytes (CUDA only).

Which iterations are counted: every ``count_every``-th, and also the first iteration after
anything that changes an iteration's cost: the set of parameters that require gradients (a
frozen prefix grows or shrinks), the shape of the mini-batch (the last, smaller batch of an
epoch) or the strategy's ``precision``. An uncounted iteration costs what the last counted one
did, so the totals are exact whenever the cost changes only with that state, however short the
task and wherever in it the prefix changes.

The forward count spans ``before_forward`` to ``before_backward`` (SSL forward,
loss and plugin terms added before backward); the backward count spans the
backward pass. Plugins that mix inputs (LUMP) run before the count starts.

Example:
    >>> from avalanche.training.plugins import EvaluationPlugin
    >>> evaluator = EvaluationPlugin(EfficiencyMetrics(count_every=1))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import MetricValue
from torch.utils.flop_counter import FlopCounterMode

from .validation import check_number

__all__ = ["EfficiencyMetrics", "MetricsConfig", "SavedTensorMeter", "TimeStamp", "seconds_between", "time_stamp"]

#: A point in time: the host clock's reading (seconds) on CPU, a recorded CUDA event on CUDA.
TimeStamp = Union[float, "torch.cuda.Event"]


def time_stamp(device: Union[str, torch.device]) -> TimeStamp:
    """A point in time that does not make the host wait: the host clock on CPU, a CUDA event
    recorded on the current stream on CUDA (read later with :func:`seconds_between`).

    Parameters:
        device: the device whose work is being timed.

    Example:
        >>> start = time_stamp("cpu"); end = time_stamp("cpu")
        >>> seconds_between(start, end) >= 0
        True
    """
    if torch.device(device).type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def seconds_between(start: TimeStamp, end: TimeStamp) -> float:
    """Seconds from ``start`` to ``end``, two stamps of :func:`time_stamp` on the same device.
    CUDA events must have completed (synchronise once before reading a batch of them).

    Parameters:
        start: the earlier stamp.
        end: the later stamp.
    """
    if isinstance(start, float) != isinstance(end, float):
        raise TypeError(f"seconds_between: stamps of different kinds ({type(start).__name__}, "
                        f"{type(end).__name__}); accepted: two host-clock floats or two CUDA events")
    if isinstance(start, float):
        return end - start
    return start.elapsed_time(end) / 1000


@dataclass
class MetricsConfig:
    """The ``metrics`` configuration section.

    Attributes:
        flops_every: count FLOPs and saved-activation bytes on every ``flops_every``-th
            training iteration (10: a sample; an uncounted iteration costs what the last counted
            one did, and the counted iterations' time is kept out of ``TrainTime_Exp``); the
            first iteration after the frozen prefix, batch shape or precision changes is always
            counted. 1: every iteration, and the time includes counting.
    """

    flops_every: int = 10

    def __post_init__(self) -> None:
        check_number("flops_every", self.flops_every, at_least=1, integer=True)


class SavedTensorMeter:
    """Context manager summing the bytes of distinct tensors autograd saves for backward.

    Args:
        exclude: tensors whose storages are not counted (e.g. model parameters).
    """

    def __init__(self, exclude=()) -> None:
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._seen: Dict[int, int] = {}
        self._ctx = None

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    def _pack(self, t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in self._excluded:
                self._seen[ptr] = max(self._seen.get(ptr, 0), storage.nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. meta/sparse)
            pass
        return t

    def __enter__(self) -> "SavedTensorMeter":
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)


class EfficiencyMetrics(PluginMetric[Dict[str, float]]):
    """Time, throughput, FLOPs, saved-activation bytes and peak memory per training experience.

    Args:
        count_every: count FLOPs and saved bytes on every ``count_every``-th
            iteration (1 = every iteration), and on the first iteration after a change of
            the trainable parameters, the batch shape or the precision; an uncounted iteration
            costs what the last counted one did.
    """

    def __init__(self, *, count_every: int = 1) -> None:
        super().__init__()
        check_number("count_every", count_every, at_least=1, integer=True)
        self.count_every = count_every
        self.last: Dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        # the last counted iteration's (forward FLOPs, backward FLOPs, saved bytes) and the sums over iterations
        self._cost: List[float] = [0.0, 0.0, 0.0]
        self._totals: List[float] = [0.0, 0.0, 0.0]
        self._state: Optional[tuple] = None
        self._count_now = False
        self._iters = 0
        self._images = 0
        self._start = 0.0
        self._window_start: Any = None
        self._windows: List[Tuple[Any, Any, bool]] = []  # (start, end, counted): host times or CUDA events
        self._counted_time = 0.0
        self._counter: Optional[FlopCounterMode] = None
        self._meter: Optional[SavedTensorMeter] = None

    def result(self) -> Dict[str, float]:
        return dict(self.last)

    @staticmethod
    def _sync(strategy) -> None:
        if torch.device(strategy.device).type == "cuda":
            torch.cuda.synchronize(strategy.device)

    def before_training_exp(self, strategy):
        self.reset()
        if torch.device(strategy.device).type == "cuda":
            torch.cuda.reset_peak_memory_stats(strategy.device)
        self._sync(strategy)
        self._start = time.perf_counter()

    @staticmethod
    def cost_state(strategy) -> tuple:
        """What an iteration's FLOPs and saved bytes depend on, besides the model's architecture:
        which parameters train, the mini-batch shape and the precision (host-side reads only)."""
        trainable = tuple(p.requires_grad for p in strategy.model.parameters())
        batch = getattr(strategy, "mb_x", None)
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else None
        return trainable, shape, getattr(strategy, "precision", None)

    def before_forward(self, strategy):
        self._window_start = time_stamp(strategy.device)
        state = self.cost_state(strategy)
        self._count_now = self._iters % self.count_every == 0 or state != self._state
        self._state = state
        if self._count_now:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
            self._meter = SavedTensorMeter(exclude=list(strategy.model.parameters()))
            self._meter.__enter__()

    def before_backward(self, strategy):
        if self._counter is not None and self._meter is not None:
            self._meter.__exit__(None, None, None)
            self._counter.__exit__(None, None, None)
            self._cost[0] = self._counter.get_total_flops()
            self._cost[2] = self._meter.bytes
            self._meter = None
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def after_backward(self, strategy):
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._cost[1] = self._counter.get_total_flops()
            self._counter = None

    def after_update(self, strategy):
        self._windows.append((self._window_start, time_stamp(strategy.device), self._count_now))

    def after_training_iteration(self, strategy):
        self._iters += 1
        self._images += len(strategy.mb_x)
        self._totals = [t + c for t, c in zip(self._totals, self._cost)]

    def after_training_exp(self, strategy):
        self._sync(strategy)
        elapsed = time.perf_counter() - self._start
        seconds = [(seconds_between(start, end), counted) for start, end, counted in self._windows]
        counted_windows = [w for w, counted in seconds if counted]
        uncounted = sorted(w for w, counted in seconds if not counted)
        self._counted_time = sum(counted_windows)
        if uncounted:  # counted windows replaced by a typical uncounted one
            typical = uncounted[len(uncounted) // 2]
            elapsed += len(counted_windows) * typical - self._counted_time
        fwd, bwd, saved = self._totals
        per_iter = lambda total: total / self._iters if self._iters else 0.0  # noqa: E731
        values = {
            "TrainTime_Exp": elapsed,
            "CountedTime_Exp": self._counted_time,
            "Throughput_Exp": self._images / elapsed if elapsed > 0 else 0.0,
            "FwdFLOPs_Iter": per_iter(fwd),
            "BwdFLOPs_Iter": per_iter(bwd),
            "FwdFLOPs_Exp": fwd,
            "BwdFLOPs_Exp": bwd,
            "SavedActBytes_Iter": per_iter(saved),
            "Iterations_Exp": float(self._iters),
        }
        if torch.device(strategy.device).type == "cuda":
            values["PeakGPUMem_Exp"] = float(torch.cuda.max_memory_allocated(strategy.device))
        self.last = values
        exp = strategy.experience.current_experience
        x = strategy.clock.train_iterations
        return [MetricValue(self, f"{k}/train_phase/train_stream/Exp{exp:03d}", v, x) for k, v in values.items()]

    def __str__(self) -> str:
        return "Efficiency"
