"""Summaries and plots of a folder of runs: ``avalanche-freeze report RUNS_DIR``.

Every ``results.json`` below ``RUNS_DIR`` is one run; runs in folders named ``seedN`` form an
*arm* named by the path of their parent (``simsiam/lump``, ``supervised/Replay``,
``simsiam/e10/fixed2``), so grids (:mod:`~avalanche_freeze.run.grid`), the freezing benchmark and
the strategy comparison are all read the same way. :func:`summarize_arms` gives, per arm, the
mean and standard deviation over seeds of the final accuracy, both forgetting definitions and
the learning accuracy (per probe and protocol), and the efficiency ratios against LUMP
(LUMP's value divided by the arm's, per seed, median over seeds; > 1: cheaper than LUMP):
training time, activation memory saved for backward and backward FLOPs. The reference of an
arm is the LUMP arm in the same folder (``simsiam/lump`` for ``simsiam/lump_freeze``); arms
with none there (Avalanche's supervised strategies) use the first LUMP arm in name order.

:func:`write_report` writes ``report.md`` (the table) and the PNGs (matplotlib, no display):
accuracy matrices, accuracy on each task over time, freezing scores per task with the frozen
prefix marked, efficiency bars, and accuracy against backward FLOPs.

Example:
    >>> arms = load_arms(Path("runs/grid_fmnist"))  # doctest: +SKIP
    >>> print(format_markdown(summarize_arms(arms)))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["Arm", "ArmSummary", "EFFICIENCY_RATIOS", "PLOTS", "figure_size", "format_markdown", "load_arms",
           "summarize_arms", "summary_table", "write_report"]

#: Efficiency ratios against LUMP: column label and the ``efficiency_total`` value it divides.
EFFICIENCY_RATIOS = (("time x", "TrainTime_Exp"), ("memory x", "SavedActBytes_Iter_mean"), ("bwd FLOPs x", "BwdFLOPs_Exp"))
#: Accuracy summaries of the table per matrix: label and results field.
ACCURACY_FIELDS = (("acc", "avg_acc"), ("fgt max", "forgetting_max"), ("fgt last", "forgetting_last"),
                   ("LA", "learning_acc"))
#: The PNG files of a report.
PLOTS = ("acc_matrix.png", "task_accuracy.png", "freeze_scores.png", "efficiency.png", "acc_vs_flops.png")
_SEED_FOLDER = re.compile(r"seed\d+")
_DPI = 100


@dataclass
class Arm:
    """The runs of one arm (one per seed), sorted by seed."""

    name: str
    runs: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def strategy(self) -> str:
        return self.runs[0]["config"]["strategy"]

    @property
    def seeds(self) -> List[int]:
        return [r["config"]["seed"] for r in self.runs]


@dataclass
class ArmSummary:
    """Means and standard deviations (``None`` with one seed) over an arm's seeds.

    Attributes:
        accuracy: ``{matrix key: {field: (mean, std)}}``, fractions (``None`` where undefined, e.g.
            forgetting of joint training).
        ratios: ``{efficiency total: median LUMP/arm ratio}`` (``None`` without a LUMP reference).
    """

    name: str
    strategy: str
    seeds: List[int]
    accuracy: Dict[str, Dict[str, Tuple[Optional[float], Optional[float]]]]
    ratios: Dict[str, Optional[float]]
    reference: Optional[str]


def load_arms(runs_dir: Path) -> List[Arm]:
    """The arms of every finished run (``results.json``) below ``runs_dir``, by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir} is not a folder of runs")
    arms: Dict[str, Arm] = {}
    for path in sorted(runs_dir.rglob("results.json")):
        folder = path.parent
        arm_folder = folder.parent if _SEED_FOLDER.fullmatch(folder.name) else folder
        name = arm_folder.relative_to(runs_dir).as_posix() if arm_folder != runs_dir else runs_dir.name
        results = json.loads(path.read_text())
        if "acc_matrix" not in results or "config" not in results:
            continue
        arms.setdefault(name, Arm(name)).runs.append(results)
    for arm in arms.values():
        arm.runs.sort(key=lambda r: r["config"]["seed"])
    if not arms:
        raise FileNotFoundError(f"no finished run (results.json) below {runs_dir}")
    return [arms[k] for k in sorted(arms)]


