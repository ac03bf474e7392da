"""Does the batched augmentation train as well as kornia's? Paired runs on the validation split.

Runs the same configuration (default: LUMP at ``experiments/configs/fmnist.yaml``) with
``augment.backend=kornia`` and ``augment.backend=batched`` for each seed, evaluated on the
*validation* split (training images the runs do not train on), and prints per backend the final
average kNN accuracy under both protocols (mean +- std over seeds) and the paired difference
batched - kornia with its standard error. Finished runs are reused, interrupted ones resumed
(``--output``), so the comparison can run in parts. A run that fails (diverged training, an
unreadable folder) is listed with its error and its seed left out of the pairing; the others go
on (exit 1). Ends with one line:

    batched_minus_kornia_knn_ci=D +- SE knn_ti=E +- SE seeds=N    (N: the seeds paired)

Usage:
    python experiments/augment_backends.py [--config FILE] [--set key=value ...] [--seeds 0 1 2]
        [--output runs/augment_backends]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import mean, stdev
from typing import Dict, List

from avalanche_freeze.analysis.results import KNN_PROTOCOLS as PROTOCOLS
from avalanche_freeze.analysis.results import format_table
from avalanche_freeze.run.config import ExperimentConfig
from avalanche_freeze.run.experiment import RUN_FAILURES, run_or_reuse

BACKENDS = ("kornia", "batched")
REPO = Path(__file__).resolve().parents[1]


def _spread(values: List[float]) -> str:
    if not values:
        return "-"
    return f"{mean(values):.2f} +- {stdev(values) if len(values) > 1 else 0.0:.2f}"


def _paired(values: List[float]) -> str:
    if not values:
        return "-"
    se = stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean(values):+.2f} +- {se:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", type=Path, default=None,
                   help="YAML config file (repeatable; default experiments/configs/fmnist.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--strategy", default="lump")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--output", type=Path, default=Path("runs/augment_backends"))
    args = p.parse_args(argv)
    files = args.config or [REPO / "experiments" / "configs" / "fmnist.yaml"]
    accuracy: Dict[str, Dict[str, List[float]]] = {b: {k: [] for k in PROTOCOLS} for b in BACKENDS}
    failed: List[str] = []
    for seed in args.seeds:
        results = {}
        for backend in BACKENDS:
            overrides = [*args.overrides, f"strategy={args.strategy}", f"seed={seed}", "data.eval_split=validation",
                         f"augment.backend={backend}"]
            cfg = ExperimentConfig.from_sources(files=files, overrides=overrides)
            print(f"augment_backends: {backend}, seed {seed}", file=sys.stderr, flush=True)
            try:
                results[backend] = run_or_reuse(cfg, args.output / backend / f"seed{seed}")
            except RUN_FAILURES as exc:  # recorded; the seed leaves the paired comparison, the others go on
                failed.append(f"{backend} seed {seed}: {exc}")
                print(f"augment_backends: {backend} seed {seed} FAILED: {exc}", file=sys.stderr, flush=True)
        if len(results) == len(BACKENDS):
            for backend, result in results.items():
                for protocol in PROTOCOLS:
                    accuracy[backend][protocol].append(100 * result["avg_acc"][protocol])
    rows = [[backend, *(_spread(accuracy[backend][k]) for k in PROTOCOLS)] for backend in BACKENDS]
    deltas = {k: [b - a for a, b in zip(accuracy["kornia"][k], accuracy["batched"][k])] for k in PROTOCOLS}
    rows.append(["batched - kornia (paired, mean +- SE)", *(_paired(deltas[k]) for k in PROTOCOLS)])
    print(f"{args.strategy}, validation split, seeds {' '.join(map(str, args.seeds))}: final average kNN accuracy (%)")
    print(format_table(["backend", *(f"avg {k}" for k in PROTOCOLS)], rows))
    for failure in failed:
        print(f"FAILED (its seed is left out): {failure}")
    n_paired = len(deltas[PROTOCOLS[0]])
    if n_paired == 0:
        print("batched_minus_kornia: no seed finished with both backends")
        return 1
    print(" ".join(f"batched_minus_kornia_{k}={_paired(deltas[k]).replace(' ', '')}" for k in PROTOCOLS)
          + f" seeds={n_paired}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
