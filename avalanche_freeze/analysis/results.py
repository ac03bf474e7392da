"""Results of a run: the accuracy matrices and efficiency records, their summary, and tables.

:class:`RunResults` is what ``results.json`` holds. It is filled from structured values
(each probe metric's per-experience accuracies, the efficiency metric's last values),
never parsed back from metric names. :func:`format_table` is the one table formatter of
the project: the CLI's results table, the strategy comparison and the freezing benchmark
all print through it.

Example:
    >>> print(format_table(["arm", "acc %"], [["lump", 91.234], ["lump_freeze", 90.5]]))
    arm          acc %
    lump         91.23
    lump_freeze  90.50
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .continual_metrics import SUMMARIES, as_rows, average_accuracy, summarize
from .stats import efficiency_ratio

__all__ = ["EFFICIENCY_TOTALS", "KNN_PROTOCOLS", "RunResults", "format_results_table", "format_table",
           "paired_deltas"]

#: The kNN probe's two protocols: class-incremental and task-incremental accuracy matrices.
KNN_PROTOCOLS = ("knn_ci", "knn_ti")

#: Efficiency values summed over tasks in ``efficiency_total``.
EFFICIENCY_TOTALS = ("TrainTime_Exp", "CountedTime_Exp", "FreezeDecisionTime_Exp", "FwdFLOPs_Exp", "BwdFLOPs_Exp",
                     "Iterations_Exp")


class RunResults:
    """The results of one run, as a JSON-friendly dict (:attr:`data`).

    Args:
        config: the run's configuration as a dict.
        keys: the accuracy matrices' names (``knn_ci``, ``knn_ti``, ...).
        n_tasks: number of tasks of the benchmark.
    """

    def __init__(self, *, config: Dict[str, Any], keys: Sequence[str], n_tasks: int) -> None:
        self.data: Dict[str, Any] = {
            "config": config,
            "acc_matrix": {k: [] for k in keys},
            "efficiency": [],
            "n_tasks": n_tasks,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RunResults":
        results = cls(config=data["config"], keys=(), n_tasks=data["n_tasks"])
        results.data = data
        return results

    def record_task(self, task: int, accuracies: Dict[str, Dict[int, float]], efficiency: Dict[str, float],
                    *, frozen_blocks: int, freeze_history: Optional[List[dict]] = None) -> None:
        """Add the evaluation after training ``task``: ``accuracies[key][exp_id]`` per matrix."""
        n = self.data["n_tasks"]
        for key, matrix in self.data["acc_matrix"].items():
            values = accuracies.get(key, {})
            matrix.append([values.get(j) for j in range(n)])
        entry = {**efficiency, "task": task, "frozen_blocks": frozen_blocks}
        if freeze_history is not None:
            self.data["freeze_history"] = list(freeze_history)
            # what ended the prefix at the task's last decision (None: the rule did not decide in it)
            in_task = [h for h in freeze_history if h.get("experience") == task]
            entry["freeze_stopped_by"] = in_task[-1].get("stopped_by") if in_task else None
        self.data["efficiency"].append(entry)

    def record_joint(self, accuracies: Dict[str, Dict[int, float]], efficiency: Dict[str, float]) -> None:
        """Record a joint-training run (all tasks trained at once, evaluated once): the matrices'
        last row holds the evaluation, the rows before it are empty; only the average accuracy
        is defined (forgetting, BWT and learning accuracy need a sequence of tasks)."""
        n = self.data["n_tasks"]
        for key, matrix in self.data["acc_matrix"].items():
            values = accuracies.get(key, {})
            matrix[:] = [[None] * n for _ in range(n - 1)] + [[values.get(j) for j in range(n)]]
        self.data["efficiency"] = [{**efficiency, "task": n - 1, "frozen_blocks": 0}]
        self.data["joint"] = True

    def finalise(self) -> Dict[str, Any]:
        """Add the summaries (average accuracy, forgetting, BWT, learning accuracy, totals)."""
        r = self.data
        if r.get("joint"):
            summaries = {k: {name: None for name in SUMMARIES} for k in r["acc_matrix"]}
            for k, m in r["acc_matrix"].items():
                summaries[k]["avg_acc"] = average_accuracy(m)
        else:
            summaries = {k: summarize(m) for k, m in r["acc_matrix"].items()}
        r["acc_matrix"] = {k: as_rows(m) for k, m in r["acc_matrix"].items()}
        for name in SUMMARIES:
            r[name] = {k: v[name] for k, v in summaries.items()}
        eff = r["efficiency"]
        total = {key: sum(e.get(key, 0.0) for e in eff) for key in EFFICIENCY_TOTALS}
        total["SavedActBytes_Iter_mean"] = sum(e.get("SavedActBytes_Iter", 0.0) for e in eff) / len(eff) if eff else 0.0
        if any("PeakGPUMem_Exp" in e for e in eff):
            total["PeakGPUMem_max"] = max(e.get("PeakGPUMem_Exp", 0.0) for e in eff)
        r["efficiency_total"] = total
        return r


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e5 else f"{value:.2f}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned.

    Floats print with 2 decimals (4 significant digits from 1e5 on); strings as they are
    (format a cell yourself for another precision); ``None`` as ``-``.
    """
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


