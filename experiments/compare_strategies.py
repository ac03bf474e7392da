"""Compare continual-learning strategies under one protocol: same data, budget and seeds.

Every (strategy, seed) arm runs the same configuration with only ``strategy`` and
``seed`` changed, checkpoints after every task into ``OUTPUT/STRATEGY/seedN`` and is
reused (finished) or resumed (interrupted) when the script is run again with the same
settings. Prints one table: final average kNN accuracy and forgetting under both
protocols, task-incremental learning accuracy (accuracy on each task right after learning
it: plasticity); mean and, with several seeds, standard deviation. (Training time is not
compared here: arms run one after another, under whatever else loads the machine; compare
efficiency side by side with ``bench_freeze.py``.)

Usage:
    python experiments/compare_strategies.py --strategies finetune lump si der cassle \\
        [--seeds 0 1 2] [--config FILE] [--set key=value ...] [--output runs/compare]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.analysis.continual_metrics import summarize
from avalanche_freeze.run.experiment import run_or_reuse
from avalanche_freeze.run.recipes import available_strategies
from avalanche_freeze.analysis.results import format_table

COLUMNS = [("avg_acc", "knn_ci", "CI acc"), ("forgetting_max", "knn_ci", "CI fgt max"),
           ("forgetting_last", "knn_ci", "CI fgt last"), ("avg_acc", "knn_ti", "TI acc"),
           ("forgetting_max", "knn_ti", "TI fgt max"), ("forgetting_last", "knn_ti", "TI fgt last"),
           ("learning_acc", "knn_ti", "TI LA")]


def _value(results: dict, field: str, key: str) -> float:
    # computed from the matrix, so runs finished by older versions (other summary names) work too
    return summarize(results["acc_matrix"][key])[field]


def _cell(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ±{statistics.stdev(values):.2f}"


def format_comparison(results: Dict[str, List[dict]]) -> str:
    """The comparison table (values in %, mean ± std over seeds)."""
    rows = [[name] + [_cell([100 * _value(r, field, key) for r in runs]) for field, key, _ in COLUMNS]
            for name, runs in results.items()]
    return format_table(["strategy"] + [label for _, _, label in COLUMNS], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", nargs="+", default=["finetune", "lump", "si", "der", "cassle"],
                   help=f"strategy recipes (accepted: {', '.join(available_strategies())})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--config", action="append", default=[], type=Path, help="YAML config file (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", type=Path, default=Path("runs/compare"))
    p.add_argument("--verbose", action="store_true", help="per-experience progress output")
    args = p.parse_args(argv)
    unknown = [s for s in args.strategies if s not in available_strategies()]
    if unknown:
        print(f"compare_strategies: error: unknown strategy {', '.join(map(repr, unknown))}; "
              f"accepted: {', '.join(available_strategies())}", file=sys.stderr)
        return 2
    try:
        configs = {
            (s, seed): ExperimentConfig.from_sources(files=args.config,
                                                     overrides=list(args.overrides) + [f"strategy={s}", f"seed={seed}"])
            for s in args.strategies for seed in args.seeds
        }
    except ConfigError as exc:
        print(f"compare_strategies: error: {exc}", file=sys.stderr)
        return 2
    results: Dict[str, List[dict]] = {s: [] for s in args.strategies}
    for (s, seed), cfg in configs.items():
        print(f"[{s} seed {seed}] ...", flush=True)
        results[s].append(run_or_reuse(cfg, args.output / s / f"seed{seed}", verbose=args.verbose))
    table = format_comparison(results)
    first = next(iter(configs.values()))
    n_tasks = next(iter(results.values()))[0]["n_tasks"]
    print(f"\n{first.data.benchmark}, {first.ssl.name}, {n_tasks} tasks, {first.train.epochs} epochs/task, "
          f"seeds {' '.join(map(str, args.seeds))}; kNN accuracy and forgetting in %")
    print(table)
    (args.output / "comparison.txt").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
