"""Run one experiment from an :class:`~avalanche_freeze.config.ExperimentConfig`.

Builds the benchmark, backbone, strategy and plugins of the configured recipe,
trains task after task, evaluates every probe under both protocols after each
task, checkpoints after every task (``--resume`` continues from the last one),
and writes ``results.json``.
"""

from __future__ import annotations

import inspect
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from avalanche.evaluation.metrics import forgetting_metrics, loss_metrics
from avalanche.logging import InteractiveLogger, TextLogger
from avalanche.models.dynamic_optimizers import update_optimizer
from avalanche.training.plugins import EvaluationPlugin

from .backbones import CifarResNet18
from .benchmarks import make_benchmark
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from .config import ExperimentConfig
from .continual_metrics import as_rows, summarize
from .efficiency import EfficiencyMetrics
from .evaluation import PROTOCOL_TAGS, probe_accuracy_metrics, probe_metric_prefix
from .plugins.correlation_freeze import apply_frozen_prefix
from .probes import make_probe
from .recipes import build_plugins
from .strategy import SelfSupervisedStrategy

__all__ = ["ExperimentRun", "format_results_table", "run_experiment", "run_or_reuse"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _load_plugin_state(plugin: Any, state: dict, strategy: SelfSupervisedStrategy) -> None:
    """``plugin.load_state_dict(state)``, passing the training ``device`` and/or the ``backbone``
    to plugins whose ``load_state_dict`` takes them (buffers and importances go back to the
    device; a CKA snapshot is rebuilt from the backbone)."""
    accepted = inspect.signature(plugin.load_state_dict).parameters
    context = {"device": strategy.device, "backbone": strategy.backbone}
    plugin.load_state_dict(state, **{k: v for k, v in context.items() if k in accepted})


def _protocol_key(probe: str, protocol: str) -> str:
    return f"{probe}_{PROTOCOL_TAGS[protocol].lower()}"


@dataclass
class ExperimentRun:
    """Everything one run builds; :meth:`run` trains and evaluates it."""

    cfg: ExperimentConfig
    output_dir: Path
    strategy: SelfSupervisedStrategy
    plugins: Dict[str, Any]
    benchmark: Any
    efficiency: EfficiencyMetrics
    results: Dict[str, Any] = field(default_factory=dict)
    next_task: int = 0

    @classmethod
    def build(cls, cfg: ExperimentConfig, output_dir: Path, *, verbose: bool = True,
              extra_loggers: Optional[list] = None) -> "ExperimentRun":
        _seed_everything(cfg.seed)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={cfg.device!r} but CUDA is not available here; accepted: cpu")
        bench = make_benchmark(
            cfg.benchmark, data_root=cfg.data_root, n_experiences=cfg.n_experiences,
            shuffle_classes=cfg.shuffle_classes, seed=cfg.seed,
            max_train_per_task=cfg.max_train_per_task, max_test_per_task=cfg.max_test_per_task,
        )
        backbone = CifarResNet18(width=cfg.width, in_channels=bench.in_channels)
        plugins = build_plugins(cfg)
        efficiency = EfficiencyMetrics(count_every=cfg.flops_every)
        output_dir.mkdir(parents=True, exist_ok=True)
        loggers: list = [TextLogger(open(output_dir / "log.txt", "a"))]
        if verbose:
            loggers.append(InteractiveLogger())
        loggers.extend(extra_loggers or [])
        probe_options = {"knn": {"k": cfg.knn_k, "temperature": cfg.knn_temperature},
                         "linear": {"epochs": cfg.linear_probe_epochs, "seed": cfg.seed}}
        evaluator = EvaluationPlugin(
            *probe_accuracy_metrics(probes=cfg.probes, protocols=tuple(PROTOCOL_TAGS), probe_options=probe_options),
            forgetting_metrics(experience=True, stream=True),
            loss_metrics(epoch=True, experience=True),
            efficiency,
            loggers=loggers,
        )
        ssl_options: Dict[str, Any] = {"proj_dim": cfg.proj_dim}
        if cfg.ssl == "simsiam":
            ssl_options["pred_dim"] = cfg.pred_dim
        strategy = SelfSupervisedStrategy(
            model=backbone, augmentation=bench.augmentation, ssl=cfg.ssl, ssl_options=ssl_options,
            lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, lr_schedule=cfg.lr_schedule,
            probe=make_probe(cfg.probes[0], **probe_options[cfg.probes[0]]), probe_protocol="class_incremental",
            train_mb_size=cfg.batch_size, train_epochs=cfg.epochs, eval_mb_size=cfg.eval_mb_size,
            device=cfg.device, plugins=list(plugins.values()), evaluator=evaluator, num_workers=cfg.num_workers,
        )
        n_tasks = len(bench.benchmark.train_stream)
        results = {
            "config": cfg.to_dict(),
            "acc_matrix": {_protocol_key(p, pr): [] for p in cfg.probes for pr in PROTOCOL_TAGS},
            "efficiency": [],
            "n_tasks": n_tasks,
        }
        return cls(cfg, output_dir, strategy, plugins, bench, efficiency, results)

    # -------------------------------------------------------- checkpointing
    def checkpoint(self) -> None:
        s = self.strategy
        state = {
            "config": self.cfg.to_dict(),
            "next_task": self.next_task,
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "plugins": {k: p.state_dict() for k, p in self.plugins.items() if hasattr(p, "state_dict")},
            "rng": _rng_state(),
            "clock": {k: v for k, v in vars(s.clock).items() if isinstance(v, int)},
            "model_version": s.model_version,
            "results": self.results,
        }
        save_checkpoint(state, self.output_dir)

    def restore(self) -> None:
        state = load_checkpoint(self.output_dir)
        saved_cfg = state["config"]
        if saved_cfg != self.cfg.to_dict():
            diff = sorted(k for k in saved_cfg if saved_cfg.get(k) != self.cfg.to_dict().get(k))
            raise CheckpointError(
                f"checkpoint in {self.output_dir} was written with a different configuration "
                f"(keys {', '.join(diff)}); resume with the same config and --set values"
            )
        s = self.strategy
        for plugin in self.plugins.values():  # modules plugins add to the model (CaSSLe's predictor)
            if hasattr(plugin, "attach"):
                plugin.attach(s)
        s.model.load_state_dict(state["model"])
        for name, plugin_state in state["plugins"].items():
            _load_plugin_state(self.plugins[name], plugin_state, s)
        # re-create the optimizer's parameter list as training left it (as Avalanche's first
        # make_optimizer did: parameters added by plugins appended; then the frozen prefix
        # taken out) before loading its state
        update_optimizer(s.optimizer, dict(s.model.named_parameters()), optimized_params=None)
        apply_frozen_prefix(s.backbone, s.backbone.num_frozen_units, s.optimizer)
        s.optimizer.load_state_dict(state["optimizer"])
        s.optimized_param_id = dict(s.model.named_parameters())
        for k, v in state["clock"].items():
            setattr(s.clock, k, v)
        s.model_version = state["model_version"]
        stream = self.benchmark.benchmark.train_stream
        s.trained_experiences = {i: stream[i] for i in range(state["next_task"])}
        _set_rng_state(state["rng"])
        self.results = state["results"]
        self.next_task = state["next_task"]

    # ----------------------------------------------------------------- run
    def run(self, *, stop_after: Optional[int] = None) -> Dict[str, Any]:
        """Train the remaining tasks (``stop_after``: train at most this many, for tests)."""
        bench = self.benchmark.benchmark
        n_tasks = len(bench.train_stream)
        done = 0
        while self.next_task < n_tasks and (stop_after is None or done < stop_after):
            t = self.next_task
            self.strategy.train(bench.train_stream[t])
            metrics = self.strategy.eval(bench.test_stream[: t + 1])
            self._record(t, metrics)
            self.next_task += 1
            done += 1
            self.checkpoint()
        if self.next_task == n_tasks:
            self._finalise()
        return self.results

    def _record(self, t: int, metrics: Dict[str, float]) -> None:
        for probe in self.cfg.probes:
            for protocol in PROTOCOL_TAGS:
                prefix = probe_metric_prefix(probe, protocol) + "_Exp/"
                row = [None] * self.results["n_tasks"]
                for name, value in metrics.items():
                    if name.startswith(prefix):
                        row[int(name.rsplit("Exp", 1)[1])] = float(value)
                self.results["acc_matrix"][_protocol_key(probe, protocol)].append(row)
        eff = dict(self.efficiency.last)
        eff["task"] = t
        eff["frozen_blocks"] = self.strategy.backbone.num_frozen_units
        self.results["efficiency"].append(eff)
        if "freeze" in self.plugins:
            self.results["freeze_history"] = self.plugins["freeze"].history

    def _finalise(self) -> None:
        r = self.results
        summaries = {k: summarize(m) for k, m in r["acc_matrix"].items()}
        r["acc_matrix"] = {k: as_rows(m) for k, m in r["acc_matrix"].items()}
        r["avg_acc"] = {k: v["avg_acc"] for k, v in summaries.items()}
        r["forgetting"] = {k: v["forgetting"] for k, v in summaries.items()}
        r["bwt"] = {k: v["bwt"] for k, v in summaries.items()}
        r["learning_acc"] = {k: v["learning_acc"] for k, v in summaries.items()}
        eff = r["efficiency"]
        r["efficiency_total"] = {
            key: sum(e.get(key, 0.0) for e in eff)
            for key in ("TrainTime_Exp", "FwdFLOPs_Exp", "BwdFLOPs_Exp", "Iterations_Exp")
        }
        r["efficiency_total"]["SavedActBytes_Iter_mean"] = (
            sum(e.get("SavedActBytes_Iter", 0.0) for e in eff) / len(eff) if eff else 0.0
        )
        if any("PeakGPUMem_Exp" in e for e in eff):
            r["efficiency_total"]["PeakGPUMem_max"] = max(e.get("PeakGPUMem_Exp", 0.0) for e in eff)
        tmp = self.output_dir / "results.json.tmp"
        tmp.write_text(json.dumps(r, indent=2))
        os.replace(tmp, self.output_dir / "results.json")


def run_experiment(cfg: ExperimentConfig, output_dir: Path, *, resume: bool = False, verbose: bool = True,
                   extra_loggers: Optional[list] = None) -> Dict[str, Any]:
    """Build, (optionally) resume, run; returns the results dict also written to ``results.json``."""
    run = ExperimentRun.build(cfg, output_dir, verbose=verbose, extra_loggers=extra_loggers)
    if resume:
        run.restore()
    return run.run()


def run_or_reuse(cfg: ExperimentConfig, output_dir: Path, *, verbose: bool = False) -> Dict[str, Any]:
    """Results of ``cfg`` in ``output_dir``: reused when a finished run there has the same
    configuration, resumed from its checkpoint when an interrupted one does, run otherwise
    (for experiment grids that are re-run after a crash)."""
    done = output_dir / "results.json"
    if done.is_file():
        results = json.loads(done.read_text())
        if results["config"] == cfg.to_dict():
            return results
    run = ExperimentRun.build(cfg, output_dir, verbose=verbose)
    if (output_dir / CHECKPOINT_NAME).is_file():
        run.restore()
    return run.run()


def format_results_table(results: Dict[str, Any]) -> str:
    """A plain-text table: accuracy matrices, then average accuracy / forgetting / BWT per protocol."""
    lines: List[str] = []
    for key, matrix in results["acc_matrix"].items():
        lines.append(f"accuracy matrix [{key}] (row i = after training task i, %)")
        n = len(matrix[0]) if matrix else 0
        lines.append("        " + "".join(f"  T{j:<4d}" for j in range(n)))
        for i, row in enumerate(matrix):
            cells = "".join(f"  {100 * v:5.1f}" if v is not None else "      -" for v in row)
            lines.append(f"  T{i:<4d}{cells}")
        lines.append("")
    lines.append(f"{'protocol':<12}{'avg_acc %':>10}{'forgetting':>12}{'bwt':>8}")
    for key in results["acc_matrix"]:
        lines.append(
            f"{key:<12}{100 * results['avg_acc'][key]:>10.2f}{100 * results['forgetting'][key]:>12.2f}"
            f"{100 * results['bwt'][key]:>8.2f}"
        )
    tot = results.get("efficiency_total", {})
    if tot:
        lines.append("")
        lines.append(
            f"train time {tot['TrainTime_Exp']:.1f}s | fwd FLOPs {tot['FwdFLOPs_Exp']:.3g} | "
            f"bwd FLOPs {tot['BwdFLOPs_Exp']:.3g} | saved activations/iter {tot['SavedActBytes_Iter_mean'] / 2**20:.1f} MiB"
        )
    return "\n".join(lines)
