"""Run one experiment from an :class:`~avalanche_freeze.run.config.ExperimentConfig`.

:meth:`ExperimentRun.build` builds the benchmark, backbone, strategy and the plugins of
the configured recipe; :meth:`ExperimentRun.run` trains task after task, evaluates every
probe under both protocols after each task, records the results
(:class:`~avalanche_freeze.analysis.results.RunResults`), checkpoints after every task
(:mod:`~avalanche_freeze.run.checkpoint`; ``restore`` continues from the last one) and
writes ``results.json``.

Three kinds of strategy run this way (:func:`~avalanche_freeze.run.recipes.strategy_kind`): the
self-supervised recipes; ``joint``, the upper bound (one pass over all tasks' images, evaluated
once); and Avalanche's supervised strategies (``Naive``, ``Replay``, ...), which a
:attr:`ExperimentRun.trainer` trains on labels while the self-supervised strategy, sharing the
backbone, evaluates its features with the same probes.

Example:
    >>> cfg = ExperimentConfig.from_sources(overrides=["strategy=lump_freeze"])
    >>> run = ExperimentRun.build(cfg, Path("runs/example"), verbose=False)  # doctest: +SKIP
    >>> results = run.run()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Tuple, runtime_checkable

import torch
from avalanche.evaluation.metrics import forgetting_metrics
from avalanche.logging import InteractiveLogger, TextLogger
from avalanche.training.plugins import EvaluationPlugin

from ..backbones import CifarResNet18
from ..benchmarks import DatasetError, SSLBenchmark, make_benchmark
from .checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    restore_strategy_state,
    save_checkpoint,
    signals_deferred,
    strategy_state,
)
from .config import ConfigError, ExperimentConfig, flatten
from ..validation import not_accepted
from ..distributed import barrier, gather_from_all, is_main_process, per_process_batch, rank, world_size
from ..device_loss import device_loss_metrics
from ..efficiency import EfficiencyMetrics
from ..evaluation import PROTOCOLS, ProbeAccuracy, probe_accuracy_metrics
from ..health import TrainingHealthError, TrainingHealthPlugin
from .output_lock import OutputLock
from ..freezing.config import FreezeConfig
from ..probes import make_probe
from .recipes import (available_strategies, build_plugins, check_config, strategy_components, strategy_kind,
                      unused_keys, unused_sections)
from ..analysis.results import RunResults, format_results_table
from ..analysis.summary import read_results
from ..seeding import rng_state, seed_everything, set_rng_state
from ..strategy import SelfSupervisedStrategy
from .supervised import SupervisedModel, build_supervised_strategy, restore_supervised_state, supervised_state

__all__ = ["KEYS_ADDED_WITH_ANOTHER_DEFAULT", "RESULT_NEUTRAL_KEYS", "RUN_FAILURES", "ExperimentRun", "RunStatus",
           "TaskLogger", "config_differences", "format_results_table", "logged_failure", "run_experiment",
           "run_or_reuse", "run_status", "same_results"]

#: Configuration keys that do not change a run's results: a run may be resumed or reused with
#: other values of these (logging, evaluation batch size, dataloader workers).
RESULT_NEUTRAL_KEYS = frozenset({"wandb.enabled", "wandb.project", "wandb.init_timeout", "eval.mb_size", "num_workers",
                                 "health.check_every"})

#: Keys whose default has changed since they were added: the value a run saved before the key
#: existed behaved as (any other missing key counts as its current default).
KEYS_ADDED_WITH_ANOTHER_DEFAULT: Dict[str, Any] = {"freeze.first_task": 2, "freeze.score": "raw",
                                                     "freeze.shrink": False}


def config_differences(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
    """The dotted keys whose values differ between two configuration dicts, neutral keys aside; the
    sections and keys the (common) strategy does not use (:func:`~avalanche_freeze.run.recipes.unused_sections`,
    :func:`~avalanche_freeze.run.recipes.unused_keys`) are neutral too, and so are the freezing rule's
    options when both sides follow a fixed ``freeze.schedule`` (:attr:`FreezeConfig.DECISION_OPTIONS`)."""
    missing = _missing_key_values()
    fa, fb = flatten(a), flatten(b)
    fa, fb = ({**{k: v for k, v in missing.items() if k in fb}, **fa},
              {**{k: v for k, v in missing.items() if k in fa}, **fb})
    unused: set = set()
    neutral = set(RESULT_NEUTRAL_KEYS)
    if a.get("strategy") == b.get("strategy") and a.get("strategy") in available_strategies():
        unused = set(unused_sections(a["strategy"]))
        neutral |= set(unused_keys(a["strategy"]))
    if fa.get("freeze.schedule") and fb.get("freeze.schedule"):
        neutral |= {f"freeze.{key}" for key in FreezeConfig.DECISION_OPTIONS}
    return sorted(k for k in set(fa) | set(fb)
                  if k not in neutral and k.split(".")[0] not in unused and fa.get(k) != fb.get(k))


@functools.lru_cache(maxsize=1)
def _missing_key_values() -> Dict[str, Any]:
    """What a key one side lacks (added since that side was saved) counts as: its default when the
    key was added."""
    return {**flatten(ExperimentConfig().to_dict()), **KEYS_ADDED_WITH_ANOTHER_DEFAULT}


def same_results(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Whether two configuration dicts give the same results (they differ only in neutral keys)."""
    return not config_differences(a, b)


