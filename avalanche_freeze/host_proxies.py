"""Host-side cost of a training iteration, measurable on CPU: what makes a GPU loop host-bound.

On a GPU, every device op is a kernel launch paid for on the host, every read of a device value
(``.item()``, ``bool(tensor)``, ``nonzero``) makes the host wait for the device, and every
per-image Python call scales the host's work with the batch. These counts do not depend on the
device, so they are measured on CPU:

* :class:`OpCounter` (a ``TorchDispatchMode``): the ops dispatched in a window: ``device_ops``
  (ops that compute: views and metadata queries excluded) and ``host_syncs`` (ops whose result
  the host must read: :data:`HOST_SYNC_OPS`, the ops behind ``.item()``, ``float()``,
  ``bool()``, data-dependent shapes);
* :class:`PythonCallCounter`: Python function calls in a window (``sys.setprofile``);
  :func:`per_sample_calls` turns the counts of two batch sizes into the calls per iteration
  that grow with the batch (per-image loops: ``__getitem__``, per-image crops, reservoir loops);
* :class:`DeviceBusyProfiler` (``torch.profiler``): the share of a window during which the
  device computes (:func:`busy_fraction` of its kernels on CUDA; of the ATen ops on CPU, where
  the rest is the loop's Python and the profiler's own overhead, so a lower bound there).

Example:
    >>> import torch
    >>> x = torch.ones(4)
    >>> with OpCounter() as ops:
    ...     y = (x * 2).view(2, 2).sum()
    ...     _ = float(y)
    >>> ops.device_ops, ops.host_syncs
    (2, 1)
    >>> per_sample_calls({64: 1000, 128: 1640}, batch=128)
    1280.0
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Dict, Iterable, Optional, Tuple, Union

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["DeviceBusyProfiler", "HOST_SYNC_OPS", "OpCounter", "PythonCallCounter", "busy_fraction", "per_sample_calls"]

aten = torch.ops.aten
#: Ops whose result the host reads (a wait on the device's queue on CUDA).
HOST_SYNC_OPS = frozenset({aten._local_scalar_dense.default, aten.is_nonzero.default, aten.nonzero.default,
                           aten.masked_select.default, aten.equal.default, aten._unique2.default,
                           aten.unique_consecutive.default, aten.repeat_interleave.Tensor})
#: Ops that only describe tensors (no kernel runs).
_METADATA_OPS = frozenset({aten.sym_size.int, aten.sym_stride.int, aten.sym_numel.default,
                           aten.sym_storage_offset.default, aten.is_same_size.default, aten.size.default,
                           aten.stride.default, aten.dim.default})


class OpCounter(TorchDispatchMode):
    """Count the ops dispatched while active: ``device_ops`` (computing ops), ``host_syncs``
    (:data:`HOST_SYNC_OPS`) and ``by_op`` (every op by name, views included)."""

    def __init__(self) -> None:
        super().__init__()
        self.device_ops = 0
        self.host_syncs = 0
        self.by_op: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.by_op[str(func.overloadpacket.__name__)] += 1
        if func in HOST_SYNC_OPS:
            self.host_syncs += 1
        if not func.is_view and func not in _METADATA_OPS and func is not aten._local_scalar_dense.default:
            self.device_ops += 1
        return func(*args, **(kwargs or {}))


class PythonCallCounter:
    """Count Python function calls while active (``sys.setprofile``; C functions not counted).

    Example:
        >>> def f():
        ...     return sum(g(i) for i in range(3))
        >>> def g(i):
        ...     return i
        >>> with PythonCallCounter() as calls:
        ...     _ = f()
        >>> calls.count >= 4   # f, the generator's steps, g three times
        True
    """

    def __init__(self) -> None:
        self.count = 0
        self._previous = None

    def _profile(self, frame, event, arg) -> None:
        if event == "call":
            self.count += 1

    def __enter__(self) -> "PythonCallCounter":
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(self._previous)


def per_sample_calls(calls_by_batch: Dict[int, float], *, batch: int) -> float:
    """The Python calls of an iteration at ``batch`` that grow with the batch: the slope of the
    call count between the two measured batch sizes, times ``batch`` (0 when nothing grows)."""
    if len(calls_by_batch) != 2:
        raise ValueError(f"calls_by_batch has {len(calls_by_batch)} batch sizes; accepted: exactly two")
    (small, a), (large, b) = sorted(calls_by_batch.items())
    return max(0.0, (b - a) / (large - small) * batch)


def busy_fraction(intervals: Iterable[Tuple[float, float]], *, window: Tuple[float, float]) -> float:
    """The share of ``window`` covered by the union of ``intervals`` (overlaps counted once,
    parts outside the window cut off).

    Parameters:
        intervals: ``(start, end)`` pairs, e.g. kernel times in microseconds.
        window: ``(start, end)`` of the span measured, in the same unit.

    Example:
        >>> busy_fraction([(0, 2), (1, 3), (6, 12)], window=(0, 10))
        0.7
    """
    lo, hi = window
    if not hi > lo:
        raise ValueError(f"window={window!r} is not accepted; accepted: (start, end) with end > start")
    covered, reach = 0.0, lo
    for start, end in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if end <= max(start, reach):  # empty, or inside what is already covered
            continue
        covered += end - max(start, reach)
        reach = end
    return covered / (hi - lo)


class DeviceBusyProfiler:
    """Profile a window (``with``) and measure the share of it during which the device computes:
    ``fraction``, the :func:`busy_fraction` of the device's kernels (and copies) on CUDA, of the
    ATen ops on CPU, over the window's own span (a ``record_function`` marker, on the profiler's
    clock). On CUDA the exit waits for the window's kernels (outside any timed window: use it on
    an iteration of its own). The profiler's bookkeeping slows the host a little, so the fraction
    is a lower bound of the unprofiled loop's.

    Parameters:
        device: the device whose work is measured (``cpu`` or ``cuda[:N]``).

    Example:
        >>> import torch
        >>> with DeviceBusyProfiler("cpu") as busy:
        ...     _ = torch.ones(256, 256) @ torch.ones(256, 256)
        >>> 0.0 < busy.fraction <= 1.0
        True
    """

    MARK = "avalanche_freeze.busy_window"

    def __init__(self, device: Union[str, torch.device] = "cpu") -> None:
        self.device = torch.device(device)
        self.fraction: Optional[float] = None
        self._profile = None
        self._mark = None

    def __enter__(self) -> "DeviceBusyProfiler":
        from torch.profiler import ProfilerActivity, profile, record_function

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        self._profile = profile(activities=activities)
        self._profile.__enter__()
        self._mark = record_function(self.MARK)
        self._mark.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        from torch.autograd import DeviceType

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the window's kernels finish inside it
        self._mark.__exit__(*exc)
        self._profile.__exit__(*exc)
        events = self._profile.events()
        marks = [e for e in events if e.name == self.MARK and e.device_type == DeviceType.CPU]
        if not marks:
            raise RuntimeError("DeviceBusyProfiler: the profiler recorded no window marker")
        window = (marks[0].time_range.start, marks[0].time_range.end)
        if self.device.type == "cuda":
            work = [e for e in events if e.device_type == DeviceType.CUDA and e.name != self.MARK
                    and not getattr(e, "is_user_annotation", False)]
        else:
            work = [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")]
        self.fraction = busy_fraction(((e.time_range.start, e.time_range.end) for e in work), window=window)
