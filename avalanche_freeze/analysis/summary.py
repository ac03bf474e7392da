"""A folder of runs summarised per arm: means and spreads over seeds, ratios against LUMP, tables.

Every ``results.json`` below a folder is one run; runs in folders named ``seedN`` form an
*arm* named by the path of their parent (``simsiam/lump``, ``supervised/Replay``,
``simsiam/e10/fixed2``), so grids (:mod:`~avalanche_freeze.run.grid`) and the freezing benchmark
are read the same way. :func:`summarize_arms` gives, per arm, the mean and standard deviation
over seeds of the final accuracy, both forgetting definitions and the learning accuracy (per probe
and protocol), and the efficiency ratios against LUMP (LUMP's value divided by the arm's, per
seed, median over seeds; > 1: cheaper than LUMP): training time, activation memory saved for
backward and backward FLOPs. The reference of an arm is the LUMP arm in the same folder
(``simsiam/lump`` for ``simsiam/lump_freeze``); arms with none there (Avalanche's supervised
strategies) use the first LUMP arm in name order.

Example:
    >>> arms = load_arms(Path("runs/grid_fmnist"))  # doctest: +SKIP
    >>> print(format_markdown(summarize_arms(arms)))  # doctest: +SKIP
"""


from __future__ import annotations

import json
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .stats import efficiency_ratio, format_mean_std, mean_std

__all__ = ["ACCURACY_FIELDS", "Arm", "ArmSummary", "EFFICIENCY_RATIOS", "format_markdown", "load_arms", "read_results",
           "summarize_arms", "summary_table"]

#: Efficiency ratios against LUMP: column label and the ``efficiency_total`` value it divides.
EFFICIENCY_RATIOS = (("time x", "TrainTime_Exp"), ("memory x", "SavedActBytes_Iter_mean"), ("bwd FLOPs x", "BwdFLOPs_Exp"))
#: Accuracy summaries of the table per matrix: label and results field.
ACCURACY_FIELDS = (("acc", "avg_acc"), ("fgt max", "forgetting_max"), ("fgt last", "forgetting_last"),
                   ("LA", "learning_acc"))
_SEED_FOLDER = re.compile(r"seed\d+")


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


def read_results(path: Path) -> Dict[str, Any]:
    """A finished run's ``results.json``; raises ``ValueError`` naming the file when it is not one
    (unreadable, not JSON, or without a configuration and accuracy matrices of the expected shape)."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        what = "a directory" if Path(path).is_dir() else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{path} is not a run's results ({what})") from None
    problem = None
    if not isinstance(results, dict):
        problem = f"it holds {type(results).__name__}, not a mapping"
    elif not isinstance(results.get("config"), dict) or not isinstance(results["config"].get("seed"), int):
        problem = "it has no configuration with a seed"
    elif not isinstance(results.get("acc_matrix"), dict) or not all(
            isinstance(m, list) and all(isinstance(row, list) for row in m) for m in results["acc_matrix"].values()):
        problem = "its acc_matrix is not a mapping of matrices (lists of rows)"
    if problem:
        raise ValueError(f"{path} is not a run's results ({problem})")
    return results


def _warn_skipped(path: Path, reason: str) -> None:
    print(f"avalanche-freeze: skipped {reason}", file=sys.stderr)


def load_arms(runs_dir: Path, *, on_skip: Callable[[Path, str], None] = _warn_skipped) -> List[Arm]:
    """The arms of every finished run (``results.json``) below ``runs_dir``, by name. A file that
    is not a run's results is skipped: ``on_skip(path, reason)`` is told (default: one line on stderr)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir} is not a folder of runs")
    arms: Dict[str, Arm] = {}
    for path in sorted(runs_dir.rglob("results.json")):
        folder = path.parent
        arm_folder = folder.parent if _SEED_FOLDER.fullmatch(folder.name) else folder
        name = arm_folder.relative_to(runs_dir).as_posix() if arm_folder != runs_dir else runs_dir.name
        try:
            results = read_results(path)
        except ValueError as exc:
            on_skip(path, str(exc))
            continue
        arms.setdefault(name, Arm(name)).runs.append(results)
    for arm in arms.values():
        arm.runs.sort(key=lambda r: r["config"]["seed"])
    if not arms:
        raise FileNotFoundError(f"no finished run (results.json) below {runs_dir}")
    return [arms[k] for k in sorted(arms)]


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
            accuracy[key] = {f: mean_std([r.get(f, {}).get(key) for r in arm.runs]) for _, f in ACCURACY_FIELDS}
        ref = _reference(arm, arms)
        ref_by_seed = {r["config"]["seed"]: r for r in ref.runs} if ref is not None else {}
        ratios: Dict[str, Optional[float]] = {}
        for _, name in EFFICIENCY_RATIOS:
            per_seed = [efficiency_ratio(ref_by_seed.get(r["config"]["seed"], {}), r, name) for r in arm.runs]
            known = [v for v in per_seed if v is not None]
            ratios[name] = statistics.median(known) if known else None
        out.append(ArmSummary(arm.name, arm.strategy, arm.seeds, accuracy, ratios,
                              ref.name if ref is not None else None))
    return out


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
        cells += [format_mean_std(*s.accuracy.get(k, {}).get(f, (None, None)), scale=100, separator=" ± ")
                  for k in keys for _, f in ACCURACY_FIELDS]
        cells += ["-" if s.ratios[name] is None else f"{s.ratios[name]:.2f}" for _, name in EFFICIENCY_RATIOS]
        rows.append(cells)
    return header, rows


def format_markdown(summaries: Sequence[ArmSummary], *, keys: Optional[Sequence[str]] = None) -> str:
    """:func:`summary_table` as a markdown table."""
    header, rows = summary_table(summaries, keys=keys)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


