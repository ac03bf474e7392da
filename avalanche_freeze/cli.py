"""Command line: ``avalanche-freeze run [--config FILE] [--strategy NAME] [--set key=value ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .config import ConfigError, ExperimentConfig, flatten
from .recipes import available_strategies, recipe_path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avalanche-freeze", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment and print its results table")
    run.add_argument("--config", action="append", default=[], type=Path,
                     help="YAML config file (repeatable; later files win)")
    run.add_argument("--strategy", choices=available_strategies(), help="strategy recipe (loads strategies/NAME.yaml)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, dotted (e.g. lump.mem_size=512; repeatable)")
    run.add_argument("--output", type=Path, default=Path("runs/default"), help="output directory")
    run.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    run.add_argument("--overwrite", action="store_true",
                     help="start over even if --output holds a checkpoint (it is replaced)")
    run.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline unless logged in)")
    run.add_argument("--quiet", action="store_true", help="no per-experience progress output")
    sub.add_parser("list", help="list strategies, SSL methods and config keys with their defaults")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        from .ssl import available_ssl_methods

        print("strategies:  " + ", ".join(available_strategies()))
        print("ssl methods: " + ", ".join(available_ssl_methods()))
        print("config keys (default):")
        for key, value in flatten(ExperimentConfig().to_dict()).items():
            print(f"  {key} ({value!r})")
        return 0
    if args.resume and args.overwrite:
        print("avalanche-freeze: error: --resume and --overwrite exclude each other", file=sys.stderr)
        return 2
    from .checkpoint import CHECKPOINT_NAME

    if not args.resume and not args.overwrite and (args.output / CHECKPOINT_NAME).is_file():
        print(f"avalanche-freeze: error: {args.output} already holds a run's checkpoint; pass --resume to "
              "continue it, --overwrite to start over, or another --output", file=sys.stderr)
        return 2
    try:
        files = []
        base = {}
        if args.strategy:
            base["strategy"] = args.strategy
            path = recipe_path(args.strategy)
            if path is not None:
                files.append(path)
        files.extend(args.config)
        overrides = list(args.overrides)
        if args.strategy:
            overrides.append(f"strategy={args.strategy}")
        if args.wandb:
            overrides.append("wandb.enabled=true")
        cfg = ExperimentConfig.from_sources(files=files, overrides=overrides, base=base)
    except ConfigError as exc:
        print(f"avalanche-freeze: error: {exc}", file=sys.stderr)
        return 2

    from .benchmarks import DatasetError
    from .checkpoint import CheckpointError
    from .experiment import run_experiment
    from .results import format_results_table
    from .health import TrainingHealthError
    from .wandb_logging import make_wandb_logger

    try:
        wandb_logger = make_wandb_logger(cfg, args.output) if cfg.wandb.enabled else None
        loggers = [wandb_logger] if wandb_logger is not None else []
        try:
            results = run_experiment(cfg, args.output, resume=args.resume, verbose=not args.quiet,
                                     extra_loggers=loggers)
            if wandb_logger is not None:
                wandb_logger.log_results(results)
        finally:
            if wandb_logger is not None:
                wandb_logger.finish()
    except (DatasetError, CheckpointError, TrainingHealthError, ValueError) as exc:
        print(f"avalanche-freeze: error: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_results_table(results))
    print(f"\nresults written to {args.output / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
