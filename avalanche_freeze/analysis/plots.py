"""Every plot of the project (matplotlib, no display): the report's figures of a folder of runs and
the freezing benchmark's accuracy-vs-FLOPs panels.

Figures are built with :class:`matplotlib.figure.Figure` (no global pyplot state), at
:data:`DPI`, a fixed panel size per kind of plot (:func:`figure_size` gives the pixels).

Example:
    >>> figure_size(3, MATRIX_PANEL)
    (900, 280)
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .stats import mean_std
from .summary import EFFICIENCY_RATIOS, Arm, ArmSummary

__all__ = ["CURVE_PANEL", "DPI", "EFFICIENCY_PANEL", "MATRIX_PANEL", "SCATTER_PANEL", "SCORE_PANEL", "figure_size",
           "plot_accuracy_matrices", "plot_accuracy_vs_flops", "plot_cells_accuracy_vs_flops", "plot_efficiency",
           "plot_freeze_scores", "plot_task_accuracy"]

#: Resolution of every figure.
DPI = 100
_DPI = DPI


def _layout(n_panels: int, max_cols: int) -> Tuple[int, int]:
    """Columns and rows of a figure of ``n_panels`` panels, at most ``max_cols`` a row."""
    cols = max(1, min(max_cols, n_panels))
    return cols, max(1, math.ceil(n_panels / cols))


def _figure(n_panels: int, panel: Tuple[float, float], max_cols: int = 4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    cols, rows = _layout(n_panels, max_cols)
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows), dpi=_DPI, layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return fig, axes


def figure_size(n_panels: int, panel: Tuple[float, float], max_cols: int = 4) -> Tuple[int, int]:
    """The pixel size (width, height) of a report figure of ``n_panels`` panels."""
    cols, rows = _layout(n_panels, max_cols)
    return round(panel[0] * cols * _DPI), round(panel[1] * rows * _DPI)


def _mean_matrix(arm: Arm, key: str) -> List[List[float]]:
    matrices = [r["acc_matrix"][key] for r in arm.runs]
    n_rows, n_cols = len(matrices[0]), len(matrices[0][0])
    out = []
    for i in range(n_rows):
        row = []
        for j in range(n_cols):
            vals = [m[i][j] for m in matrices if m[i][j] is not None]
            row.append(100 * statistics.fmean(vals) if vals else math.nan)
        out.append(row)
    return out


MATRIX_PANEL = (3.0, 2.8)
CURVE_PANEL = (3.0, 2.4)
SCORE_PANEL = (3.6, 2.8)


def plot_accuracy_matrices(arms: Sequence[Arm], key: str, path: Path) -> Path:
    """Heatmap of each arm's mean accuracy matrix (row: after task i, column: task j)."""
    fig, axes = _figure(len(arms), MATRIX_PANEL)
    for ax, arm in zip(axes, arms):
        m = _mean_matrix(arm, key)
        image = ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
        n = len(m)
        if n <= 10:
            for i in range(n):
                for j in range(len(m[i])):
                    if not math.isnan(m[i][j]):
                        ax.text(j, i, f"{m[i][j]:.0f}", ha="center", va="center", fontsize=6,
                                color="white" if m[i][j] < 60 else "black")
        ax.set_title(arm.name, fontsize=8)
        ax.set_xticks(range(len(m[0])), [f"T{j}" for j in range(len(m[0]))])
        ax.set_yticks(range(n), [f"T{i}" for i in range(n)])
        ax.set_xlabel("accuracy on task", fontsize=7)
        ax.set_ylabel("after training task", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.colorbar(image, ax=axes, shrink=0.6, label=f"{key} accuracy %")
    fig.savefig(path, dpi=_DPI)
    return path


def plot_task_accuracy(arms: Sequence[Arm], key: str, path: Path) -> Path:
    """Accuracy on each task (one line per task) after each training task, per arm."""
    fig, axes = _figure(len(arms), CURVE_PANEL)
    for ax, arm in zip(axes, arms):
        m = _mean_matrix(arm, key)
        for j in range(len(m[0])):
            xs = [i for i in range(len(m)) if not math.isnan(m[i][j])]
            ax.plot(xs, [m[i][j] for i in xs], marker="o", markersize=2, linewidth=1, label=f"T{j}")
        ax.set_ylim(0, 100)
        ax.set_xticks(range(len(m)))
        ax.set_title(arm.name, fontsize=8)
        ax.set_xlabel("after task", fontsize=7)
        ax.set_ylabel(f"{key} %", fontsize=7)
        ax.tick_params(labelsize=6)
    if axes:
        axes[0].legend(fontsize=5, ncol=2)
    fig.savefig(path, dpi=_DPI)
    return path


def _task_end_decisions(history: Sequence[Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
    """The last freezing decision of each task (scores, frozen units)."""
    last: Dict[int, Dict[str, Any]] = {}
    for h in history:
        last[h["experience"]] = h
    return dict(sorted(last.items()))


def plot_freeze_scores(arms: Sequence[Arm], path: Path) -> Optional[Path]:
    """Per freezing arm (its first seed): the score of every unit at each task's last decision
    (colour), frozen units marked with a cross; ``None`` when no arm froze with a rule."""
    arms = [a for a in arms if any(h.get("scores") for h in a.runs[0].get("freeze_history") or [])]
    if not arms:
        return None
    import matplotlib

    fig, axes = _figure(len(arms), SCORE_PANEL, max_cols=3)
    for ax, arm in zip(axes, arms):
        decisions = _task_end_decisions(arm.runs[0]["freeze_history"])
        units: List[str] = []
        for h in decisions.values():
            for unit in [*h.get("scores", {}), *h.get("frozen_units", [])]:
                if unit not in units:
                    units.append(unit)
        tasks = list(decisions)
        grid = [[decisions[t].get("scores", {}).get(u, math.nan) for t in tasks] for u in units]
        cmap = matplotlib.colormaps["magma"].with_extremes(bad="lightgrey")  # grey: not scored
        image = ax.imshow(grid, vmin=0, vmax=1, cmap=cmap, aspect="auto")
        for c, t in enumerate(tasks):
            for r, u in enumerate(units):
                if u in decisions[t].get("frozen_units", []):
                    ax.plot(c, r, marker="x", color="cyan", markersize=5)
        ax.set_xticks(range(len(tasks)), [f"T{t}" for t in tasks], fontsize=6)
        ax.set_yticks(range(len(units)), units, fontsize=5)
        ax.set_title(f"{arm.name} (seed {arm.seeds[0]})", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="score (x: frozen)")
    fig.savefig(path, dpi=_DPI)
    return path


EFFICIENCY_PANEL = (7.0, 3.0)


def plot_efficiency(summaries: Sequence[ArmSummary], path: Path) -> Path:
    """Bars of the efficiency ratios against LUMP (> 1: cheaper) per arm."""
    fig, (ax,) = _figure(1, EFFICIENCY_PANEL)
    width = 0.8 / len(EFFICIENCY_RATIOS)
    for k, (label, name) in enumerate(EFFICIENCY_RATIOS):
        values = [s.ratios[name] if s.ratios[name] is not None else 0.0 for s in summaries]
        ax.bar([i + k * width for i in range(len(summaries))], values, width=width, label=label)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks([i + width for i in range(len(summaries))], [s.name for s in summaries], rotation=30,
                  ha="right", fontsize=6)
    ax.set_ylabel("LUMP / arm (> 1: cheaper)", fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
    ax.legend(fontsize=6)
    fig.savefig(path, dpi=_DPI)
    return path


SCATTER_PANEL = (5.0, 3.6)


def plot_accuracy_vs_flops(arms: Sequence[Arm], key: str, path: Path) -> Path:
    """Final accuracy (mean ± std over seeds) against total backward FLOPs, one point per arm."""
    fig, (ax,) = _figure(1, SCATTER_PANEL)
    for arm in arms:
        flops = [r.get("efficiency_total", {}).get("BwdFLOPs_Exp", 0.0) for r in arm.runs]
        accs = [100 * r["avg_acc"][key] for r in arm.runs if r.get("avg_acc", {}).get(key) is not None]
        if not accs:
            continue
        (x, _), (y, std) = mean_std(flops), mean_std(accs)
        ax.errorbar(x, y, yerr=std or 0.0, fmt="o", capsize=3, markersize=4)
        ax.annotate(arm.name, (x, y), fontsize=5, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("backward FLOPs (total)", fontsize=7)
    ax.set_ylabel(f"final {key} accuracy %", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.savefig(path, dpi=_DPI)
    return path




#: Markers of the freezing benchmark's arms (:func:`plot_cells_accuracy_vs_flops`).
ARM_MARKERS = {"lump": "s", "rule": "*", "fixed2": "o", "fixed3": "^", "freezeout": "D", "random": "x"}


def plot_cells_accuracy_vs_flops(cells: Sequence[Dict[str, Any]], path: Path) -> Path:
    """The freezing benchmark's figure: class-incremental kNN accuracy against backward FLOPs per arm,
    mean and standard deviation over seeds, one panel per cell (``experiments/bench_freeze.py``'s
    cell summaries: ``ssl``, ``epochs`` and, per arm, ``bwd_flops`` and ``acc_knn_ci`` per seed)."""
    fig, axes = _figure(len(cells), (4.2, 3.6), max_cols=len(cells))
    colours = {arm: f"C{i}" for i, arm in enumerate(ARM_MARKERS)}
    for ax, cell in zip(axes, cells):
        for arm, s in cell["arms"].items():
            colours.setdefault(arm, f"C{len(colours) % 10}")
            (flops, flops_sd), (acc, acc_sd) = mean_std([f / 1e12 for f in s["bwd_flops"]]), mean_std(s["acc_knn_ci"])
            n = len(s["acc_knn_ci"])
            ax.errorbar(flops, acc, xerr=flops_sd or 0, yerr=acc_sd or 0, fmt=ARM_MARKERS.get(arm, "P"),
                        color=colours[arm], ms=10 if arm == "rule" else 6, capsize=3,
                        label=f"{arm} ({n} seed{'s' if n > 1 else ''})")
        ax.set_title(f"{cell['ssl']}, {cell['epochs']} epochs/task", fontsize=10)
        ax.set_xlabel("backward TFLOPs (whole run)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("kNN accuracy, class-incr. (%)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