def _check_memory(cfg: ExperimentConfig, in_channels: int, image_size: int) -> None:
    """Refuse a model (backbone and SSL heads, momentum copies included) and LUMP buffer whose
    training state cannot fit in the device's free memory; the model is built on the meta device
    (no memory), so the check itself allocates nothing."""
    with torch.device("meta"):
        backbone = CifarResNet18(width=cfg.model.width, in_channels=in_channels)
        n_backbone = sum(p.numel() for p in backbone.parameters())
        try:
            n_heads = sum(p.numel() for p in cfg.ssl.build(feature_dim=backbone.feature_dim, backbone=backbone)
                          .parameters()) if strategy_kind(cfg.strategy) != "supervised" else 0
        except NotImplementedError:  # a method that cannot be built on the meta device: its heads are not counted
            n_heads = 0
    n_params = n_backbone + n_heads
    needed = 4 * 4 * n_params  # fp32 weights, gradients, momentum and a copy (BYOL's target, CaSSLe's teacher)
    if "lump" in strategy_components(cfg.strategy):  # raw images and their views, float32
        needed += 2 * 4 * cfg.lump.mem_size * in_channels * image_size ** 2
    if cfg.device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(cfg.device))
    else:
        import psutil

        free = psutil.virtual_memory().available
    if needed > free:
        raise ValueError(f"model.width={cfg.model.width} and ssl.proj_dim={cfg.ssl.proj_dim} give a model of "
                         f"{n_params / 1e6:.0f}M parameters (backbone {n_backbone / 1e6:.0f}M, SSL heads "
                         f"{n_heads / 1e6:.0f}M) whose training state needs about {needed / 2**30:.1f} GiB, more than "
                         f"the {free / 2**30:.1f} GiB free on {cfg.device}; accepted: a smaller model.width or "
                         "ssl.proj_dim")


def _finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


@runtime_checkable
class TaskLogger(Protocol):
    """A logger (among the evaluator's) that also wants the results after every task:
    ``log_task(results, task)`` is called once the evaluation after ``task`` is recorded, with
    the run's results so far (``results.json``'s layout, before the summaries)."""

    def log_task(self, results: Dict[str, Any], task: int) -> None:
        ...


