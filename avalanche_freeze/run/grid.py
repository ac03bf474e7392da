"""Experiment grids: strategies x SSL methods x seeds from one YAML file, resumable.

A grid file names the common configuration and what varies::

    name: fmnist                       # W&B group and the report's title
    output: runs/grid_fmnist           # one folder per run below it
    config: [../configs/fmnist.yaml]   # config files, relative to the grid file
    set: [train.epochs=3]              # common overrides (optional)
    strategies: [finetune, lump, lump_freeze, joint, Naive, Replay, EWC, LwF, DER]
    ssl: [simsiam, barlowtwins]
    seeds: [0, 1, 2]

Self-supervised strategies run once per SSL method and seed, in ``OUTPUT/SSL/STRATEGY/seedN``;
Avalanche's supervised strategies do not depend on the SSL method and run once per seed, in
``OUTPUT/supervised/STRATEGY/seedN``. :func:`run_grid` reuses finished runs, resumes interrupted
ones from their last checkpointed task and prints one progress line per run; with W&B on,
every run of a grid logs to the group ``name`` with the strategy as job type, so the grid is
one dashboard.

Example:
    >>> spec = GridSpec(name="demo", output=Path("runs/demo_grid"), strategies=["lump", "Naive"],
    ...                 ssl=["simsiam", "barlowtwins"], seeds=[0, 1])
    >>> [f"{r.ssl}/{r.strategy}/{r.seed}" for r in spec.runs()]  # doctest: +NORMALIZE_WHITESPACE
    ['simsiam/lump/0', 'simsiam/lump/1', 'barlowtwins/lump/0', 'barlowtwins/lump/1',
     'None/Naive/0', 'None/Naive/1']
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .checkpoint import CheckpointError
from .config import ConfigError, ExperimentConfig, load_yaml
from .experiment import ExperimentRun, RunStatus, logged_failure, run_status
from .output_lock import OutputLock
from .recipes import available_strategies, check_config, strategy_kind
from .wandb_logging import make_wandb_logger
from ..ssl import available_ssl_methods

__all__ = ["GridRun", "GridSpec", "SUPERVISED_FOLDER", "copy_finished_runs", "run_grid"]

#: The folder of the supervised runs (they do not depend on the SSL method).
SUPERVISED_FOLDER = "supervised"
_KEYS = ("name", "output", "config", "set", "strategies", "ssl", "seeds")


@dataclass
class GridRun:
    """One run of a grid: its strategy, SSL method (``None`` for supervised ones), seed, folder."""

    strategy: str
    ssl: Optional[str]
    seed: int
    output: Path

    @property
    def label(self) -> str:
        return f"{self.ssl or SUPERVISED_FOLDER}/{self.strategy} seed {self.seed}"


@dataclass
class GridSpec:
    """A grid of runs (see the module docs for the file format).

    Args:
        name: the grid's name (W&B group, report title).
        output: the folder of the grid's runs.
        strategies: strategy names (``avalanche-freeze list``), Avalanche's supervised ones included.
        ssl: SSL methods of the self-supervised strategies.
        seeds: seeds.
        config: configuration files every run reads, in order.
        overrides: ``key=value`` settings every run gets after the files.
    """

    name: str
    output: Path
    strategies: List[str]
    ssl: List[str]
    seeds: List[int]
    config: List[Path] = field(default_factory=list)
    overrides: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for key, values, accepted in (("strategies", self.strategies, available_strategies()),
                                      ("ssl", self.ssl, available_ssl_methods())):
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{key}={values!r} is not accepted; accepted: a non-empty list of {', '.join(accepted)}",
                                  key=key)
            unknown = [v for v in values if v not in accepted]
            if unknown or len(set(values)) != len(values):
                what = f"unknown {unknown[0]!r}" if unknown else "repeated names"
                raise ConfigError(f"{key}={values!r} is not accepted ({what}); accepted: distinct names from "
                                  f"{', '.join(accepted)}", key=key)
        if (not isinstance(self.seeds, list) or not self.seeds or len(set(self.seeds)) != len(self.seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds)):
            raise ConfigError(f"seeds={self.seeds!r} is not accepted; accepted: a non-empty list of distinct "
                              "integers >= 0", key="seeds")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"name={self.name!r} is not accepted; accepted: a non-empty string", key="name")

    @classmethod
    def from_file(cls, path: Path) -> "GridSpec":
        """Read a grid file (config paths relative to its folder); errors name the key."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"grid file {str(path)!r} does not exist (grids of this project: experiments/grids/*.yaml)")
        raw = load_yaml(path)
        unknown = sorted(set(raw) - set(_KEYS))
        if unknown:
            raise ConfigError(f"grid file {str(path)!r}: unknown key {unknown[0]!r}; accepted: {', '.join(_KEYS)}")
        missing = [k for k in ("strategies", "seeds") if k not in raw]
        if missing:
            raise ConfigError(f"grid file {str(path)!r} lacks {missing[0]!r} (keys: {', '.join(_KEYS)})")
        configs = raw.get("config") or []
        configs = [configs] if isinstance(configs, str) else configs
        if not isinstance(configs, list) or not all(isinstance(c, str) for c in configs):
            raise ConfigError(f"grid file {str(path)!r}: config={raw.get('config')!r} is not accepted; accepted: a "
                              "file path or a list of them (relative to the grid file)", key="config")
        output = raw.get("output", f"runs/grid_{path.stem}")
        if not isinstance(output, str) or not output.strip():
            raise ConfigError(f"grid file {str(path)!r}: output={output!r} is not accepted; accepted: a folder path",
                              key="output")
        overrides = raw.get("set") or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise ConfigError(f"grid file {str(path)!r}: set={overrides!r} is not accepted; accepted: a list of "
                              "'key=value' strings", key="set")
        try:
            return cls(name=raw.get("name", path.stem), output=Path(output),
                       strategies=raw["strategies"], ssl=raw.get("ssl", ["simsiam"]), seeds=raw["seeds"],
                       config=[path.parent / c for c in configs], overrides=list(overrides))
        except ConfigError as exc:
            raise ConfigError(f"grid file {str(path)!r}: {exc}", key=exc.key) from None

    def runs(self) -> List[GridRun]:
        """Every run, self-supervised ones by SSL method, then the supervised ones."""
        ssl_strategies = [s for s in self.strategies if strategy_kind(s) != "supervised"]
        supervised = [s for s in self.strategies if strategy_kind(s) == "supervised"]
        runs = [GridRun(s, m, seed, self.output / m / s / f"seed{seed}")
                for m in self.ssl for s in ssl_strategies for seed in self.seeds]
        runs += [GridRun(s, None, seed, self.output / SUPERVISED_FOLDER / s / f"seed{seed}")
                 for s in supervised for seed in self.seeds]
        return runs

    def config_of(self, run: GridRun) -> ExperimentConfig:
        """The configuration of one run (files, common overrides, then strategy, SSL method and seed)."""
        extra = [f"strategy={run.strategy}", f"seed={run.seed}"] + ([f"ssl.name={run.ssl}"] if run.ssl else [])
        return check_config(ExperimentConfig.from_sources(files=self.config, overrides=self.overrides + extra))


def _accuracy_note(results: Dict[str, Any]) -> str:
    avg = results.get("avg_acc", {})
    parts = [f"{key.split('_')[-1].upper()} {100 * v:.1f}" for key, v in avg.items() if key.startswith("knn") and v is not None]
    return ", ".join(parts)


def run_grid(spec: GridSpec, *, wandb: bool = False, verbose: bool = False,
             echo: Callable[[str], None] = print) -> Dict[str, List[GridRun]]:
    """Run every run of ``spec`` that is not finished; returns the runs by outcome (``reused``,
    ``resumed``, ``trained``, ``failed``). A failed run (bad data, diverged training) is reported
    and the grid goes on; interrupting the grid (Ctrl-C) keeps every completed task."""
    configs = [(run, spec.config_of(run)) for run in spec.runs()]  # every configuration is checked first
    echo(f"grid {spec.name}: {len(configs)} runs into {spec.output}")
    outcome: Dict[str, List[GridRun]] = {"reused": [], "resumed": [], "trained": [], "failed": []}
    for i, (run, cfg) in enumerate(configs, start=1):
        prefix = f"[{i}/{len(configs)}] {run.label}"
        try:
            status, diff = run_status(cfg, run.output)
        except CheckpointError as exc:  # an unreadable results.json or checkpoint: this run only
            outcome["failed"].append(run)
            echo(f"{prefix}: FAILED ({exc})")
            continue
        if status is RunStatus.FINISHED:
            outcome["reused"].append(run)
            echo(f"{prefix}: finished before, reused")
            continue
        if status is RunStatus.OTHER:  # never overwrite results of other settings
            outcome["failed"].append(run)
            echo(f"{prefix}: FAILED ({run.output} holds a run of another configuration, keys {', '.join(diff)}; "
                 "remove it or change the grid's output)")
            continue
        start = time.perf_counter()
        logger = None
        try:
            with OutputLock(run.output):
                experiment = ExperimentRun.build(cfg, run.output, verbose=verbose)
                if status is RunStatus.INTERRUPTED:
                    experiment.restore()
                if wandb:
                    logger = make_wandb_logger(cfg, run.output, group=spec.name, job_type=run.strategy)
                    experiment.add_logger(logger)
                results = experiment.run()
                if logger is not None:
                    logger.log_results(results)
        except KeyboardInterrupt:
            echo(f"{prefix}: interrupted; run the grid again to resume it")
            raise
        except Exception as exc:  # one failed run must not lose the others
            outcome["failed"].append(run)
            echo(f"{prefix}: FAILED ({type(exc).__name__}: {exc})")
            continue
        finally:
            if logger is not None:
                logger.finish()
        kind = "resumed" if status is RunStatus.INTERRUPTED else "trained"
        outcome[kind].append(run)
        echo(f"{prefix}: {kind} in {time.perf_counter() - start:.0f} s ({_accuracy_note(results)})")
    return outcome


def copy_finished_runs(source: Path, target: Path, *, failure_logs: bool = False) -> int:
    """Copy the ``results.json`` of every finished run under ``source`` to the same place under
    ``target`` where ``target`` lacks it (an existing copy is left as it is); returns how many.

    A finished run's ``results.json`` holds its configuration, so a grid or experiment script
    pointed at ``target`` reuses it instead of training again: the way finished runs travel with a
    repository (``experiments/results/...``) to a fresh checkout, small and resumable.

    Parameters:
        source: a folder of run folders (any depth).
        target: where the copies go (created as needed).
        failure_logs: also copy the ``log.txt`` of every run that failed (no results, a
            :func:`~avalanche_freeze.run.experiment.logged_failure`), so the reason travels too.
    """
    source, target = Path(source), Path(target)
    files = sorted(source.rglob("results.json"))
    if failure_logs:
        files += [log for log in sorted(source.rglob("log.txt"))
                  if not (log.parent / "results.json").exists() and logged_failure(log.parent) is not None]
    copied = 0
    for path in files:
        dest = target / path.relative_to(source)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            copied += 1
    return copied
