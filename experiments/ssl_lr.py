"""Does every SSL method train at the shipped settings, and at which learning rate? (validation split)

For each SSL method, learning rate and seed, runs one configuration (default: LUMP at
``experiments/configs/fmnist.yaml``) evaluated on the *validation* split (training images the runs
do not train on), through the grid runner: finished runs are reused, interrupted ones resumed, and
a run that diverges (the health check's non-finite loss) is recorded as failed, with its reason,
and the others go on. Prints, per method and learning rate, how many seeds trained, the first
failure, and the final average kNN accuracy under both protocols (mean +- std over the seeds that
trained), then one line per method:

    ssl_lr method=NAME trained_at=[LR, ...] best=LR knn_ci=MEAN

``best`` is the rate with the highest mean validation kNN CI accuracy among the rates at which
every seed trained (``none`` when there is no such rate). Run folders:
``OUTPUT/lrLR/METHOD/STRATEGY/seedN``. With ``--archive DIR`` the finished runs' ``results.json``
(and the ``log.txt`` of failed runs, which names the error) are copied there after each rate
(with ``--report-only``: what is on disk) and copied back into ``OUTPUT`` first, so a fresh
checkout reuses what is in the repository (``experiments/results/ssl_lr``) and trains only what
is missing.

Usage:
    python experiments/ssl_lr.py [--methods vicreg simsiam ...] [--lrs 0.06 0.03] [--seeds 0 1 2 3 4]
        [--config FILE] [--set key=value ...] [--strategy lump] [--output runs/ssl_lr] [--archive DIR]
        [--report-only]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from statistics import mean, stdev
from typing import Dict, List, Optional, Tuple

from avalanche_freeze.analysis.results import KNN_PROTOCOLS as PROTOCOLS
from avalanche_freeze.analysis.results import format_table
from avalanche_freeze.run.experiment import logged_failure
from avalanche_freeze.run.grid import GridSpec, copy_finished_runs, run_grid
from avalanche_freeze.ssl import available_ssl_methods

REPO = Path(__file__).resolve().parents[1]


def _lr_folder(lr: float) -> str:
    return f"lr{lr:g}"


def _spread(values: List[float]) -> str:
    if not values:
        return "-"
    return f"{mean(values):.2f} +- {stdev(values) if len(values) > 1 else 0.0:.2f}"


def _grid(args, lr: float) -> GridSpec:
    files = args.config or [REPO / "experiments" / "configs" / "fmnist.yaml"]
    return GridSpec(name=f"ssl_lr_{_lr_folder(lr)}", output=args.output / _lr_folder(lr), strategies=[args.strategy],
                    ssl=list(args.methods), seeds=list(args.seeds), config=list(files),
                    overrides=[*args.overrides, "data.eval_split=validation", f"train.lr={lr!r}"])


def _read(folder: Path) -> Tuple[Optional[Dict[str, float]], Optional[str]]:
    """(accuracies in %, None) of a finished run, or (None, why not) from its results or its log."""
    results = folder / "results.json"
    if results.is_file():
        try:
            avg = json.loads(results.read_text()).get("avg_acc", {})
            return {k: 100 * avg[k] for k in PROTOCOLS if avg.get(k) is not None}, None
        except (OSError, ValueError, AttributeError) as exc:
            return None, f"unreadable results.json ({exc})"
    failure = logged_failure(folder)
    if failure is not None:
        return None, failure.split(": ", 1)[-1].split("; ")[0][:100]  # the message, without its advice
    return None, "not run or not finished"


def report(args) -> int:
    rows: List[List[str]] = []
    summary: List[str] = []
    for method in args.methods:
        trained_at: List[float] = []
        best: Tuple[float, Optional[float]] = (-math.inf, None)
        for lr in args.lrs:
            accuracy: Dict[str, List[float]] = {k: [] for k in PROTOCOLS}
            failures: List[str] = []
            for seed in args.seeds:
                folder = args.output / _lr_folder(lr) / method / args.strategy / f"seed{seed}"
                values, why = _read(folder)
                if values is None:
                    failures.append(f"seed {seed}: {why}")
                    continue
                for k in PROTOCOLS:
                    if k in values:
                        accuracy[k].append(values[k])
            n_ok = len(args.seeds) - len(failures)
            rows.append([method, f"{lr:g}", f"{n_ok}/{len(args.seeds)}",
                         *(_spread(accuracy[k]) for k in PROTOCOLS), failures[0] if failures else "-"])
            if not failures:
                trained_at.append(lr)
                score = mean(accuracy[PROTOCOLS[0]]) if accuracy[PROTOCOLS[0]] else -math.inf
                if score > best[0]:
                    best = (score, lr)
        summary.append(f"ssl_lr method={method} trained_at=[{', '.join(f'{lr:g}' for lr in trained_at)}] "
                       f"best={'none' if best[1] is None else f'{best[1]:g}'} "
                       f"knn_ci={'-' if best[1] is None else f'{best[0]:.2f}'}")
    print(format_table(["method", "lr", "seeds trained", *(f"val {k} (%)" for k in PROTOCOLS), "first failure"],
                       rows))
    print("\n".join(summary))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=None, help="SSL methods (default: every registered one)")
    p.add_argument("--lrs", type=float, nargs="+", default=[0.06], help="learning rates (default 0.06, the shipped)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--config", action="append", type=Path, default=None,
                   help="YAML config file (repeatable; default experiments/configs/fmnist.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--strategy", default="lump")
    p.add_argument("--output", type=Path, default=Path("runs/ssl_lr"))
    p.add_argument("--archive", type=Path, default=None,
                   help="copy finished runs (and failed runs' logs) from here first and to here after each rate")
    p.add_argument("--report-only", action="store_true", help="print the table of the runs on disk, train nothing")
    args = p.parse_args(argv)
    args.methods = args.methods or available_ssl_methods()
    unknown = [m for m in args.methods if m not in available_ssl_methods()]
    if unknown:
        p.error(f"--methods: unknown {unknown[0]!r}; accepted: {', '.join(available_ssl_methods())}")
    bad = [lr for lr in args.lrs if not (lr > 0 and math.isfinite(lr))]
    if bad:
        p.error(f"--lrs: {bad[0]!r} is not accepted; accepted: positive numbers")
    if args.archive is not None and args.archive.is_dir():
        copy_finished_runs(args.archive, args.output, failure_logs=True)
    for lr in [] if args.report_only else args.lrs:
        run_grid(_grid(args, lr))
        if args.archive is not None:
            copy_finished_runs(args.output, args.archive, failure_logs=True)
    if args.archive is not None and args.output.is_dir():  # --report-only too: archives what is on disk
        copy_finished_runs(args.output, args.archive, failure_logs=True)
    return report(args)


if __name__ == "__main__":
    raise SystemExit(main())
