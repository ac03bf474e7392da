"""How far the evaluation images alone move the rule-minus-LUMP differences of a seed.

A validation run (``tune_freeze.py``, ``data.eval_split=validation``) and a test run
(``bench_freeze.py``) of the same configuration and seed train the same model: only the
evaluated images differ, and training on CPU is deterministic. This script checks that, for
each seed, LUMP's two runs and the rule's two runs end with equal weights, then prints how the
rule's paired difference from LUMP measured on the validation images differs from the one
measured on the test images, per seed and metric, and its root mean square over all seeds and
pairs given. That is the share of a paired difference's spread that no training seed causes.

Each ``--pair TEST_CELL VALIDATION_RULE`` names a cell folder of ``bench_freeze.py`` (holding
``lump/seedS`` and ``lump_freeze/seedS``) and a candidate folder of ``tune_freeze.py`` (its LUMP
runs are the sibling ``lump/``). Seeds: those finished in all four folders (or ``--seeds``).
Ends with one machine-readable line:

    pairs=N rms_acc_ci=A rms_acc_ti=B rms_forgetting_ci=C rms_forgetting_ti=D

Usage:
    python experiments/eval_noise.py --pair TEST_CELL VALIDATION_RULE [--pair ...] [--seeds 0 1 2]

Example (the README's evaluation-noise figures, BarlowTwins at 3 epochs):
    python experiments/eval_noise.py --pair runs/freeze_grid/barlowtwins/e3 \\
        runs/tune_freeze_bt_e3/rule_freeze.tau-0.8,freeze.stability-0.99,freeze.max_frozen_share-0.5,freeze.first_task-3
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from avalanche_freeze.run.checkpoint import CheckpointError, load_checkpoint
from avalanche_freeze.analysis.results import KNN_PROTOCOLS, format_table, paired_deltas

#: (quantity, protocol) -> label: accuracy and forgetting (max definition), in points.
METRICS = {(kind, protocol): f"{kind}_{protocol[len('knn_'):]}" for kind in ("acc", "forgetting")
           for protocol in KNN_PROTOCOLS}


def _runs(test_cell: Path, validation_rule: Path) -> Dict[str, Dict[str, Path]]:
    return {"test": {"lump": test_cell / "lump", "rule": test_cell / "lump_freeze"},
            "validation": {"lump": validation_rule.parent / "lump", "rule": validation_rule}}


def _finished_seeds(folders: Sequence[Path]) -> List[int]:
    seeds = None
    for folder in folders:
        found = {int(p.parent.name[4:]) for p in folder.glob("seed*/results.json") if p.parent.name[4:].isdigit()}
        seeds = found if seeds is None else seeds & found
    return sorted(seeds or ())


def same_weights(a: Path, b: Path) -> bool:
    """Whether the final models of runs ``a`` and ``b`` (run folders with a checkpoint) are equal."""
    x, y = (load_checkpoint(run, required=("strategy",))["strategy"]["model"] for run in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def split_differences(test_cell: Path, validation_rule: Path, seeds: Optional[Sequence[int]] = None
                      ) -> Dict[int, Dict[str, float]]:
    """Per seed and metric: (rule - LUMP on the validation images) - (rule - LUMP on the test images).

    Raises:
        ValueError: a folder holds runs of the wrong split, no seed is finished in all four
            folders, or a seed's validation and test runs did not train the same model.
    """
    runs = _runs(test_cell, validation_rule)
    folders = [folder for arms in runs.values() for folder in arms.values()]
    seeds = list(seeds) if seeds is not None else _finished_seeds(folders)
    if not seeds:
        raise ValueError(f"no seed finished in all of {', '.join(map(str, folders))}; accepted: a bench_freeze.py "
                         "cell folder and a tune_freeze.py candidate folder with runs of the same seeds")
    out = {}
    for seed in seeds:
        results = {}
        for split, arms in runs.items():
            for arm, folder in arms.items():
                run = folder / f"seed{seed}"
                if not (run / "results.json").is_file():
                    raise ValueError(f"{run} has no results.json; accepted: seeds finished in all four folders")
                r = json.loads((run / "results.json").read_text())
                found = r["config"]["data"].get("eval_split", "test")
                if found != split:
                    raise ValueError(f"{run} was evaluated on the {found} split; accepted here: {split}")
                results[split, arm] = r
        for arm in ("lump", "rule"):
            a, b = runs["test"][arm] / f"seed{seed}", runs["validation"][arm] / f"seed{seed}"
            if not same_weights(a, b):
                raise ValueError(f"seed {seed}: {a} and {b} end with different weights, so they are not the same "
                                 "training; accepted: validation and test runs of one configuration and seed")
        deltas = {split: dict(zip(("acc", "forgetting"), paired_deltas(results[split, "lump"],
                                                                       results[split, "rule"])[1:]))
                  for split in runs}
        out[seed] = {label: deltas["validation"][kind][protocol] - deltas["test"][kind][protocol]
                     for (kind, protocol), label in METRICS.items()}
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", nargs=2, action="append", required=True, type=Path,
                        metavar=("TEST_CELL", "VALIDATION_RULE"),
                        help="a bench_freeze.py cell folder and a tune_freeze.py candidate folder (repeatable)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="seeds (default: those finished in all four folders of each pair)")
    args = parser.parse_args(argv)
    rows, values = [], {label: [] for label in METRICS.values()}
    try:
        for test_cell, validation_rule in args.pair:
            for seed, diffs in split_differences(test_cell, validation_rule, args.seeds).items():
                rows.append([str(test_cell), seed, *(f"{diffs[label]:+.2f}" for label in values)])
                for label in values:
                    values[label].append(diffs[label])
    except (ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rms = {label: math.sqrt(sum(v * v for v in vs) / len(vs)) for label, vs in values.items()}
    rows.append(["root mean square", "", *(f"{rms[label]:.2f}" for label in values)])
    print("# (rule - LUMP on validation images) - (rule - LUMP on test images), same models, in points")
    print(format_table(["test cell", "seed", *values], rows))
    print(f"pairs={len(rows) - 1} " + " ".join(f"rms_{label}={rms[label]:.2f}" for label in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
