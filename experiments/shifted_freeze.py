"""Is "not correlated" the right freezing decision for a shifted task? (validation split)

The calibrated subspace score calls the stem and layer1 uncorrelated not only under ``permute``
but also under ``invert`` and ``highpass``, which keep much of the images' local structure
(docs/methods/freezing.md). Whether that is the right answer depends on what freezing those units
during the shifted task would cost. For each task transform, this trains Split Fashion-MNIST with
task ``--task`` shifted (the others plain) through ``bench_freeze.py``, in one cell (SSL method,
epochs per task, seeds), with three arms on the same data and seeds:

* ``lump``: LUMP, every unit trains;
* ``rule``: LUMP + the freezing rule at the configuration's settings (it decides for itself);
* ``frozen``: LUMP + the first ``--blocks`` blocks (default 3: the stem and layer1) frozen from the
  start of the shifted task on, whatever the data (``bench_freeze.py --fixed-prefix TASK:BLOCKS``).

With ``--earlier`` the shift goes the other way: every task *before* ``--task`` is under the
transform and ``--task`` and the tasks after it are plain, so the early units the frozen arm keeps
were learnt on shifted images only (e.g. pixel-permuted ones, which share no local structure with
the plain task). That is the situation the correlation term is meant to detect: a new task
that the frozen units were not trained for. Results go to ``OUTPUT/earlier_TRANSFORM``.

Runs are evaluated on the *validation* split (training images no run trains on). Prints, per
transform, each arm's class-incremental kNN accuracy on the shifted task just after learning it
(what the frozen units cost while it is learnt) and after the last task (what is kept), and the
average over tasks after the last (mean +- std over seeds), the paired differences ``frozen -
lump`` and ``rule - lump`` (and, on the shifted task, ``rule - frozen``: what the rule's own
decision bought against the fixed prefix; mean +- standard error, 95 % interval), the blocks the
rule had frozen at the end of the shifted task per seed, and one line per transform (final
accuracies):

    shifted_freeze transform=T frozen_minus_lump=D rule_minus_lump=R rule_frozen_in_task=B,B,...

(``transform=earlier_T`` with ``--earlier``; "the shifted task" is then the first plain task.)

``frozen_minus_lump`` clearly below 0 says freezing the early units during that shift costs
accuracy on it, so "not correlated" (train them) is the right answer; about 0 says the units
could have stayed frozen, and the measure is more cautious than it needs to be there. Finished
runs are reused (``--output``), so an interrupted comparison continues; a transform whose runs
failed is reported with what finished, and the exit code is 1.

Usage:
    python experiments/shifted_freeze.py [--transforms invert highpass permute] [--task 3] [--earlier]
        [--blocks 3] [--seeds 0 1 2] [--ssl simsiam] [--epochs 3] [--config FILE] [--set key=value ...]
        [--output runs/shifted_freeze] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from avalanche_freeze.analysis.results import format_table
from avalanche_freeze.analysis.stats import format_spread, paired_interval
from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.task_transforms import TASK_TRANSFORMS

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "fmnist.yaml"


def arm_dirs(task: int, blocks: int) -> Dict[str, str]:
    """Arm -> the directory ``bench_freeze.py`` writes it to."""
    return {"lump": "lump", "rule": "lump_freeze", "frozen": f"fixed{task}_{blocks}b"}


def stream(transform: str, task: int, n_tasks: int, *, earlier: bool = False) -> str:
    """``data.task_transforms`` with task ``task`` (from 1) of ``n_tasks`` under ``transform``, the others
    plain; ``earlier``: the tasks before ``task`` under ``transform``, ``task`` and the later ones plain."""
    shifted = (lambda t: t < task - 1) if earlier else (lambda t: t == task - 1)
    return "[" + ",".join(transform if shifted(t) else "none" for t in range(n_tasks)) + "]"


def stream_name(transform: str, earlier: bool) -> str:
    """The stream's folder under ``--output`` and its name in the report."""
    return f"earlier_{transform}" if earlier else transform


def run_transform(transform: str, args, n_tasks: int, output: Path) -> int:
    """Train (or reuse) the three arms of one transform in ``output``; bench_freeze's exit code."""
    sets = [*args.overrides, "data.eval_split=validation",
            f"data.task_transforms={stream(transform, args.task, n_tasks, earlier=args.earlier)}"]
    cmd = [sys.executable, str(HERE / "bench_freeze.py"), *(a for c in args.config for a in ("--config", str(c))),
           *(a for s in sets for a in ("--set", s)), "--ssl", args.ssl, "--epochs", str(args.epochs),
           "--seeds", *map(str, args.seeds), "--controls-at", str(args.epochs), "--controls",
           "--fixed-prefix", f"{args.task}:{args.blocks}",
           "--output", str(output)]
    where = f"tasks before {args.task}" if args.earlier else f"task {args.task}"
    print(f"shifted_freeze: {transform} on {where}, seeds {args.seeds}", flush=True)
    return subprocess.call(cmd, stdout=subprocess.DEVNULL)


