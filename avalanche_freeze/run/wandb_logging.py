"""Weights & Biases logging through Avalanche's ``WandBLogger``, working with current wandb.

Avalanche 0.6.0's ``WandBLogger`` breaks with wandb >= 0.28: it calls the removed
``wandb.util.generate_id()`` when no run id is given, and refers to the removed
``wandb.viz.CustomChart`` for every metric value. :class:`SSLWandBLogger` passes a run id,
logs scalars, histograms, images and figures itself (on a step that never decreases, as
wandb requires), and at the end of a run writes the results dashboard: final accuracy,
forgetting and BWT in the run summary, the accuracy matrices and the freezing decisions
as W&B tables.
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

from ..analysis.continual_metrics import SUMMARIES
from .config import WandBConfig
from .recipes import strategy_kind

__all__ = ["SSLWandBLogger", "log_report", "make_wandb_logger"]


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

    def log_single_metric(self, name, value, x_plot):
        if isinstance(value, AlternativeValues):
            value = value.best_supported_value(Image, Tensor, TensorImage, Figure, float, int)
        self.step = max(self.step, int(x_plot))
        wandb = self.wandb
        if isinstance(value, (bool, str)) or value is None:
            return
        if isinstance(value, (float, int, Figure)):
            wandb.log({name: value}, step=self.step)
        elif isinstance(value, Tensor):
            wandb.log({name: wandb.Histogram(value.detach().cpu().view(-1).numpy())}, step=self.step)
        elif isinstance(value, (Image, TensorImage)):
            wandb.log({name: wandb.Image(value if isinstance(value, Image) else value.image)}, step=self.step)

    def log_results(self, results: Dict[str, Any]) -> None:
        """The end-of-run dashboard: summary values and tables from a ``results.json`` dict."""
        wandb, run = self.wandb, self.wandb.run
        for field in SUMMARIES:
            for key, value in results.get(field, {}).items():
                run.summary[f"final/{field}/{key}"] = value
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
    """The logger of one run: offline unless logged in, run name from benchmark/ssl/strategy/seed;
    ``group`` and ``job_type`` gather the runs of a grid into one dashboard.

    When logged in but W&B cannot be reached within ``wandb.init_timeout`` seconds, the run
    logs offline instead (with a message on stderr), to be synced later.
    """
    import wandb

    _offline_unless_logged_in()
    output.mkdir(parents=True, exist_ok=True)
    method = "supervised" if strategy_kind(cfg.strategy) == "supervised" else cfg.ssl.name
    options = {"project_name": cfg.wandb.project, "config": cfg.to_dict(), "dir": str(output),
               "run_name": f"{cfg.data.benchmark}-{method}-{cfg.strategy}-s{cfg.seed}"}
    grouping = {k: v for k, v in (("group", group), ("job_type", job_type)) if v}
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
