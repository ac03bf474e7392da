"""Checkpoints: resume equals an uninterrupted run (after a real SIGKILL too), determinism, refusals."""

import json
import subprocess
import sys

import pytest

from avalanche_freeze.run.config import ExperimentConfig
from avalanche_freeze.run.experiment import ExperimentRun

from ..conftest import TINY_SET, run_cli, without_timing


@pytest.mark.parametrize("recipe", ["si", "der", "cassle", "ewc", "Replay", "EWC", "LwF", "DER"])
def test_baseline_state_survives_resume(tmp_path, fmnist_available, recipe):
    cfg = ExperimentConfig.from_sources(overrides=TINY_SET + [f"strategy={recipe}", "data.n_experiences=2"])
    full = ExperimentRun.build(cfg, tmp_path / "full", verbose=False).run()
    ExperimentRun.build(cfg, tmp_path / "resumed", verbose=False).run(stop_after=1)
    run = ExperimentRun.build(cfg, tmp_path / "resumed", verbose=False)
    run.restore()
    assert run.next_task == 1
    assert run.run()["acc_matrix"] == full["acc_matrix"]


@pytest.mark.parametrize("device_loop", [["augment.backend=batched"], ["train.data_on_device=true"]])
def test_the_device_bound_options_train_and_resume_identically(tmp_path, fmnist_available, device_loop):
    overrides = TINY_SET + ["strategy=lump", "data.n_experiences=2"]
    cfg = ExperimentConfig.from_sources(overrides=overrides + device_loop)
    full = ExperimentRun.build(cfg, tmp_path / "full", verbose=False).run()
    ExperimentRun.build(cfg, tmp_path / "resumed", verbose=False).run(stop_after=1)
    run = ExperimentRun.build(cfg, tmp_path / "resumed", verbose=False)
    run.restore()
    assert run.run()["acc_matrix"] == full["acc_matrix"]
    default = ExperimentRun.build(ExperimentConfig.from_sources(overrides=overrides), tmp_path / "default",
                                  verbose=False).run()
    assert default["acc_matrix"] != full["acc_matrix"]  # the option really changed the views or the order


def test_same_seed_runs_are_identical(tmp_path, fmnist_available):
    assert run_cli(tmp_path, "--strategy", "lump", name="a") == 0
    assert run_cli(tmp_path, "--strategy", "lump", name="b") == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["acc_matrix"] == b["acc_matrix"]


def test_kill_and_resume_matches_uninterrupted(tmp_path, fmnist_available):
    overrides = TINY_SET + ["strategy=lump_freeze", "freeze.tau=0.0", "freeze.max_frozen_share=0.3"]
    cfg = ExperimentConfig.from_sources(overrides=overrides)
    full = ExperimentRun.build(cfg, tmp_path / "full", verbose=False).run()
    # a separate process is killed (SIGKILL) right after task 2's checkpoint
    script = (
        "import os, signal\n"
        "from pathlib import Path\n"
        "from avalanche_freeze.run.config import ExperimentConfig\n"
        "from avalanche_freeze.run.experiment import ExperimentRun\n"
        f"cfg = ExperimentConfig.from_sources(overrides={overrides!r})\n"
        f"run = ExperimentRun.build(cfg, Path({str(tmp_path / 'resumed')!r}), verbose=False)\n"
        "run.run(stop_after=2)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not (tmp_path / "resumed" / "results.json").exists()
    run = ExperimentRun.build(cfg, tmp_path / "resumed", verbose=False)
    run.restore()
    assert run.next_task == 2
    # the plugin re-froze its prefix and the optimizer holds exactly the parameters it held when saved
    assert run.strategy.backbone.num_frozen_units == full["freeze_history"][0]["frozen_blocks"]
    optimized = {id(p) for g in run.strategy.optimizer.param_groups for p in g["params"]}
    assert not optimized & {id(p) for u in run.strategy.backbone.units[:2] for p in u.parameters()}
    resumed = run.run()
    assert resumed["acc_matrix"] == full["acc_matrix"]
    assert without_timing(resumed["freeze_history"]) == without_timing(full["freeze_history"])
    assert [e["BwdFLOPs_Iter"] for e in resumed["efficiency"]] == [e["BwdFLOPs_Iter"] for e in full["efficiency"]]


def test_resume_refuses_another_configuration(tmp_path, fmnist_available):
    from avalanche_freeze.run.checkpoint import CheckpointError

    cfg = ExperimentConfig.from_sources(overrides=TINY_SET + ["strategy=finetune", "data.n_experiences=2"])
    ExperimentRun.build(cfg, tmp_path / "r", verbose=False).run(stop_after=1)
    other = ExperimentConfig.from_sources(overrides=TINY_SET + ["strategy=finetune", "data.n_experiences=2",
                                                                "train.lr=0.01"])
    run = ExperimentRun.build(other, tmp_path / "r", verbose=False)
    with pytest.raises(CheckpointError, match=r"different configuration \(keys train.lr\)"):
        run.restore()


def test_corrupted_checkpoint_is_refused(tmp_path, fmnist_available, capsys):
    two = ["--strategy", "finetune", "--set", "data.n_experiences=2"]
    assert run_cli(tmp_path, *two, name="c") == 0
    ckpt = tmp_path / "c" / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    assert run_cli(tmp_path, *two, "--resume", name="c") == 1
    assert "is corrupt (SHA-256 mismatch)" in capsys.readouterr().err


def test_forced_nan_stops_the_run(tmp_path, fmnist_available, capsys):
    assert run_cli(tmp_path, "--set", "train.lr=1e30", "--set", "strategy=finetune", name="nan") == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "task 0" in err
    assert not (tmp_path / "nan").exists()  # the command line leaves nothing behind


def test_failed_run_says_why_in_its_log(tmp_path, fmnist_available):
    """A run that fails inside a grid keeps its folder: the last line of its log names the error."""
    from avalanche_freeze.health import TrainingHealthError

    cfg = ExperimentConfig.from_sources(overrides=TINY_SET + ["strategy=finetune", "train.lr=1e30"])
    with pytest.raises(TrainingHealthError):
        ExperimentRun.build(cfg, tmp_path / "r", verbose=False).run()
    last = (tmp_path / "r" / "log.txt").read_text().splitlines()[-1]
    assert last.startswith("run failed at task 0: TrainingHealthError: non-finite loss")
    from avalanche_freeze.run.experiment import logged_failure

    assert logged_failure(tmp_path / "r").startswith("TrainingHealthError: non-finite loss")
    assert logged_failure(tmp_path / "absent") is None
