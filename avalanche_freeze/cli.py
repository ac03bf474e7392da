"""Command line of avalanche-freeze.

``avalanche-freeze run [--config FILE] [--strategy NAME] [--set key=value ...] [key=value ...]``
    one experiment, printing its results table;
``avalanche-freeze grid GRID.yaml [--wandb]``
    a grid of strategies x SSL methods x seeds (finished runs reused, interrupted ones resumed),
    then its report;
``avalanche-freeze report RUNS_DIR [--output DIR] [--wandb]``
    the summary table (markdown) and PNG plots of a folder of runs;
``avalanche-freeze export RUN_DIR [--output FILE] [--format state_dict|torchvision]``
    the run's trained backbone as a plain ``torch.save`` state dict and a JSON description;
``torchrun --nproc_per_node=N -m avalanche_freeze run ...``
    the same run, data parallel over N processes (process 0 logs, checkpoints and prints);
``avalanche-freeze list``
    strategies, SSL methods and config keys.

Exit codes: 0 success; 1 a run that could not start or finish (data, checkpoint, health,
a locked output directory); 2 a configuration or usage error; 130 / 143 interrupted by
SIGINT / SIGTERM (the last completed task is checkpointed; ``--resume`` continues).
A user error prints one line; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path
from typing import List, Optional

from .analysis.report import write_report
from .analysis.results import format_results_table
from .analysis.summary import summary_table
from .benchmarks import DatasetError
from .distributed import init_distributed, is_main_process, launched_by_torchrun, shutdown
from .health import TrainingHealthError
from .run.checkpoint import CHECKPOINT_NAME, CheckpointError, defer_signal
from .run.config import ConfigError, ExperimentConfig, flatten
from .run.experiment import ExperimentRun
from .run.export import export_run
from .run.grid import GridSpec, run_grid
from .run.output_lock import OutputLock, OutputLockedError
from .run.recipes import available_strategies, check_config, recipe_path
from .run.wandb_logging import log_report, make_wandb_logger
from .ssl import DEFAULT_LR, available_ssl_methods, recommended_lr

__all__ = ["main"]

PROG = "avalanche-freeze"


class Interrupted(KeyboardInterrupt):
    """The run received SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment and print its results table")
    run.add_argument("--config", action="append", default=[], type=Path,
                     help="YAML config file (repeatable; later files win)")
    run.add_argument("--strategy", choices=available_strategies(), help="strategy recipe (loads its NAME.yaml)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, dotted (e.g. lump.mem_size=512; repeatable)")
    run.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                     help="more overrides, as --set (the form W&B sweep agents pass)")
    run.add_argument("--output", type=Path, default=Path("runs/default"),
                     help="output directory ($VARIABLES are expanded, e.g. runs/sweep/$WANDB_RUN_ID)")
    run.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    run.add_argument("--overwrite", action="store_true",
                     help="start over even if --output holds a run (its checkpoint and results are removed)")
    run.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline unless logged in)")
    run.add_argument("--quiet", action="store_true", help="no per-experience progress output")
    run.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    grid = sub.add_parser("grid", help="run a grid of strategies x SSL methods x seeds, then report it")
    grid.add_argument("grid_file", type=Path, metavar="GRID.yaml", help="the grid (e.g. experiments/grids/fmnist.yaml)")
    grid.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key in every run, after the grid's own settings (e.g. data.root=DIR)")
    grid.add_argument("--wandb", action="store_true", help="log every run to W&B, grouped by the grid's name")
    grid.add_argument("--verbose", action="store_true", help="per-experience progress output of every run")
    grid.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    grid.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    report = sub.add_parser("report", help="summary table and plots of a folder of runs")
    report.add_argument("runs_dir", type=Path, metavar="RUNS_DIR", help="folder holding runs (results.json files)")
    report.add_argument("--output", type=Path, help="report folder (default RUNS_DIR/report)")
    report.add_argument("--title", help="the report's title (default: the folder's name)")
    report.add_argument("--key", help="accuracy matrix of the plots (default: the first, knn_ci)")
    report.add_argument("--wandb", action="store_true", help="log the plots and table to W&B (job type report)")
    report.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    export = sub.add_parser("export", help="write a run's trained backbone as a plain state dict + JSON")
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (avalanche-freeze run --output)")
    export.add_argument("--output", type=Path, help="the state dict's file (default RUN_DIR/backbone.pt; the "
                                                    "description is written beside it as .json)")
    export.add_argument("--format", choices=("state_dict", "torchvision"), default="state_dict",
                        help="key layout: this package's CifarResNet18 (default) or torchvision's resnet18")
    export.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub.add_parser("list", help="list strategies, SSL methods and config keys with their defaults")
    return p


