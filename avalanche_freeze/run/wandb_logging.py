"""Weights & Biases logging through Avalanche's ``WandBLogger``, working with current wandb.

Avalanche 0.6.0's ``WandBLogger`` breaks with wandb >= 0.28: it calls the removed
``wandb.util.generate_id()`` when no run id is given, and refers to the removed
``wandb.viz.CustomChart`` for every metric value. :class:`SSLWandBLogger` passes a run id,
logs scalars, histograms, images and figures itself (on a step that never decreases, as
wandb requires), and at the end of a run writes the results dashboard: final accuracy,
forgetting and BWT in the run summary, the accuracy matrices and the freezing decisions
as W&B tables.

After every task it logs one point of the per-task curves (:func:`task_values`), keyed
``tasks/...`` and drawn against ``tasks_trained`` (the number of tasks trained so far): the
accuracy of every task under every probe and protocol, average accuracy, forgetting and BWT
over the tasks trained so far, and the task's FLOPs, time and frozen blocks, so a run's chart
has one point per task and a grid's runs overlay. Accuracies, forgetting and BWT are in percent
everywhere (as the console and the reports print them), Avalanche's own metrics included.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from avalanche.evaluation.metric_results import AlternativeValues, TensorImage
from avalanche.logging import WandBLogger
from matplotlib.figure import Figure
from PIL.Image import Image
from torch import Tensor

from ..analysis.continual_metrics import SUMMARIES, summarize
from .config import WandBConfig
from .recipes import strategy_kind

__all__ = ["SSLWandBLogger", "log_report", "make_wandb_logger", "task_values"]

#: Avalanche metric names whose values are fractions of 1: logged in percent.
PERCENT_METRICS = ("Top1_", "StreamForgetting", "ExperienceForgetting", "StreamBWT", "ExperienceBWT")
#: Per-task efficiency values of ``results.json`` drawn as curves (and their running totals).
TASK_EFFICIENCY = ("BwdFLOPs_Exp", "FwdFLOPs_Exp", "TrainTime_Exp", "SavedActBytes_Iter")


def task_values(results: Dict[str, Any], task: int) -> Dict[str, float]:
    """The per-task curve values of a run after training ``task`` (0-based), from its results
    (complete or in progress): ``tasks_trained``; per accuracy matrix (``knn_ci``, ...) the
    accuracy of every task evaluated (``tasks/knn_ci/T0``, ...) and the summaries over the tasks
    trained so far (``tasks/knn_ci/avg_acc``, ``forgetting_max``, ``bwt``, ...), in percent; the
    task's efficiency values, their totals so far (``tasks/total/BwdFLOPs_Exp``) and its frozen blocks.

    Example:
        >>> r = {"acc_matrix": {"knn_ci": [[0.9, None], [0.7, 0.8]]},
        ...      "efficiency": [{"BwdFLOPs_Exp": 2.0, "frozen_blocks": 0}, {"BwdFLOPs_Exp": 1.0, "frozen_blocks": 3}]}
        >>> v = task_values(r, 1)
        >>> v["tasks_trained"], round(v["tasks/knn_ci/T0"], 6), round(v["tasks/knn_ci/forgetting_max"], 6)
        (2, 70.0, 20.0)
        >>> v["tasks/total/BwdFLOPs_Exp"], v["tasks/frozen_blocks"]
        (3.0, 3)
    """
    values: Dict[str, float] = {"tasks_trained": task + 1}
    for key, matrix in results["acc_matrix"].items():
        rows = matrix[: task + 1]
        for j, v in enumerate(rows[-1]):
            if v is not None:
                values[f"tasks/{key}/T{j}"] = 100 * v
        for name, v in summarize(rows).items():
            values[f"tasks/{key}/{name}"] = 100 * v
    efficiency = results["efficiency"]
    for name in TASK_EFFICIENCY:
        if name in efficiency[task]:
            values[f"tasks/{name}"] = efficiency[task][name]
            values[f"tasks/total/{name}"] = sum(e.get(name, 0.0) for e in efficiency[: task + 1])
    values["tasks/frozen_blocks"] = efficiency[task].get("frozen_blocks", 0)
    return values


class SSLWandBLogger(WandBLogger):
    """Avalanche's ``WandBLogger`` for wandb >= 0.28, with a results dashboard.

    Args:
        project_name, run_name, config, dir, params: as Avalanche's ``WandBLogger``
            (``params`` go to ``wandb.init``; a run id is generated when none is given).

    Example:
        >>> import os; os.environ["WANDB_MODE"] = "offline"  # doctest: +SKIP
        >>> logger = SSLWandBLogger(project_name="avalanche-freeze", run_name="demo")  # doctest: +SKIP
    """

    def __init__(self, *, project_name: str = "avalanche-freeze", run_name: str = "run",
                 config: Optional[dict] = None, dir: Optional[str] = None, params: Optional[dict] = None) -> None:
        from wandb.sdk.lib.runid import generate_id

        params = dict(params or {})
        params.setdefault("id", os.environ.get("WANDB_RUN_ID") or generate_id())
        super().__init__(project_name=project_name, run_name=run_name, config=config, dir=dir, params=params,
                         save_code=False)
        self.tasks_logged = 0
        self.wandb.define_metric("tasks_trained")
        self.wandb.define_metric("tasks/*", step_metric="tasks_trained")

    def log_single_metric(self, name, value, x_plot):
        if isinstance(value, AlternativeValues):
            value = value.best_supported_value(Image, Tensor, TensorImage, Figure, float, int)
        self.step = max(self.step, int(x_plot))
        wandb = self.wandb
        if isinstance(value, (bool, str)) or value is None:
            return
        if isinstance(value, (float, int)) and name.startswith(PERCENT_METRICS):
            wandb.log({name: 100 * value}, step=self.step)
        elif isinstance(value, (float, int, Figure)):
            wandb.log({name: value}, step=self.step)
        elif isinstance(value, Tensor):
            wandb.log({name: wandb.Histogram(value.detach().cpu().view(-1).numpy())}, step=self.step)
        elif isinstance(value, (Image, TensorImage)):
            wandb.log({name: wandb.Image(value if isinstance(value, Image) else value.image)}, step=self.step)

    def log_task(self, results: Dict[str, Any], task: int) -> None:
        """One point of the per-task curves for every task up to ``task`` not logged yet (after a
        resume, the tasks trained before it), each on its own W&B step."""
        for t in range(self.tasks_logged, task + 1):
            self.step += 1
            self.wandb.log(task_values(results, t), step=self.step)
        self.tasks_logged = max(self.tasks_logged, task + 1)

    def log_results(self, results: Dict[str, Any]) -> None:
        """The end-of-run dashboard: summary values (percent for accuracies, forgetting and BWT) and
        tables from a ``results.json`` dict."""
        wandb, run = self.wandb, self.wandb.run
        for field in SUMMARIES:
            for key, value in results.get(field, {}).items():
                run.summary[f"final/{field}/{key}"] = None if value is None else 100 * value
        for key, value in results.get("efficiency_total", {}).items():
            run.summary[f"total/{key}"] = value
        for key, matrix in results.get("acc_matrix", {}).items():
            n = len(matrix[0]) if matrix else 0
            table = wandb.Table(columns=["after_task"] + [f"T{j}" for j in range(n)],
                                data=[[i] + [None if v is None else 100 * v for v in row] for i, row in enumerate(matrix)])
            wandb.log({f"acc_matrix/{key}": table}, step=self.step)
        history = results.get("freeze_history")
        if history:
            rows = [[h["experience"], h.get("iteration", 0), h["frozen_blocks"], h["frozen_share"],
                     ", ".join(h["frozen_units"]), h.get("stopped_by") or "",
                     ", ".join(f"{k}={v:.3f}" for k, v in h["scores"].items()),
                     ", ".join(f"{k}={v:.4f}" for k, v in h.get("stability", {}).items())] for h in history]
            columns = ["task", "iteration", "frozen_blocks", "frozen_share", "frozen_units", "stopped_by", "scores",
                       "stability"]
            wandb.log({"freeze/decisions": wandb.Table(columns=columns, data=rows)}, step=self.step)

    def finish(self) -> None:
        self.wandb.finish()


def _offline_unless_logged_in() -> None:
    """Log offline (``WANDB_MODE=offline``, unless set) when no W&B credentials are present."""
    if not os.environ.get("WANDB_API_KEY") and not (Path.home() / ".netrc").is_file():
        os.environ.setdefault("WANDB_MODE", "offline")


def make_wandb_logger(cfg, output: Path, *, group: Optional[str] = None, job_type: Optional[str] = None) -> SSLWandBLogger:
    """The logger of one run: offline unless logged in, run name from benchmark/ssl/strategy/seed,
    tags for each of them (``seed:N`` for the seed), job type the strategy unless ``job_type`` is
    given; ``group`` gathers the runs of a grid into one dashboard.

    When logged in but W&B cannot be reached within ``wandb.init_timeout`` seconds, the run
    logs offline instead (with a message on stderr), to be synced later.
    """
    import wandb

    _offline_unless_logged_in()
    output.mkdir(parents=True, exist_ok=True)
    method = "supervised" if strategy_kind(cfg.strategy) == "supervised" else cfg.ssl.name
    options = {"project_name": cfg.wandb.project, "config": cfg.to_dict(), "dir": str(output),
               "run_name": f"{cfg.data.benchmark}-{method}-{cfg.strategy}-s{cfg.seed}"}
    grouping = {"job_type": job_type or cfg.strategy, "tags": [cfg.data.benchmark, method, cfg.strategy, f"seed:{cfg.seed}"],
                **({"group": group} if group else {})}
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return SSLWandBLogger(**options, params=grouping)
    try:
        return SSLWandBLogger(**options, params={**grouping,
                                                 "settings": wandb.Settings(init_timeout=cfg.wandb.init_timeout)})
    except Exception as exc:  # network and authentication errors take many forms
        print(f"avalanche-freeze: W&B could not be reached ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
              f"logging offline to {output / 'wandb'} (sync later with `wandb sync`)", file=sys.stderr)
        os.environ["WANDB_MODE"] = "offline"
        return SSLWandBLogger(**options, params={**grouping, "mode": "offline"})


def log_report(files: Dict[str, Path], table: Sequence[Sequence[str]], header: Sequence[str], *, output: Path,
               project: str = WandBConfig.project, group: Optional[str] = None) -> str:
    """Log a report (:func:`~avalanche_freeze.analysis.report.write_report`) as one W&B run of job type
    ``report`` in ``group``: every PNG as an image, the summary as a table. Offline unless logged
    in; returns the run's folder."""
    import wandb
    from wandb.sdk.lib.runid import generate_id

    _offline_unless_logged_in()
    output.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, group=group, job_type="report", name=f"{group or 'runs'}-report",
                     dir=str(output), id=generate_id())
    try:
        run.log({f"report/{Path(name).stem}": wandb.Image(str(path)) for name, path in files.items()
                 if str(path).endswith(".png")})
        run.log({"report/summary": wandb.Table(columns=list(header), data=[list(r) for r in table])})
        return run.dir
    finally:
        run.finish()