def _mean_std(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    known = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not known:
        return None, None
    return statistics.fmean(known), (statistics.stdev(known) if len(known) > 1 else None)


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _reference(arm: Arm, arms: Sequence[Arm]) -> Optional[Arm]:
    lumps = [a for a in arms if a.strategy == "lump"]
    siblings = [a for a in lumps if _parent(a.name) == _parent(arm.name)]
    return (siblings or lumps or [None])[0]


def summarize_arms(arms: Sequence[Arm]) -> List[ArmSummary]:
    """The summary of every arm (see the module docs)."""
    out = []
    for arm in arms:
        accuracy = {}
        for key in arm.runs[0]["acc_matrix"]:
            accuracy[key] = {f: _mean_std([r.get(f, {}).get(key) for r in arm.runs]) for _, f in ACCURACY_FIELDS}
        ref = _reference(arm, arms)
        ref_by_seed = {r["config"]["seed"]: r for r in ref.runs} if ref is not None else {}
        ratios: Dict[str, Optional[float]] = {}
        for _, name in EFFICIENCY_RATIOS:
            per_seed = []
            if ref is not None:
                for r in arm.runs:
                    mine = r.get("efficiency_total", {}).get(name)
                    theirs = ref_by_seed.get(r["config"]["seed"], {}).get("efficiency_total", {}).get(name)
                    if mine and theirs:
                        per_seed.append(theirs / mine)
            ratios[name] = statistics.median(per_seed) if per_seed else None
        out.append(ArmSummary(arm.name, arm.strategy, arm.seeds, accuracy, ratios,
                              ref.name if ref is not None else None))
    return out


def _pct(pair: Tuple[Optional[float], Optional[float]]) -> str:
    mean, std = pair
    if mean is None:
        return "-"
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def summary_table(summaries: Sequence[ArmSummary], *, keys: Optional[Sequence[str]] = None
                  ) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the summary: accuracies in %, mean ± std over seeds; ratios vs LUMP.
    ``keys``: the accuracy matrices shown (default: all of the first arm's)."""
    keys = list(keys or next(iter(summaries)).accuracy)
    header = ["arm", "seeds"] + [f"{k} {label}" for k in keys for label, _ in ACCURACY_FIELDS] \
        + [label for label, _ in EFFICIENCY_RATIOS]
    rows = []
    for s in summaries:
        cells = [s.name, str(len(s.seeds))]
        cells += [_pct(s.accuracy.get(k, {}).get(f, (None, None))) for k in keys for _, f in ACCURACY_FIELDS]
        cells += ["-" if s.ratios[name] is None else f"{s.ratios[name]:.2f}" for _, name in EFFICIENCY_RATIOS]
        rows.append(cells)
    return header, rows


def format_markdown(summaries: Sequence[ArmSummary], *, keys: Optional[Sequence[str]] = None) -> str:
    """:func:`summary_table` as a markdown table."""
    header, rows = summary_table(summaries, keys=keys)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------- plots
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
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        ax.errorbar(statistics.fmean(flops), statistics.fmean(accs), yerr=std, fmt="o", capsize=3, markersize=4)
        ax.annotate(arm.name, (statistics.fmean(flops), statistics.fmean(accs)), fontsize=5,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("backward FLOPs (total)", fontsize=7)
    ax.set_ylabel(f"final {key} accuracy %", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.savefig(path, dpi=_DPI)
    return path


def write_report(runs_dir: Path, output: Optional[Path] = None, *, title: Optional[str] = None,
                 key: Optional[str] = None) -> Tuple[Dict[str, Path], List[ArmSummary]]:
    """Write ``report.md`` and the PNGs of :data:`PLOTS` into ``output`` (default ``RUNS_DIR/report``);
    ``key``: the accuracy matrix the plots show (default: the first, ``knn_ci``). Returns the files
    written by name (``freeze_scores.png`` is left out when no arm froze with a rule) and the summaries."""
    runs_dir = Path(runs_dir)
    output = Path(output) if output is not None else runs_dir / "report"
    arms = load_arms(runs_dir)
    summaries = summarize_arms(arms)
    key = key or next(iter(arms[0].runs[0]["acc_matrix"]))
    if not all(key in a.runs[0]["acc_matrix"] for a in arms):
        raise ValueError(f"key={key!r} is not an accuracy matrix of every run; accepted: "
                         f"{', '.join(arms[0].runs[0]['acc_matrix'])}")
    output.mkdir(parents=True, exist_ok=True)
    files: Dict[str, Path] = {}
    files["acc_matrix.png"] = plot_accuracy_matrices(arms, key, output / "acc_matrix.png")
    files["task_accuracy.png"] = plot_task_accuracy(arms, key, output / "task_accuracy.png")
    scores = plot_freeze_scores(arms, output / "freeze_scores.png")
    if scores is not None:
        files["freeze_scores.png"] = scores
    files["efficiency.png"] = plot_efficiency(summaries, output / "efficiency.png")
    files["acc_vs_flops.png"] = plot_accuracy_vs_flops(arms, key, output / "acc_vs_flops.png")
    refs = sorted({s.reference for s in summaries if s.reference})
    text = [f"# {title or runs_dir.name}", "",
            f"{len(arms)} arms, {sum(len(a.runs) for a in arms)} runs. Accuracy and forgetting in % "
            "(mean ± std over seeds; `fgt max`: max-based forgetting, `fgt last`: drop from right after "
            "learning, `LA`: learning accuracy). Ratios: LUMP's value / the arm's, median over seeds "
            f"(> 1: cheaper than LUMP; reference {', '.join(refs) or 'none: no LUMP arm'}).", "",
            format_markdown(summaries), ""]
    text += [f"![{name}]({name})" for name in files]
    files["report.md"] = output / "report.md"
    files["report.md"].write_text("\n".join(text) + "\n")
    return files, summaries
