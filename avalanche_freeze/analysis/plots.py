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

from .stats import mean_std, paired_interval
from .summary import EFFICIENCY_RATIOS, Arm, ArmSummary

__all__ = ["CURVE_PANEL", "DPI", "EFFICIENCY_PANEL", "MATRIX_PANEL", "SCATTER_PANEL", "SCORE_PANEL", "accuracy_label",
           "figure_size",
           "paired_differences_figure", "plot_accuracy_matrices", "plot_accuracy_vs_flops",
           "plot_cells_accuracy_vs_flops", "plot_efficiency", "plot_freeze_scores", "plot_paired_differences",
           "plot_task_accuracy"]

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


_PROBES = {"knn": "kNN", "linear": "linear probe"}
_PROTOCOLS = {"ci": "class-incremental", "ti": "task-incremental"}


def accuracy_label(key: str) -> str:
    """A readable name of an accuracy matrix key (``knn_ci`` -> ``kNN, class-incremental``).

    Example:
        >>> accuracy_label("linear_ti")
        'linear probe, task-incremental'
    """
    probe, _, protocol = key.rpartition("_")
    return f"{_PROBES.get(probe, probe)}, {_PROTOCOLS.get(protocol, protocol)}"


def _protocol_keys(arms: Sequence[Arm], key: str) -> List[str]:
    """``key`` and the same probe's other protocol, when every run has both."""
    probe, _, protocol = key.rpartition("_")
    other = f"{probe}_{'ti' if protocol == 'ci' else 'ci'}"
    keys = [key, other] if protocol in _PROTOCOLS else [key]
    return [k for k in keys if all(k in r["acc_matrix"] for a in arms for r in a.runs)]


def _seeds(arm: Arm) -> str:
    n = len(arm.runs)
    return f"{n} seed{'s' if n != 1 else ''}"


def _palette(n: int) -> List[Tuple[Any, str]]:
    """``n`` (colour, marker) pairs, no two alike: 20 colours, then markers vary too."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    return [(colours[i % len(colours)], markers[(i // len(colours) + i) % len(markers)]) for i in range(n)]


def _std_matrix(arm: Arm, key: str) -> List[List[float]]:
    matrices = [r["acc_matrix"][key] for r in arm.runs]
    out = []
    for i in range(len(matrices[0])):
        row = []
        for j in range(len(matrices[0][0])):
            vals = [100 * m[i][j] for m in matrices if m[i][j] is not None]
            row.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
        out.append(row)
    return out


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
    """Heatmap of each arm's mean accuracy matrix (row: after task i, column: task j), for ``key``
    and the same probe's other protocol (class- and task-incremental), one row of panels each."""
    keys = _protocol_keys(arms, key)
    fig, axes = _figure(len(arms) * len(keys), MATRIX_PANEL, max_cols=max(1, min(4, len(arms))))
    per_key = len(axes) // len(keys)
    image = None
    for k, matrix_key in enumerate(keys):
        for ax, arm in zip(axes[k * per_key:(k + 1) * per_key], arms):
            m = _mean_matrix(arm, matrix_key)
            image = ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
            n = len(m)
            if n <= 10:
                for i in range(n):
                    for j in range(len(m[i])):
                        if not math.isnan(m[i][j]):
                            ax.text(j, i, f"{m[i][j]:.0f}", ha="center", va="center", fontsize=6,
                                    color="white" if m[i][j] < 60 else "black")
            ax.set_title(f"{arm.name} ({_seeds(arm)})\n{accuracy_label(matrix_key)}", fontsize=7)
            ax.set_xticks(range(len(m[0])), [f"T{j}" for j in range(len(m[0]))])
            ax.set_yticks(range(n), [f"T{i}" for i in range(n)])
            ax.set_xlabel("accuracy on task", fontsize=7)
            ax.set_ylabel("after training task", fontsize=7)
            ax.tick_params(labelsize=6)
    for ax in axes[len(arms) * len(keys):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, shrink=0.6, label="accuracy % (mean over seeds)")
    fig.savefig(path, dpi=_DPI)
    return path