@dataclass
class ExperimentRun:
    """Everything one run builds; :meth:`run` trains and evaluates it."""

    cfg: ExperimentConfig
    output_dir: Path
    strategy: SelfSupervisedStrategy
    plugins: Dict[str, Any]
    benchmark: SSLBenchmark
    efficiency: EfficiencyMetrics
    probe_metrics: List[ProbeAccuracy]
    results: RunResults
    #: The Avalanche strategy that trains a supervised reference (``strategy=Naive`` ...);
    #: ``None`` when ``strategy`` trains (self-supervised runs). ``strategy`` always evaluates.
    trainer: Optional[Any] = None
    next_task: int = 0
    #: Tasks held by the checkpoint on disk (written by this run or restored from).
    checkpointed: int = 0

    @classmethod
    def build(cls, cfg: ExperimentConfig, output_dir: Path, *, verbose: bool = True,
              extra_loggers: Optional[list] = None, device: Optional[str] = None) -> "ExperimentRun":
        """Build the run of ``cfg`` writing to ``output_dir``.

        Args:
            cfg: the configuration.
            output_dir: the run's folder (log, checkpoint, results).
            verbose: print per-experience progress.
            extra_loggers: more Avalanche loggers (W&B).
            device: this process's device when it differs from ``cfg.device`` (``cuda:LOCAL_RANK``
                under torchrun); the configuration keeps the configured one.

        Under torchrun (:mod:`~avalanche_freeze.distributed`, initialised before) only process 0
        logs, and ``train.batch_size`` is split over the processes.
        """
        check_config(cfg)
        seed_everything(cfg.seed)
        device = device or cfg.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={cfg.device!r} but CUDA is not available here; accepted: cpu")
        data = cfg.data
        try:
            bench = make_benchmark(
                data.benchmark, data_root=data.root, n_experiences=data.n_experiences,
                shuffle_classes=data.shuffle_classes, seed=cfg.seed,
                max_train_per_task=data.max_train_per_task, max_test_per_task=data.max_test_per_task,
                eval_split=data.eval_split, augmentation_options=dataclasses.asdict(cfg.augment),
                task_transforms=data.task_transforms,
            )
        except ConfigError as exc:
            raise exc.within("data") from None
        smallest = min(len(exp.dataset) for exp in bench.benchmark.train_stream)
        if cfg.train.batch_size > smallest:
            raise not_accepted("train.batch_size", cfg.train.batch_size,
                               f"at most {smallest} (the training images of the smallest task; a larger batch "
                               "would silently be one smaller batch per epoch)")
        _check_memory(cfg, bench.in_channels, bench.augmentation.image_size)
        kind = strategy_kind(cfg.strategy)
        if world_size() > 1 and kind == "supervised":
            raise ValueError(f"strategy={cfg.strategy} (Avalanche's supervised strategy) does not run under torchrun; "
                             "accepted: the self-supervised recipes and joint")
        backbone = CifarResNet18(width=cfg.model.width, in_channels=bench.in_channels)
        plugins = build_plugins(cfg) if kind != "supervised" else {}  # supervised: health only, on the trainer
        efficiency = EfficiencyMetrics(count_every=cfg.metrics.flops_every)
        output_dir.mkdir(parents=True, exist_ok=True)
        loggers: list = []
        if is_main_process():  # under torchrun, process 0 logs
            # line-buffered: a killed run's log holds every line written before the kill
            loggers.append(TextLogger(open(output_dir / "log.txt", "a", buffering=1, encoding="utf-8")))
            if verbose:
                loggers.append(InteractiveLogger())
            loggers.extend(extra_loggers or [])
        probe_options = cfg.eval.probe_options(seed=cfg.seed)
        probe_metrics = probe_accuracy_metrics(probes=cfg.eval.probes, protocols=PROTOCOLS,
                                               probe_options=probe_options)
        # a supervised strategy trains (its evaluator measures training); the self-supervised
        # strategy below evaluates the backbone with the probes in every case
        training_metrics = [device_loss_metrics(epoch=True, experience=True), efficiency]
        evaluator = EvaluationPlugin(
            *probe_metrics,
            forgetting_metrics(experience=True, stream=True),
            *(training_metrics if kind != "supervised" else device_loss_metrics(experience=True)),
            loggers=loggers,
        )
        train = cfg.train
        primary = cfg.eval.probes[0]
        strategy = SelfSupervisedStrategy(
            model=backbone, augmentation=bench.augmentation,
            ssl=cfg.ssl.build(feature_dim=backbone.feature_dim, backbone=backbone),
            lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay, lr_schedule=train.lr_schedule,
            probe=make_probe(primary, **probe_options[primary]), probe_protocol="class_incremental",
            probe_bank_stream=bench.benchmark.train_stream,
            train_mb_size=per_process_batch(train.batch_size), train_epochs=train.epochs,
            eval_mb_size=cfg.eval.mb_size, device=device, plugins=list(plugins.values()), evaluator=evaluator,
            num_workers=cfg.num_workers, precision=train.precision, channels_last=train.channels_last,
            sync_batchnorm=train.sync_batchnorm, data_on_device=train.data_on_device, compile=train.compile,
        )
        trainer = None
        if world_size() > 1:
            seed_everything(cfg.seed + rank())  # built alike; augmentations and mixups differ per process
        if kind == "supervised":
            model = SupervisedModel(backbone=backbone, num_classes=bench.num_classes, augmentation=strategy.augmentation,
                                    augment=cfg.supervised.augment)
            trainer = build_supervised_strategy(
                cfg.strategy, model=model, options=cfg.supervised, train=train, device=cfg.device,
                eval_mb_size=cfg.eval.mb_size, evaluator=EvaluationPlugin(*training_metrics, loggers=loggers),
                plugins=[TrainingHealthPlugin(**dataclasses.asdict(cfg.health))])
        per_experience = [m for m in probe_metrics if m.emit_at == "experience"]
        strategy.probe_evaluator.knn_k_capped_by_tasks = cfg.eval.knn_k_capped_by_tasks
        results = RunResults(config=cfg.to_dict(), keys=[m.key for m in per_experience],
                             n_tasks=len(bench.benchmark.train_stream))
        return cls(cfg, output_dir, strategy, plugins, bench, efficiency, probe_metrics, results, trainer=trainer)

    def add_logger(self, logger) -> None:
        """Log the rest of the run to ``logger`` too (an Avalanche logger)."""
        evaluator = self.strategy.evaluator
        evaluator.loggers = [*evaluator.loggers, logger]

    # -------------------------------------------------------- checkpointing
    def checkpoint(self) -> None:
        """Save the run after its last completed task (atomically, with a checksum). Under torchrun
        process 0 writes it, with every process's RNG streams and plugin states (LUMP's buffers)."""
        strategy = strategy_state(self.strategy, self.plugins)
        processes = None
        if world_size() > 1:  # plugin states are per process: saved once each, in ``processes``
            processes = gather_from_all({"rng": rng_state(), "plugins": strategy.pop("plugins")})
            strategy["plugins"] = {}
        if is_main_process():
            state = {
                "config": self.cfg.to_dict(),
                "next_task": self.next_task,
                "strategy": strategy,
                "trainer": None if self.trainer is None else supervised_state(self.trainer),
                "rng": rng_state(),
                "results": self.results.data,
                "processes": processes,  # under torchrun: every process's RNG streams and plugin states
            }
            with signals_deferred():  # an interruption takes effect once the count below is right
                save_checkpoint(state, self.output_dir)
                self.checkpointed = self.next_task
        else:
            self.checkpointed = self.next_task
        barrier()

    def restore(self) -> None:
        """Continue from the checkpoint in the output directory (same configuration required)."""
        state = load_checkpoint(self.output_dir, required=("config", "next_task", "strategy", "rng", "results"))
        diff = config_differences(state["config"], self.cfg.to_dict())
        if diff:
            raise CheckpointError(
                f"checkpoint in {self.output_dir} was written with a different configuration "
                f"(keys {', '.join(diff)}); resume with the same config and --set values"
            )
        processes = state.get("processes") or [{"rng": state["rng"], "plugins": state["strategy"]["plugins"]}]
        if len(processes) != world_size():
            raise CheckpointError(f"checkpoint in {self.output_dir} was written by {len(processes)} process(es); "
                                  f"resume it with the same number (here: {world_size()})")
        mine = processes[rank()]
        restore_strategy_state(self.strategy, self.plugins, {**state["strategy"], "plugins": mine["plugins"]})
        if self.trainer is not None:
            try:
                restore_supervised_state(self.trainer, state["trainer"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"the checkpoint's supervised strategy state does not fit this run "
                                      f"({type(exc).__name__}: {exc})") from exc
        set_rng_state(mine["rng"])
        self.results = RunResults.from_dict(state["results"])
        self.next_task = self.checkpointed = state["next_task"]
        saved, now = flatten(state["config"]), flatten(self.cfg.to_dict())
        changed = {k: [saved.get(k), now.get(k)] for k in sorted(RESULT_NEUTRAL_KEYS) if saved.get(k) != now.get(k)}
        if changed:  # allowed on resume (they do not change the results), but recorded: [before, after]
            self.results.data.setdefault("resumed_with_changes", []).append({"from_task": self.next_task,
                                                                           "changed": changed})

    # ----------------------------------------------------------------- run
    def run(self, *, stop_after: Optional[int] = None) -> Dict[str, Any]:
        """Train the remaining tasks (``stop_after``: train at most this many, for tests), holding
        the output directory's lock (:class:`~avalanche_freeze.run.output_lock.OutputLock`; process 0's under torchrun)."""
        if not is_main_process():
            return self._run(stop_after)
        with OutputLock(self.output_dir):
            try:
                return self._run(stop_after)
            except Exception as exc:  # the run's log says why it stopped (a grid's table reads it)
                self._log_failure(exc)
                raise

    def _log_failure(self, exc: BaseException) -> None:
        """Append ``run failed at task N: <error>`` to the run's ``log.txt`` (nothing if it has none;
        :func:`logged_failure` reads it back)."""
        log = self.output_dir / "log.txt"
        if log.is_file():
            with open(log, "a", encoding="utf-8") as stream:
                stream.write(f"{_FAILURE_LINE} at task {self.next_task}: {type(exc).__name__}: {exc}\n")

    def _run(self, stop_after: Optional[int]) -> Dict[str, Any]:
        bench = self.benchmark.benchmark
        n_tasks = len(bench.train_stream)
        if strategy_kind(self.cfg.strategy) == "joint" and self.next_task < n_tasks and stop_after != 0:
            self._run_joint()
        done = 0
        while self.next_task < n_tasks and (stop_after is None or done < stop_after):
            t = self.next_task
            if self.trainer is None:
                self.strategy.train(bench.train_stream[t])
            else:
                self.trainer.train(bench.train_stream[t])
                self.strategy.probe_evaluator.set_trained(range(t + 1))
            self.strategy.eval(bench.test_stream[: t + 1])
            freezing = self.plugins["freeze"].record() if "freeze" in self.plugins else None
            efficiency = dict(self.efficiency.last)
            if freezing is not None and freezing.task_seconds is not None:
                efficiency["FreezeDecisionTime_Exp"] = freezing.task_seconds
            frozen = self.strategy.backbone.num_frozen_units
            self._check_same_frozen_prefix(frozen)
            self.results.record_task(t, self._accuracies(), efficiency, frozen_blocks=frozen,
                                     freeze_history=freezing.decisions if freezing is not None else None)
            for logger in self.strategy.evaluator.loggers:
                if isinstance(logger, TaskLogger):
                    logger.log_task(self.results.data, t)
            self.next_task += 1
            done += 1
            self.checkpoint()
        if self.next_task == n_tasks and is_main_process():
            self._write_results()
        return self.results.data

    def _check_same_frozen_prefix(self, frozen: int) -> None:
        """Under torchrun: every process froze the same prefix (recorded per task in the results)."""
        if world_size() == 1:
            return
        per_process = gather_from_all(frozen)
        if len(set(per_process)) > 1:
            raise RuntimeError(f"the processes froze different prefixes ({per_process} units); the freezing "
                               "decision must be process 0's everywhere")
        self.results.data["processes"] = world_size()
        self.results.data.setdefault("frozen_blocks_per_process", []).append(per_process)

    def _accuracies(self) -> Dict[str, Dict[int, float]]:
        return {m.key: m.last_values for m in self.probe_metrics if m.emit_at == "experience"}

    def _run_joint(self) -> None:
        """The upper bound: one training pass over all tasks' images at once (the configured
        epochs, so the same number of iterations as the continual run), then one evaluation."""
        if self.benchmark.joint_train_stream is None:
            raise ValueError(f"strategy=joint needs a benchmark built from datasets; {self.benchmark.name!r} is not")
        bench = self.benchmark.benchmark
        n_tasks = len(bench.train_stream)
        self.strategy.train(self.benchmark.joint_train_stream[0])
        self.strategy.probe_evaluator.set_trained(range(n_tasks))
        self.strategy.eval(bench.test_stream)
        self.results.record_joint(self._accuracies(), dict(self.efficiency.last))
        self.next_task = n_tasks
        self.checkpoint()

    def _write_results(self) -> None:
        data = self.results.finalise()
        text = json.dumps(_finite_or_none(data), indent=2, allow_nan=False)
        atomic_write(self.output_dir / "results.json", text.encode())


def run_experiment(cfg: ExperimentConfig, output_dir: Path, *, resume: bool = False, verbose: bool = True,
                   extra_loggers: Optional[list] = None) -> Dict[str, Any]:
    """Build, (optionally) resume, run; returns the results dict also written to ``results.json``."""
    run = ExperimentRun.build(cfg, output_dir, verbose=verbose, extra_loggers=extra_loggers)
    if resume:
        run.restore()
    return run.run()


class RunStatus(enum.Enum):
    """What an output folder holds for a configuration (:func:`run_status`)."""

    NEW = "new"  #: nothing: the run starts from scratch
    FINISHED = "finished"  #: a finished run of the same configuration (its results are reused)
    INTERRUPTED = "interrupted"  #: a checkpoint of the same configuration (the run resumes from it)
    OTHER = "other"  #: a run of another configuration (never overwritten silently)


def _saved_config(output_dir: Path) -> Optional[Dict[str, Any]]:
    done = output_dir / "results.json"
    if done.exists():
        try:
            return read_results(done)["config"]  # the one reader of results files (report uses it too)
        except ValueError as exc:
            raise CheckpointError(f"{exc}; remove it or choose another output folder") from None
    if (output_dir / CHECKPOINT_NAME).is_file():
        return load_checkpoint(output_dir, required=("config",))["config"]
    return None


def run_status(cfg: ExperimentConfig, output_dir: Path) -> Tuple[RunStatus, List[str]]:
    """What ``output_dir`` holds for ``cfg``, and the differing keys when it holds another configuration's run."""
    saved = _saved_config(output_dir)
    if saved is None:
        return RunStatus.NEW, []
    diff = config_differences(saved, cfg.to_dict())
    if diff:
        return RunStatus.OTHER, diff
    return (RunStatus.FINISHED if (output_dir / "results.json").is_file() else RunStatus.INTERRUPTED), []


_FAILURE_LINE = "run failed"


def logged_failure(output_dir: Path) -> Optional[str]:
    """The error a failed run wrote last into its ``log.txt`` (``<ErrorType>: <message>``), or None
    when the folder holds no such line (a finished, interrupted or never started run).

    Parameters:
        output_dir: the run's folder.
    """
    log = Path(output_dir) / "log.txt"
    if not log.is_file():
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith(_FAILURE_LINE)]
    return lines[-1].split(": ", 1)[1] if lines else None