def summarise(folder: Path, *, task: int, blocks: int, seeds: Sequence[int]) -> Optional[Dict]:
    """One transform's cell folder (``OUTPUT/TRANSFORM/SSL/eE``): per seed with every arm finished, each
    arm's kNN CI accuracy (%) on the shifted task just after it (``learnt``) and after the last task
    (``shifted``), the final average over tasks (``average``), and the rule's frozen blocks at the end
    of the shifted task; ``None`` when no seed has every arm."""
    rows = []
    for seed in seeds:
        runs = {}
        for arm, name in arm_dirs(task, blocks).items():
            path = folder / name / f"seed{seed}" / "results.json"
            runs[arm] = json.loads(path.read_text()) if path.is_file() else None
        if any(r is None for r in runs.values()):
            continue
        rows.append({"seed": seed,
                     "shifted": {arm: 100 * r["acc_matrix"]["knn_ci"][-1][task - 1] for arm, r in runs.items()},
                     "learnt": {arm: 100 * r["acc_matrix"]["knn_ci"][task - 1][task - 1] for arm, r in runs.items()},
                     "average": {arm: 100 * r["avg_acc"]["knn_ci"] for arm, r in runs.items()},
                     "rule_frozen": runs["rule"]["efficiency"][task - 1]["frozen_blocks"]})
    return {"seeds": rows} if rows else None


def _difference(rows: List[Dict], key: str, arm: str, *, minus: str = "lump", short: bool = False) -> str:
    """``arm - minus`` on ``key``, paired by seed: mean +- standard error with its 95 % interval (``short``:
    ``MEAN+-SE`` alone); one seed gives the difference alone."""
    values = [r[key][arm] - r[key][minus] for r in rows]
    if len(values) < 2:
        return f"{values[0]:+.2f}" + ("" if short else " (n=1)") if values else "-"
    interval = paired_interval(values)
    return f"{interval.mean:+.2f}+-{interval.se:.2f}" if short else str(interval)


def report(transform: str, summary: Optional[Dict], *, earlier: bool = False, task: int = 3) -> str:
    """Print one transform's table and paired differences; return its summary line (``earlier``: the
    tasks before ``task`` were under ``transform``, ``task`` plain)."""
    print(f"\n== tasks before task {task} shifted by {transform}, task {task} plain" if earlier
          else f"\n== task shifted by {transform}")
    label = stream_name(transform, earlier)  # as the summary line names the stream
    if summary is None:
        print("no seed has every arm finished")
        return f"shifted_freeze transform={label} frozen_minus_lump=- rule_minus_lump=- rule_frozen_in_task=-"
    rows = summary["seeds"]
    name = f"task {task}" if earlier else "shifted task"  # the task whose accuracy is compared
    table = [[arm, *(format_spread([r[key][arm] for r in rows]) for key in ("learnt", "shifted", "average"))]
             for arm in ("lump", "rule", "frozen")]
    print(format_table(["arm", f"{name} kNN CI, just learnt (%)", "final (%)", "avg kNN CI, final (%)"], table))
    for when, key, arm in (("just learnt", "learnt", "frozen"), ("final", "shifted", "frozen"),
                           ("final", "shifted", "rule")):
        print(f"{f'{name} {when},':<25} {arm} - lump: {' ' * (6 - len(arm))}{_difference(rows, key, arm)}")
    print(f"{f'{name} final,':<25} rule - frozen: {_difference(rows, 'shifted', 'rule', minus='frozen')}")
    print(f"{'average final,':<25} frozen - lump: {_difference(rows, 'average', 'frozen')}")
    blocks = ",".join(str(r["rule_frozen"]) for r in rows)
    print(f"rule's frozen blocks at the end of {name if earlier else 'the shifted task'}, per seed: {blocks}")
    return (f"shifted_freeze transform={label} "
            f"frozen_minus_lump={_difference(rows, 'shifted', 'frozen', short=True)} "
            f"rule_minus_lump={_difference(rows, 'shifted', 'rule', short=True)} rule_frozen_in_task={blocks}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transforms", nargs="+", default=["invert", "highpass"],
                   help="task transforms to compare (default: invert highpass)")
    p.add_argument("--task", type=int, default=3, help="the shifted task, from 1 (default 3: the rule's first)")
    p.add_argument("--earlier", action="store_true",
                   help="shift the tasks before --task instead, and leave --task and the later ones plain")
    p.add_argument("--blocks", type=int, default=3, help="blocks the frozen arm freezes (default 3: stem, layer1)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ssl", default="simsiam")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--config", action="append", type=Path, default=None,
                   help="YAML config file (repeatable; default experiments/configs/fmnist.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", type=Path, default=Path("runs/shifted_freeze"))
    p.add_argument("--report-only", action="store_true", help="train nothing: report what is in --output")
    args = p.parse_args(argv)
    args.config = args.config or [CONFIG]
    unknown = [t for t in args.transforms if t not in TASK_TRANSFORMS or t == "none"]
    if unknown:
        accepted = ", ".join(t for t in TASK_TRANSFORMS if t != "none")
        print(f"shifted_freeze: error: --transforms {unknown[0]!r} is not accepted; accepted: {accepted}",
              file=sys.stderr)
        return 2
    try:
        n_tasks = ExperimentConfig.from_sources(files=args.config, overrides=args.overrides).data.n_experiences
    except ConfigError as exc:
        print(f"shifted_freeze: error: {exc}", file=sys.stderr)
        return 2
    if not 2 <= args.task <= n_tasks:
        print(f"shifted_freeze: error: --task {args.task} is not accepted; accepted: 2 to {n_tasks} (the first "
              f"task trains every unit; data.n_experiences={n_tasks})", file=sys.stderr)
        return 2
    failed, lines = [], []
    for transform in args.transforms:
        output = args.output / stream_name(transform, args.earlier)
        if not args.report_only and run_transform(transform, args, n_tasks, output):
            failed.append(transform)
        cell = output / args.ssl / f"e{args.epochs}"
        summary = summarise(cell, task=args.task, blocks=args.blocks, seeds=args.seeds)
        lines.append(report(transform, summary, earlier=args.earlier, task=args.task))
    if failed:
        print(f"\nbench_freeze failed (or left runs out) for: {', '.join(failed)}", file=sys.stderr)
    print()
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