def format_results_table(results: Dict[str, Any]) -> str:
    """The accuracy matrices, then the summaries per matrix (average accuracy, both forgetting
    definitions and Avalanche's, BWT, learning accuracy), then efficiency."""
    blocks: List[str] = []
    for key, matrix in results["acc_matrix"].items():
        n = len(matrix[0]) if matrix else 0
        rows = [[f"T{i}"] + [None if v is None else f"{100 * v:.1f}" for v in row] for i, row in enumerate(matrix)]
        blocks.append(f"accuracy matrix [{key}] (row i = after training task i, %)\n"
                      + format_table(["after"] + [f"T{j}" for j in range(n)], rows))
    rows = [[key] + [None if results[name][key] is None else f"{100 * results[name][key]:.2f}" for name in SUMMARIES]
            for key in results["acc_matrix"]]
    blocks.append(format_table(["protocol (%)"] + list(SUMMARIES), rows))
    tot = results.get("efficiency_total", {})
    if tot:
        blocks.append(
            f"train time {tot['TrainTime_Exp']:.1f}s | fwd FLOPs {tot['FwdFLOPs_Exp']:.3g} | "
            f"bwd FLOPs {tot['BwdFLOPs_Exp']:.3g} | saved activations/iter {tot['SavedActBytes_Iter_mean'] / 2**20:.1f} MiB"
        )
    return "\n\n".join(blocks)


def paired_deltas(lump: Dict[str, Any], rule: Dict[str, Any]) -> Tuple[Optional[float], Dict[str, float], Dict[str, float]]:
    """LUMP's backward FLOPs over the rule's, and the rule's accuracy and forgetting minus
    LUMP's (in points, per kNN protocol), for two ``results.json`` of the same seed.

    Args:
        lump: the LUMP run's results (``avg_acc``, ``forgetting_max``, ``efficiency_total``).
        rule: the freezing run's results, same keys.

    Example:
        >>> lump = {"avg_acc": {"knn_ci": 0.6, "knn_ti": 0.9}, "forgetting_max": {"knn_ci": 0.1, "knn_ti": 0.0},
        ...         "efficiency_total": {"BwdFLOPs_Exp": 300.0}}
        >>> rule = {"avg_acc": {"knn_ci": 0.61, "knn_ti": 0.9}, "forgetting_max": {"knn_ci": 0.1, "knn_ti": 0.02},
        ...         "efficiency_total": {"BwdFLOPs_Exp": 200.0}}
        >>> ratio, acc, fgt = paired_deltas(lump, rule)
        >>> ratio, round(acc["knn_ci"], 2), round(fgt["knn_ti"], 2)
        (1.5, 1.0, 2.0)
    """
    ratio = efficiency_ratio(lump, rule, "BwdFLOPs_Exp")
    acc = {k: 100 * (rule["avg_acc"][k] - lump["avg_acc"][k]) for k in KNN_PROTOCOLS}
    fgt = {k: 100 * (rule["forgetting_max"][k] - lump["forgetting_max"][k]) for k in KNN_PROTOCOLS}
    return ratio, acc, fgt