#: The errors that end one run of an experiment script (diverged training, an unreadable run folder,
#: missing data, a full disk): the script records the run as failed, with the error, and goes on.
RUN_FAILURES = (TrainingHealthError, CheckpointError, DatasetError, OSError)


def run_or_reuse(cfg: ExperimentConfig, output_dir: Path, *, verbose: bool = False,
                 extra_loggers: Optional[list] = None) -> Dict[str, Any]:
    """Results of ``cfg`` in ``output_dir``: reused when a finished run there has the same
    configuration, resumed from its checkpoint when an interrupted one does, run otherwise
    (for experiment grids that are re-run after a crash). A folder holding a run of another
    configuration is refused (:class:`~avalanche_freeze.run.checkpoint.CheckpointError` naming the keys)."""
    status, diff = run_status(cfg, output_dir)
    if status is RunStatus.FINISHED:
        return json.loads((output_dir / "results.json").read_text())
    if status is RunStatus.OTHER:
        raise CheckpointError(f"{output_dir} holds a run of another configuration (keys {', '.join(diff)}); "
                              "remove it or choose another output folder")
    run = ExperimentRun.build(cfg, output_dir, verbose=verbose, extra_loggers=extra_loggers)
    if status is RunStatus.INTERRUPTED:
        run.restore()
    return run.run()
