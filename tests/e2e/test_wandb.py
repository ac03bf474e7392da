"""W&B logging: Avalanche's WandBLogger made to work with current wandb, and the results dashboard."""

import json
from types import SimpleNamespace

import pytest
import torch

from avalanche_freeze.cli import main
from avalanche_freeze.run.wandb_logging import SSLWandBLogger

from ..conftest import TINY_SET


def test_scalars_histograms_and_monotone_steps():
    logged = []
    logger = SSLWandBLogger.__new__(SSLWandBLogger)  # no wandb.init: a recording stand-in for the module
    logger.wandb = SimpleNamespace(log=lambda d, step: logged.append((d, step)), Histogram=lambda a: ("hist", len(a)))
    logger.step = 0
    logger.log_single_metric("Top1_KNN_CI_Acc_Exp/Exp000", 0.75, 10)
    logger.log_single_metric("Loss_Epoch", 1, 4)  # an x value behind the last step must not go back
    logger.log_single_metric("Feats", torch.ones(5), 12)
    logger.log_single_metric("Note", "text", 13)  # unsupported types are skipped
    assert logged == [({"Top1_KNN_CI_Acc_Exp/Exp000": 0.75}, 10), ({"Loss_Epoch": 1}, 10), ({"Feats": ("hist", 5)}, 12)]


def test_cli_wandb_offline_writes_the_results_dashboard(tmp_path, fmnist_available, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = ["run", "--quiet", "--wandb", "--strategy", "lump_freeze", "--output", str(tmp_path / "w")]
    for item in TINY_SET + ["data.n_experiences=2", "freeze.tau=0", "freeze.max_frozen_share=0.3"]:
        args += ["--set", item]
    assert main(args) == 0
    results = json.loads((tmp_path / "w" / "results.json").read_text())
    runs = list((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    tables = runs[0] / "files" / "media" / "table"
    (ci,) = (tables / "acc_matrix").glob("knn_ci_*.table.json")
    data = json.loads(ci.read_text())["data"]
    expected = [[i] + [None if v is None else 100 * v for v in row] for i, row in enumerate(results["acc_matrix"]["knn_ci"])]
    assert data == expected
    (decisions,) = (tables / "freeze").glob("decisions_*.table.json")
    rows = json.loads(decisions.read_text())["data"]
    assert [(r[1], r[2], r[5]) for r in rows] == [(h["iteration"], h["frozen_blocks"], h["stopped_by"])
                                                  for h in results["freeze_history"]]
    assert {r[5] for r in rows} <= {"tau", "gate", "both", "cap", "end"}