def plot_task_accuracy(arms: Sequence[Arm], key: str, path: Path) -> Path:
    """Accuracy on each task (one line per task, mean over seeds with a +- std band) after each
    training task, per arm."""
    fig, axes = _figure(len(arms), CURVE_PANEL)
    for ax, arm in zip(axes, arms):
        m, sd = _mean_matrix(arm, key), _std_matrix(arm, key)
        for j in range(len(m[0])):
            xs = [i for i in range(len(m)) if not math.isnan(m[i][j])]
            ys = [m[i][j] for i in xs]
            line, = ax.plot(xs, ys, marker="o", markersize=2, linewidth=1, label=f"T{j}")
            if len(arm.runs) > 1:
                ax.fill_between(xs, [y - sd[i][j] for i, y in zip(xs, ys)], [y + sd[i][j] for i, y in zip(xs, ys)],
                                color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_ylim(0, 100)
        ax.set_xticks(range(len(m)), [f"T{i}" for i in range(len(m))])
        ax.set_title(f"{arm.name} ({_seeds(arm)}{', band: +- std' if len(arm.runs) > 1 else ''})", fontsize=7)
        ax.set_xlabel("after training task", fontsize=7)
        ax.set_ylabel(f"{accuracy_label(key)} acc. %", fontsize=6)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, ncol=3, title="task", title_fontsize=5, loc="lower left")
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
    (colour; grey: not scored, past the compute cap or after the prefix stopped), frozen units
    outlined; ``None`` when no arm froze with a rule."""
    arms = [a for a in arms if any(h.get("scores") for h in a.runs[0].get("freeze_history") or [])]
    if not arms:
        return None
    import matplotlib
    from matplotlib.patches import Patch, Rectangle

    fig, axes = _figure(len(arms), SCORE_PANEL, max_cols=3)
    image = None
    for ax, arm in zip(axes, arms):
        decisions = _task_end_decisions(arm.runs[0]["freeze_history"])
        units: List[str] = []
        for h in decisions.values():
            for unit in [*h.get("scores", {}), *h.get("frozen_units", [])]:
                if unit not in units:
                    units.append(unit)
        tasks = list(decisions)
        grid = [[decisions[t].get("scores", {}).get(u, math.nan) for t in tasks] for u in units]
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")  # grey: not scored
        image = ax.imshow(grid, vmin=0, vmax=1, cmap=cmap, aspect="auto")
        for c, t in enumerate(tasks):
            for r, u in enumerate(units):
                if u in decisions[t].get("frozen_units", []):
                    ax.add_patch(Rectangle((c - 0.45, r - 0.42), 0.9, 0.84, fill=False, edgecolor="red",
                                           linewidth=1.4))
        ax.set_xticks(range(len(tasks)), [f"T{t}" for t in tasks], fontsize=6)
        ax.set_yticks(range(len(units)), units, fontsize=5)
        ax.set_xlabel("last decision of task", fontsize=7)
        ax.set_title(f"{arm.name} (seed {arm.seeds[0]})", fontsize=8)
    axes[0].legend(handles=[Patch(facecolor="none", edgecolor="red", label="frozen"),
                            Patch(facecolor="lightgrey", label="not scored")], fontsize=6, loc="lower left",
                   bbox_to_anchor=(0.0, 1.08), ncol=2, frameon=False)
    fig.colorbar(image, ax=axes, shrink=0.6, label="score tau applies to (0 chance, 1 same task)")
    fig.savefig(path, dpi=_DPI)
    return path


EFFICIENCY_PANEL = (7.0, 3.0)


def plot_efficiency(summaries: Sequence[ArmSummary], path: Path) -> Path:
    """Bars of the efficiency ratios against LUMP (> 1: cheaper) per arm, median over seeds."""
    fig, (ax,) = _figure(1, EFFICIENCY_PANEL)
    width = 0.8 / len(EFFICIENCY_RATIOS)
    for k, (label, name) in enumerate(EFFICIENCY_RATIOS):
        values = [s.ratios[name] if s.ratios[name] is not None else 0.0 for s in summaries]
        ax.bar([i + k * width for i in range(len(summaries))], values, width=width,
               label={"time x": "training time", "memory x": "saved activations",
                      "bwd FLOPs x": "backward FLOPs"}.get(label, label))
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks([i + width for i in range(len(summaries))],
                  [f"{s.name} ({len(s.seeds)})" for s in summaries], rotation=30, ha="right", fontsize=6)
    ax.set_xlabel("arm (seeds)", fontsize=7)
    ax.set_ylabel("LUMP / arm, median over seeds\n(> 1: cheaper than LUMP)", fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
    ax.legend(fontsize=6)
    fig.savefig(path, dpi=_DPI)
    return path


SCATTER_PANEL = (6.4, 3.6)


def _accuracy_range(ax, lows: Sequence[float], highs: Sequence[float], span: float = 10.0) -> None:
    """Y limits that show at least ``span`` points, so a small gap does not fill the plot."""
    low, high = min(lows), max(highs)
    pad = max(0.0, span - (high - low)) / 2
    ax.set_ylim(max(0.0, low - pad - 1), min(100.0, high + pad + 1))


def plot_accuracy_vs_flops(arms: Sequence[Arm], key: str, path: Path) -> Path:
    """Final accuracy against total backward FLOPs (TFLOPs), one point per arm: mean +- std over
    seeds on both axes; a legend names each arm and its seed count."""
    fig, (ax,) = _figure(1, SCATTER_PANEL)
    lows, highs = [], []
    for arm, (colour, marker) in zip(arms, _palette(len(arms))):
        flops = [r.get("efficiency_total", {}).get("BwdFLOPs_Exp", 0.0) / 1e12 for r in arm.runs]
        accs = [100 * r["avg_acc"][key] for r in arm.runs if r.get("avg_acc", {}).get(key) is not None]
        if not accs:
            continue
        (x, x_sd), (y, y_sd) = mean_std(flops), mean_std(accs)
        ax.errorbar(x, y, xerr=x_sd or 0.0, yerr=y_sd or 0.0, fmt=marker, color=colour, capsize=3, markersize=5,
                    label=f"{arm.name} ({_seeds(arm)})")
        lows.append(y - (y_sd or 0.0))
        highs.append(y + (y_sd or 0.0))
    if lows:
        _accuracy_range(ax, lows, highs)
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_xlabel("backward TFLOPs, whole run (mean +- std over seeds)", fontsize=7)
    ax.set_ylabel(f"final accuracy % ({accuracy_label(key)})\nmean +- std over seeds", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.savefig(path, dpi=_DPI)
    return path


#: Markers of the freezing benchmark's arms (:func:`plot_cells_accuracy_vs_flops`).
ARM_MARKERS = {"lump": "s", "rule": "*", "fixed2": "o", "fixed3": "^", "freezeout": "D", "random": "x"}


def plot_cells_accuracy_vs_flops(cells: Sequence[Dict[str, Any]], path: Path) -> Path:
    """The freezing benchmark's figure: class-incremental kNN accuracy against backward FLOPs per arm,
    mean and standard deviation over seeds, one panel per cell (``experiments/bench_freeze.py``'s
    cell summaries: ``ssl``, ``epochs`` and, per arm, ``bwd_flops`` and ``acc_knn_ci`` per seed)."""
    fig, axes = _figure(len(cells), (4.6, 3.6), max_cols=len(cells))
    names = list(dict.fromkeys([*ARM_MARKERS, *(arm for cell in cells for arm in cell["arms"])]))
    style = dict(zip(names, _palette(len(names))))  # one colour and marker per arm, the same in every panel
    for ax, cell in zip(axes, cells):
        lows, highs = [], []
        for arm, s in cell["arms"].items():
            colour, marker = style[arm]
            (flops, flops_sd), (acc, acc_sd) = mean_std([f / 1e12 for f in s["bwd_flops"]]), mean_std(s["acc_knn_ci"])
            n = len(s["acc_knn_ci"])
            ax.errorbar(flops, acc, xerr=flops_sd or 0, yerr=acc_sd or 0, fmt=ARM_MARKERS.get(arm, marker),
                        color=colour, ms=10 if arm == "rule" else 6, capsize=3,
                        label=f"{arm} ({n} seed{'s' if n > 1 else ''})")
            lows.append(acc - (acc_sd or 0))
            highs.append(acc + (acc_sd or 0))
        _accuracy_range(ax, lows, highs)
        ax.ticklabel_format(axis="x", useOffset=False, style="plain")
        ax.set_title(f"{cell['ssl']}, {cell['epochs']} epochs/task (mean +- std over seeds)", fontsize=9)
        ax.set_xlabel("backward TFLOPs (whole run)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("kNN accuracy, class-incremental (%)")
    legend: Dict[str, Any] = {}
    for ax in axes:  # one legend for the figure, outside the panels: every arm once
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="outside right center", fontsize=7, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


#: Width of a paired-differences figure and height of each of its rows (inches).
PAIRED_WIDTH, PAIRED_ROW = 6.4, 0.5


def paired_differences_figure(rows: Sequence[Dict[str, Any]], *, xlabel: str):
    """A forest plot of paired differences, one row per comparison, top to bottom in the given order:
    every pair as a small dot, the mean as a diamond with its two-sided 95 % interval (Student's t,
    :func:`~avalanche_freeze.analysis.stats.paired_interval`) as a bar, 0 as a grey line and, where a
    row has a ``target``, that value as a short red tick on the row.

    Parameters:
        rows: one dict per comparison: ``label`` (str), ``differences`` (at least two numbers, one per
            pair) and, optionally, ``target`` (a number to mark; ``None``: none).
        xlabel: what a difference measures (the x axis's label).

    Returns:
        A :class:`matplotlib.figure.Figure` (no pyplot state); :func:`plot_paired_differences` saves it.

    Example:
        >>> fig = paired_differences_figure([{"label": "rule - fixed3", "differences": [1.0, 2.0, 3.0]}],
        ...                                 xlabel="points")
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
        ['rule - fixed3']
    """
    if not rows:
        raise ValueError("rows=[] is not accepted; accepted: at least one row with a label and differences")
    for row in rows:
        if len(row.get("differences") or ()) < 2:
            raise ValueError(f"row {row.get('label')!r} has {len(row.get('differences') or ())} differences; "
                             "accepted: at least 2 (an interval needs a spread)")
    fig, (ax,) = _figure(1, (PAIRED_WIDTH, PAIRED_ROW * len(rows) + 0.9))
    ax.axvline(0.0, color="grey", linewidth=0.8)
    for k, row in enumerate(rows):
        y = len(rows) - 1 - k
        values = list(row["differences"])
        offsets = [0.25 * (i / (len(values) - 1) - 0.5) for i in range(len(values))]  # spread, not random
        ax.plot(values, [y + o for o in offsets], "o", color="tab:blue", alpha=0.35, markersize=3)
        iv = paired_interval(values)
        ax.errorbar([iv.mean], [y], xerr=[[iv.mean - iv.low], [iv.high - iv.mean]], fmt="D", color="black",
                    markersize=5, capsize=3)
        if row.get("target") is not None:
            ax.plot([row["target"]] * 2, [y - 0.3, y + 0.3], color="tab:red", linewidth=1.5)
    ax.set_yticks(range(len(rows)), [row["label"] for row in reversed(rows)], fontsize=7)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.tick_params(axis="x", labelsize=6)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_paired_differences(rows: Sequence[Dict[str, Any]], path: Path, *, xlabel: str) -> Path:
    """Save :func:`paired_differences_figure` of ``rows`` as a PNG at ``path`` (folders created);
    it is :data:`PAIRED_WIDTH` inches wide and :data:`PAIRED_ROW` a row high, plus 0.9 for the axis."""
    fig = paired_differences_figure(rows, xlabel=xlabel)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path
