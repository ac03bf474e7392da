"""Fixed freezing schedules at the frozen compute of a finished run: the controls of the freezing rule.

A rule that decides which prefix to freeze must do better than simple schedules that
freeze *as much* compute without looking at the data. Frozen compute is measured in
"share-iterations": the sum over training iterations of the frozen prefix's share of the
backbone's forward compute (what a frozen prefix saves of the backward pass). Given a
finished run's decisions (``results.json``'s ``freeze_history`` and per-task iteration
counts), these functions build ``freeze.schedule`` entries ``[task, iteration, blocks]``
(0-based task, iteration within the task, block-level prefix length) for:

* :func:`fixed_schedule`: one prefix, frozen from the start of a given task;
* :func:`freezeout_schedule`: FreezeOut-style (Brock et al., 2017): units frozen one at a
  time, shallow first, at evenly spaced points of the training after task 1 (FreezeOut
  anneals each layer's learning rate to zero by a depth-dependent time; here the layer is
  frozen at that time);
* :func:`random_schedule`: random non-decreasing prefix lengths per task.

Example:
    >>> history = [{"experience": 1, "iteration": 10, "frozen_blocks": 2}]
    >>> shares = [0.1, 0.2, 0.3, 0.4]
    >>> round(frozen_compute(history, [20, 20, 20], shares), 6)      # 0.3 for 10 + 20 iterations
    9.0
    >>> fixed_schedule(9.0, [20, 20, 20], shares, from_task=1)
    [[1, 0, 2]]
"""

from __future__ import annotations

import random
from typing import List, Sequence

__all__ = ["fixed_schedule", "freezeout_schedule", "frozen_compute", "random_schedule", "schedule_compute"]


def _change_points(entries: Sequence[Sequence[int]], iterations: Sequence[int]) -> List[tuple]:
    """``(global iteration, blocks)`` of each entry, in order; an entry at or past its task's last
    iteration takes effect at the next task's start."""
    offsets = [sum(iterations[:t]) for t in range(len(iterations) + 1)]
    points = []
    for task, iteration, blocks in entries:
        task = int(task)
        if task < len(iterations):
            points.append((offsets[task] + min(int(iteration), int(iterations[task])), int(blocks)))
    return sorted(points)


def schedule_compute(entries: Sequence[Sequence[int]], iterations: Sequence[int], shares: Sequence[float]) -> float:
    """Frozen compute (share-iterations) of ``freeze.schedule`` entries over tasks of ``iterations``
    (the prefix only grows, as in the plugin)."""
    cumulative = [sum(shares[:b]) for b in range(len(shares) + 1)]
    end = sum(int(n) for n in iterations)
    total, current, since = 0.0, 0, 0
    for at, blocks in _change_points(entries, iterations):
        total += cumulative[current] * (at - since)
        current, since = max(current, min(blocks, len(shares))), at
    return float(total + cumulative[current] * (end - since))


def frozen_compute(history: Sequence[dict], iterations: Sequence[int], shares: Sequence[float]) -> float:
    """Frozen compute of a run from its decision history (``experience``, ``iteration``, ``frozen_blocks``)."""
    entries = [[h["experience"], h.get("iteration", 0), h["frozen_blocks"]] for h in history]
    return schedule_compute(entries, iterations, shares)


def fixed_schedule(target: float, iterations: Sequence[int], shares: Sequence[float], *,
                   from_task: int) -> List[List[int]]:
    """The one prefix, frozen from the start of ``from_task`` on, whose frozen compute is closest to ``target``."""
    best = min(range(len(shares) + 1),
               key=lambda b: abs(schedule_compute([[from_task, 0, b]], iterations, shares) - target))
    return [[from_task, 0, best]] if best else []


def _global_to_entry(g: int, iterations: Sequence[int], blocks: int) -> List[int]:
    for task, n in enumerate(iterations):
        if g < n:
            return [task, g, blocks]
        g -= n
    return [len(iterations) - 1, int(iterations[-1]), blocks]


def freezeout_schedule(target: float, iterations: Sequence[int], shares: Sequence[float], *,
                       blocks: int, grid: int = 100) -> List[List[int]]:
    """FreezeOut-style: the first ``blocks`` units frozen one at a time, shallow first, at evenly spaced
    iterations from ``t0`` to ``t1`` of the training after task 1, with ``t0 <= t1`` chosen (on a grid
    of ``grid`` points each) so that the frozen compute is closest to ``target``."""
    if blocks <= 0 or len(iterations) < 2:
        return []
    first, end = int(iterations[0]), int(sum(iterations))
    points = sorted({int(round(first + i * (end - first) / grid)) for i in range(grid + 1)})
    best: List[List[int]] = []
    best_gap = float("inf")
    for i, t0 in enumerate(points):
        for t1 in points[i:] if blocks > 1 else [t0]:
            step = (t1 - t0) / (blocks - 1) if blocks > 1 else 0.0
            entries = [_global_to_entry(int(round(t0 + k * step)), iterations, k + 1) for k in range(blocks)]
            gap = abs(schedule_compute(entries, iterations, shares) - target)
            if gap < best_gap:
                best, best_gap = entries, gap
    return best


def random_schedule(target: float, iterations: Sequence[int], shares: Sequence[float], *, seed: int,
                    tries: int = 2000) -> List[List[int]]:
    """Random non-decreasing prefix lengths, one per task after the first, each set at the task's start:
    of ``tries`` draws (seeded), the one whose frozen compute is closest to ``target``."""
    rng = random.Random(seed)
    n_units, best, best_gap = len(shares), [], float("inf")
    for _ in range(tries):
        lengths = sorted(rng.randint(0, n_units) for _ in range(len(iterations) - 1))
        entries = [[task + 1, 0, b] for task, b in enumerate(lengths) if b]
        gap = abs(schedule_compute(entries, iterations, shares) - target)
        if gap < best_gap:
            best, best_gap = entries, gap
    return best
