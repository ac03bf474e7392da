"""The report of a folder of runs: ``avalanche-freeze report RUNS_DIR``.

:func:`write_report` writes ``report.md`` (the summary table of
:mod:`~avalanche_freeze.analysis.summary`) and the PNGs of :mod:`~avalanche_freeze.analysis.plots`:
accuracy matrices, accuracy on each task over time, freezing scores per task with the frozen
prefix marked, efficiency bars, and accuracy against backward FLOPs.

Example:
    >>> files, summaries = write_report(Path("runs/grid_fmnist"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .plots import (plot_accuracy_matrices, plot_accuracy_vs_flops, plot_efficiency, plot_freeze_scores,
                    plot_task_accuracy)
from .summary import ArmSummary, format_markdown, load_arms, summarize_arms

__all__ = ["PLOTS", "write_report"]

#: The PNG files of a report.
PLOTS = ("acc_matrix.png", "task_accuracy.png", "freeze_scores.png", "efficiency.png", "acc_vs_flops.png")


def write_report(runs_dir: Path, output: Optional[Path] = None, *, title: Optional[str] = None,
                 key: Optional[str] = None) -> Tuple[Dict[str, Path], List[ArmSummary]]:
    """Write ``report.md`` and the PNGs of :data:`PLOTS` into ``output`` (default ``RUNS_DIR/report``);
    ``key``: the accuracy matrix the plots show (default: the first, ``knn_ci``). Returns the files
    written by name (``freeze_scores.png`` is left out when no arm froze with a rule) and the summaries."""
    runs_dir = Path(runs_dir)
    output = Path(output) if output is not None else runs_dir / "report"
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file, not a folder; name a folder for the report")
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