def _error(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _configuration(args) -> ExperimentConfig:
    files: List[Path] = []
    bad = [a for a in args.assignments if "=" not in a]
    if bad:
        raise ConfigError(f"argument {bad[0]!r} is not accepted; accepted: KEY=VALUE overrides (as --set)")
    overrides = list(args.overrides) + list(args.assignments)
    if args.strategy:
        chosen = [o.split("=", 1)[1].strip() for o in overrides if o.split("=", 1)[0].strip() == "strategy"]
        if any(c != args.strategy for c in chosen):
            raise ConfigError(f"--strategy {args.strategy} and --set strategy={chosen[-1]} disagree; give one of them")
        path = recipe_path(args.strategy)
        if path is not None:
            files.append(path)
    files.extend(args.config)
    if args.strategy:
        overrides.append(f"strategy={args.strategy}")
    if args.wandb:
        overrides.append("wandb.enabled=true")
    return check_config(ExperimentConfig.from_sources(files=files, overrides=overrides))


def _check_output(args) -> Optional[str]:
    """Why ``--output`` cannot be used as asked (``None`` when it can)."""
    output: Path = args.output
    if not str(output).strip() or output.resolve() == Path.cwd().resolve():
        return "--output must name a directory for this run (not the current directory)"
    nearest = next((p for p in (output, *output.parents) if p.exists()), Path("."))  # what exists of the path
    if not nearest.is_dir():
        return f"--output {output}{'' if nearest == output else f': {nearest}'} is a file, not a directory"
    if args.resume and not (output / CHECKPOINT_NAME).is_file():
        return f"--resume: {output} holds no checkpoint ({output / CHECKPOINT_NAME} does not exist)"
    if not args.resume and not args.overwrite and (output / CHECKPOINT_NAME).is_file():
        return (f"{output} already holds a run's checkpoint; pass --resume to continue it, --overwrite to start "
                "over, or another --output")
    if not os.access(nearest, os.W_OK):
        return f"--output {output}: cannot write in {nearest}"
    return None


def _raise_interrupted(signum, frame):
    if defer_signal(signum):  # a checkpoint is being written: the signal comes back once it is complete
        return
    raise Interrupted(signum)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        print("strategies:  " + ", ".join(available_strategies()))
        print("ssl methods: " + ", ".join(available_ssl_methods()))
        print("config keys (default):")
        for key, value in flatten(ExperimentConfig().to_dict()).items():
            print(f"  {key} ({value!r})")
        own = {name: recommended_lr(name) for name in available_ssl_methods() if recommended_lr(name) != DEFAULT_LR}
        print(f"train.lr, when not set, is the SSL method's rate: {DEFAULT_LR!r}"
              + "".join(f", {name} {lr!r}" for name, lr in own.items()))
        return 0
    if args.command == "grid":
        return _grid(args)
    if args.command == "report":
        return _report(args)
    if args.command == "export":
        return _export(args)
    if args.resume and args.overwrite:
        return _error("--resume and --overwrite exclude each other", 2)
    expanded = os.path.expandvars(str(args.output))
    if "$" in expanded:
        return _error(f"--output {args.output}: an environment variable in it is not set", 2)
    args.output = Path(expanded)
    try:
        cfg = _configuration(args)
    except ConfigError as exc:
        if args.debug:
            traceback.print_exc()
        return _error(str(exc), 2)
    problem = _check_output(args)
    if problem:
        return _error(problem, 2)
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run_distributed(args, cfg) if launched_by_torchrun() else _run(args, cfg)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run_distributed(args, cfg: ExperimentConfig) -> int:
    """One process of ``torchrun --nproc_per_node=N -m avalanche_freeze run ...``: the same run, data
    parallel (:mod:`~avalanche_freeze.distributed`); process 0 logs, checkpoints and prints."""
    try:
        device = init_distributed(seed=cfg.seed, device=cfg.device)
    except (ValueError, RuntimeError) as exc:
        return _error(str(exc), 2)
    if not is_main_process():
        args.quiet, cfg.wandb.enabled = True, False
    try:
        code = _run(args, cfg, device=device, main=is_main_process())
    finally:
        shutdown()
    return code


def _run(args, cfg: ExperimentConfig, *, device: Optional[str] = None, main: bool = True) -> int:

    run = None
    wandb_logger = None
    new_folder = main and not args.output.exists()
    try:
        with OutputLock(args.output) if main else contextlib.nullcontext():  # under torchrun: process 0's
            if args.overwrite and main:  # nothing of the previous run may be mistaken for this one's
                for name in (CHECKPOINT_NAME, "results.json", "log.txt"):
                    (args.output / name).unlink(missing_ok=True)
            run = ExperimentRun.build(cfg, args.output, verbose=not args.quiet, device=device)
            if args.resume:
                run.restore()
            if cfg.wandb.enabled:  # after a refused resume no empty W&B run is left behind
                wandb_logger = make_wandb_logger(cfg, args.output)
                run.add_logger(wandb_logger)
            results = run.run()
            if wandb_logger is not None:
                wandb_logger.log_results(results)
    except Interrupted as exc:
        done = run.checkpointed if run is not None else 0  # what the checkpoint on disk holds
        if done:
            saved = (f"tasks 0-{done - 1} are checkpointed in {args.output}; continue with the same command and "
                     "--resume (instead of --overwrite)")
        else:
            saved = "no task was completed, so nothing is saved; run the command again to start over"
        if run is None:
            during = "while setting up"
        else:
            during = f"during task {run.next_task}" if run.next_task < run.results.data["n_tasks"] else "after the last task"
        print(f"\n{PROG}: interrupted by {exc} {during}: {saved}", file=sys.stderr)
        return 128 + exc.signum
    except ConfigError as exc:
        if args.debug:
            traceback.print_exc()
        return _error(str(exc), 2)
    except (DatasetError, CheckpointError, TrainingHealthError, OutputLockedError, OSError, ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        return _error(str(exc), 1)
    except Exception as exc:  # anything else is a bug: one line, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        return _error(f"{type(exc).__name__}: {exc} (run again with --debug for the traceback)", 1)
    finally:
        if wandb_logger is not None:
            wandb_logger.finish()
        if new_folder and (run is None or run.checkpointed == 0) and not (args.output / "results.json").exists():
            # a run that saved nothing leaves nothing behind (no empty folder, no lone log)
            shutil.rmtree(args.output, ignore_errors=True)
    if main:
        print()
        print(format_results_table(results))
        print(f"\nresults written to {args.output / 'results.json'}")
    return 0


def _report(args, *, runs_dir: Optional[Path] = None, title: Optional[str] = None) -> int:

    runs_dir = runs_dir or args.runs_dir
    try:
        files, summaries = write_report(runs_dir, getattr(args, "output", None), title=title or getattr(args, "title", None),
                                        key=getattr(args, "key", None))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        if args.debug:
            traceback.print_exc()
        return _error(str(exc), 1)
    print(files["report.md"].read_text())
    print(f"report written to {files['report.md'].parent} ({', '.join(files)})")
    if args.wandb:
        header, rows = summary_table(summaries)
        folder = log_report(files, rows, header, output=files["report.md"].parent,
                            group=title or getattr(args, "title", None) or Path(runs_dir).name)
        print(f"W&B report run: {folder}")
    return 0


def _export(args) -> int:
    try:
        path = export_run(args.run_dir, args.output, layout=args.format)
    except (CheckpointError, ConfigError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        return _error(str(exc), 1)
    print(f"backbone written to {path} (description: {path.with_suffix('.json')}; "
          f"load with avalanche_freeze.load_backbone or torch.load(..., weights_only=True))")
    return 0


def _grid(args) -> int:

    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        spec = GridSpec.from_file(args.grid_file)
        spec.overrides += args.overrides
        runs = spec.runs()
        outcome = run_grid(spec, wandb=args.wandb, verbose=args.verbose)  # checks every configuration first
    except ConfigError as exc:
        if args.debug:
            traceback.print_exc()
        return _error(str(exc), 2)
    except Interrupted as exc:
        print(f"\n{PROG}: grid interrupted by {exc}; every completed task is checkpointed: run the same command "
              "again to continue", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("grid: " + ", ".join(f"{len(v)} {k}" for k, v in outcome.items()))
    code = 0 if not outcome["failed"] else 1
    if not args.no_report and len(outcome["failed"]) < len(runs):
        code = max(code, _report(args, runs_dir=spec.output, title=spec.name))
    return code


if __name__ == "__main__":
    sys.exit(main())
