"""W&B logging: Avalanche's WandBLogger made to work with current wandb, and the results dashboard."""

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from avalanche_freeze.cli import main
from avalanche_freeze.run.wandb_logging import SSLWandBLogger, task_values

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
    # accuracies in percent, as the console and the reports print them; other scalars as they are
    assert logged == [({"Top1_KNN_CI_Acc_Exp/Exp000": 75.0}, 10), ({"Loss_Epoch": 1}, 10), ({"Feats": ("hist", 5)}, 12)]


def offline_records(path: Path):
    """The protobuf records of an offline run's ``.wandb`` file (W&B's log format: a 7-byte header, then
    32 KiB blocks of records, each with a 7-byte header: checksum, length, kind = full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunk, pending = chunk, b""
        elif kind in (2, 3):
            pending += chunk
            continue
        else:
            chunk, pending = pending + chunk, b""
        record = pb.Record()
        record.ParseFromString(chunk)
        yield record


def history_rows(path: Path):
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in offline_records(path) if r.WhichOneof("record_type") == "history"]


def test_task_curves_log_every_task_not_logged_yet_on_its_own_step():
    logged = []
    logger = SSLWandBLogger.__new__(SSLWandBLogger)
    logger.wandb = SimpleNamespace(log=lambda d, step: logged.append((d, step)))
    logger.step, logger.tasks_logged = 40, 0
    results = {"acc_matrix": {"knn_ci": [[0.9, None, None], [0.7, 0.8, None], [0.6, 0.7, 0.5]]},
               "efficiency": [{"BwdFLOPs_Exp": 4.0, "frozen_blocks": 0}, {"BwdFLOPs_Exp": 2.0, "frozen_blocks": 3},
                              {"BwdFLOPs_Exp": 1.0, "frozen_blocks": 5}]}
    logger.log_task(results, 1)  # a resumed run: task 0 was trained before the resume
    logger.log_task(results, 2)
    assert [(d["tasks_trained"], step) for d, step in logged] == [(1, 41), (2, 42), (3, 43)]
    assert [d["tasks/knn_ci/T0"] for d, _ in logged] == pytest.approx([90.0, 70.0, 60.0])
    assert logged[2][0]["tasks/knn_ci/avg_acc"] == pytest.approx(60.0)
    assert logged[2][0]["tasks/knn_ci/forgetting_max"] == pytest.approx((30 + 10) / 2)
    assert [d["tasks/total/BwdFLOPs_Exp"] for d, _ in logged] == [4.0, 6.0, 7.0]
    assert task_values(results, 0) == logged[0][0]


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
    (log,) = runs[0].glob("*.wandb")
    (run,) = [r.run for r in offline_records(log) if r.WhichOneof("record_type") == "run"]
    assert run.job_type == "lump_freeze" and run.display_name == "fmnist-simsiam-lump_freeze-s0"
    assert set(run.tags) == {"fmnist", "simsiam", "lump_freeze", "seed:0"}
    # per-task curves: one point per task on the tasks_trained axis, in percent
    rows = history_rows(log)
    points = [r for r in rows if "tasks_trained" in r]
    assert [r["tasks_trained"] for r in points] == [1, 2]
    matrix = results["acc_matrix"]["knn_ci"]
    assert [r["tasks/knn_ci/T0"] for r in points] == pytest.approx([100 * matrix[0][0], 100 * matrix[1][0]])
    assert points[1]["tasks/knn_ci/avg_acc"] == pytest.approx(100 * results["avg_acc"]["knn_ci"])
    assert points[1]["tasks/knn_ci/forgetting_max"] == pytest.approx(100 * results["forgetting_max"]["knn_ci"])
    assert [r["tasks/frozen_blocks"] for r in points] == [e["frozen_blocks"] for e in results["efficiency"]]
    stream_acc = [v for r in rows for k, v in r.items() if k.startswith("Top1_KNN_CI_Acc_Stream")]
    assert stream_acc and all(1.0 < v <= 100.0 for v in stream_acc)  # Avalanche's metrics in percent too
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
