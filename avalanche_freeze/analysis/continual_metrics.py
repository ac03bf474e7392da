"""Summary metrics of a continual run, computed from its accuracy matrix.

``acc[i][j]`` is the accuracy on task ``j`` after training task ``i`` (``None`` or
NaN where task ``j`` was not evaluated). With ``T`` tasks:

* average accuracy = ``mean_j acc[T-1][j]``;
* ``forgetting_max``: forgetting of task ``j < T-1`` = ``max_{j <= i < T-1} acc[i][j] - acc[T-1][j]``,
  averaged over ``j`` (Chaudhry et al., ECCV 2018; the definition the freezing and LUMP papers state);
* ``forgetting_last``: ``mean_{j < T-1} (acc[j][j] - acc[T-1][j])``, what LUMP's reference code
  and Avalanche's ``forgetting_metrics`` compute (equal to ``-BWT``; LUMP's published
  "forgetting" is this one); ``forgetting_avalanche`` is the same quantity computed by
  Avalanche's own :class:`~avalanche.evaluation.metrics.Forgetting` metric on the matrix;
* BWT = ``mean_{j < T-1} (acc[T-1][j] - acc[j][j])``;
* learning accuracy = ``mean_j acc[j][j]``, the accuracy on each task right after learning
  it (plasticity; Riemer et al., ICLR 2019).

Example:
    >>> m = [[0.9, None], [0.7, 0.8]]
    >>> round(average_accuracy(m), 3), round(forgetting_max(m), 3), round(backward_transfer(m), 3)
    (0.75, 0.2, -0.2)
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

__all__ = ["SUMMARIES", "average_accuracy", "backward_transfer", "forgetting_avalanche", "forgetting_last", "forgetting_max",
           "learning_accuracy", "summarize"]

Matrix = Sequence[Sequence[Optional[float]]]


def _value(m: Matrix, i: int, j: int) -> Optional[float]:
    if j >= len(m[i]):
        return None
    v = m[i][j]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _check(m: Matrix) -> int:
    if not m or not m[-1]:
        raise ValueError("the accuracy matrix is empty")
    return len(m)


def average_accuracy(m: Matrix) -> float:
    """Mean accuracy over the tasks trained so far, after the last trained task."""
    t = _check(m)
    vals = [_value(m, t - 1, j) for j in range(t)]
    known = [v for v in vals if v is not None]
    if len(known) != t:
        raise ValueError(f"the last row must have an accuracy for tasks 0..{t - 1}; got {list(m[-1])}")
    return sum(known) / t


def forgetting_max(m: Matrix) -> float:
    """Average max-based forgetting over tasks 0..T-2 (0.0 for a single task)."""
    t = _check(m)
    drops = []
    for j in range(t - 1):
        past = [v for i in range(j, t - 1) if (v := _value(m, i, j)) is not None]
        last = _value(m, t - 1, j)
        if past and last is not None:
            drops.append(max(past) - last)
    return sum(drops) / len(drops) if drops else 0.0


def forgetting_last(m: Matrix) -> float:
    """Average drop from right after learning each task 0..T-2 to the end (= ``-BWT``)."""
    return -backward_transfer(m)


def forgetting_avalanche(m: Matrix) -> float:
    """:func:`forgetting_last` as Avalanche computes it: its ``Forgetting`` metric, fed the accuracy
    right after training each task as the initial value and the final accuracy as the last one."""
    from avalanche.evaluation.metrics import Forgetting

    t = _check(m)
    metric = Forgetting()
    for j in range(t - 1):
        first, last = _value(m, j, j), _value(m, t - 1, j)
        if first is not None and last is not None:
            metric.update(j, first, initial=True)
            metric.update(j, last)
    values = list(metric.result().values())
    return sum(values) / len(values) if values else 0.0


def backward_transfer(m: Matrix) -> float:
    """Average change on earlier tasks between right after learning them and the end."""
    t = _check(m)
    diffs = []
    for j in range(t - 1):
        first, last = _value(m, j, j), _value(m, t - 1, j)
        if first is not None and last is not None:
            diffs.append(last - first)
    return sum(diffs) / len(diffs) if diffs else 0.0


def learning_accuracy(m: Matrix) -> float:
    """Mean accuracy on each task right after training it (the diagonal)."""
    t = _check(m)
    diag = [v for j in range(t) if (v := _value(m, j, j)) is not None]
    if not diag:
        raise ValueError("the accuracy matrix has no diagonal entries")
    return sum(diag) / len(diag)


#: The summaries of :func:`summarize`, in the order tables show them.
SUMMARIES = ("avg_acc", "forgetting_max", "forgetting_last", "forgetting_avalanche", "bwt", "learning_acc")


def summarize(m: Matrix) -> dict:
    """The :data:`SUMMARIES` of an accuracy matrix."""
    return {"avg_acc": average_accuracy(m), "forgetting_max": forgetting_max(m), "forgetting_last": forgetting_last(m),
            "forgetting_avalanche": forgetting_avalanche(m), "bwt": backward_transfer(m),
            "learning_acc": learning_accuracy(m)}


def as_rows(m: Matrix) -> List[List[Optional[float]]]:
    """A plain list-of-lists copy (JSON friendly, NaN -> None)."""
    return [[_value(m, i, j) for j in range(len(row))] for i, row in enumerate(m)]
