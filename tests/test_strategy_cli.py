"""The strategy in an Avalanche script, the CLI end to end, resume, determinism and bad inputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy
from avalanche_freeze.cli import main
from avalanche_freeze.config import ConfigError, ExperimentConfig

from .conftest import TINY_SET


def test_strategy_with_avalanche_evaluation_plugin(tiny_bench):
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics, loss_metrics
    from avalanche.logging import InteractiveLogger
    from avalanche.training.plugins import EvaluationPlugin

    from avalanche_freeze.evaluation import probe_accuracy_metrics

    ev = EvaluationPlugin(*probe_accuracy_metrics(probes=("knn", "linear")), accuracy_metrics(experience=True),
                          forgetting_metrics(experience=True, stream=True), loss_metrics(epoch=True),
                          loggers=[InteractiveLogger()])
    s = SelfSupervisedStrategy(model=CifarResNet18(width=0.125, in_channels=1), augmentation=tiny_bench.augmentation,
                               ssl_options={"proj_dim": 32, "pred_dim": 8}, train_mb_size=32, evaluator=ev,
                               lr_schedule="cosine", train_epochs=2)
    bench = tiny_bench.benchmark
    for exp in bench.train_stream[:2]:
        s.train(exp)
        res = s.eval(bench.test_stream[: exp.current_experience + 1])
    assert "StreamForgetting/eval_phase/test_stream" in res
    for key in ("KNN_CI", "KNN_TI", "LINEAR_CI", "LINEAR_TI"):
        v = res[f"Top1_{key}_Acc_Exp/eval_phase/test_stream/Task000/Exp001"]
        assert 0.0 <= v <= 1.0
    # the primary probe (kNN, class-incremental) drives Avalanche's own accuracy metric
    assert res["Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001"] == res["Top1_KNN_CI_Acc_Exp/eval_phase/test_stream/Task000/Exp001"]
    # task-incremental on a 2-class task is far above chance after training
    assert res["Top1_KNN_TI_Acc_Exp/eval_phase/test_stream/Task000/Exp000"] > 0.6


def _run_cli(tmp_path, *extra, name="run"):
    args = ["run", "--quiet", "--output", str(tmp_path / name)]
    for item in TINY_SET:
        args += ["--set", item]
    return main(args + list(extra))


def test_cli_end_to_end_writes_results(tmp_path, fmnist_available, capsys):
    assert _run_cli(tmp_path, "--strategy", "lump_freeze", "--set", "freeze_tau=0.0", "--set", "freeze_max_share=0.3") == 0
    out = capsys.readouterr().out
    assert "accuracy matrix [knn_ci]" in out and "avg_acc" in out
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(r) >= {"config", "acc_matrix", "avg_acc", "forgetting", "bwt", "efficiency"}
    m = r["acc_matrix"]["knn_ci"]
    assert len(m) == 5 and all(len(row) == 5 for row in m)
    assert all(m[i][j] is not None for i in range(5) for j in range(i + 1))
    assert r["avg_acc"]["knn_ci"] == pytest.approx(sum(m[4]) / 5)
    assert r["freeze_history"][0]["frozen_blocks"] > 0
    eff = r["efficiency"]
    assert eff[-1]["BwdFLOPs_Iter"] < eff[0]["BwdFLOPs_Iter"]  # freezing removed backward work


RECIPES = sorted(path.stem for path in (Path(__file__).resolve().parent.parent / "strategies").glob("*.yaml"))


def test_every_registered_strategy_has_a_recipe_file():
    from avalanche_freeze.recipes import available_strategies

    assert sorted(available_strategies()) == RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_runs_two_experiences(tmp_path, fmnist_available, recipe):
    assert _run_cli(tmp_path, "--strategy", recipe, "--set", "n_experiences=2", name=recipe) == 0
    r = json.loads((tmp_path / recipe / "results.json").read_text())
    assert r["config"]["strategy"] == recipe
    assert len(r["acc_matrix"]["knn_ti"]) == 2 and None not in r["acc_matrix"]["knn_ti"][1]


@pytest.mark.parametrize("recipe", ["si", "der", "cassle", "ewc"])
def test_baseline_state_survives_resume(tmp_path, fmnist_available, recipe):
    from avalanche_freeze.experiment import ExperimentRun

    overrides = TINY_SET + [f"strategy={recipe}", "n_experiences=2"]
    cfg = ExperimentConfig.from_sources(overrides=overrides)
    full = ExperimentRun.build(cfg, tmp_path / "full", verbose=False).run()
    ExperimentRun.build(cfg, tmp_path / "resumed", verbose=False).run(stop_after=1)
    run = ExperimentRun.build(cfg, tmp_path / "resumed", verbose=False)
    run.restore()
    assert run.next_task == 1
    assert run.run()["acc_matrix"] == full["acc_matrix"]


def test_same_seed_runs_are_identical(tmp_path, fmnist_available):
    assert _run_cli(tmp_path, "--strategy", "lump", name="a") == 0
    assert _run_cli(tmp_path, "--strategy", "lump", name="b") == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["acc_matrix"] == b["acc_matrix"]


def test_kill_and_resume_matches_uninterrupted(tmp_path, fmnist_available):
    from avalanche_freeze.experiment import ExperimentRun

    overrides = TINY_SET + ["strategy=lump_freeze", "freeze_tau=0.0", "freeze_max_share=0.3", "n_experiences=5"]
    cfg = ExperimentConfig.from_sources(overrides=overrides)
    full = ExperimentRun.build(ExperimentConfig.from_sources(overrides=overrides), tmp_path / "full", verbose=False).run()
    # a separate process is killed (SIGKILL) right after task 2's checkpoint
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from avalanche_freeze.config import ExperimentConfig\n"
        "from avalanche_freeze.experiment import ExperimentRun\n"
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
    resumed = run.run()
    assert resumed["acc_matrix"] == full["acc_matrix"]
    assert resumed["freeze_history"] == full["freeze_history"]


def test_corrupted_checkpoint_is_refused(tmp_path, fmnist_available, capsys):
    assert _run_cli(tmp_path, "--strategy", "finetune", "--set", "n_experiences=5", name="c") == 0
    ckpt = tmp_path / "c" / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    assert _run_cli(tmp_path, "--strategy", "finetune", "--set", "n_experiences=5", "--resume", name="c") == 1
    assert "is corrupt (SHA-256 mismatch)" in capsys.readouterr().err


def test_forced_nan_stops_the_run(tmp_path, fmnist_available, capsys):
    assert _run_cli(tmp_path, "--set", "lr=1e30", "--set", "strategy=finetune", name="nan") == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "task 0" in err


BAD_CONFIGS = [
    (["ssl=moco"], "ssl='moco' is not accepted; accepted: simsiam"),
    (["strategy=ewc2"], "strategy='ewc2' is not accepted"),
    (["benchmark=mnist"], "benchmark='mnist' is not accepted"),
    (["epochs=0"], "epochs=0 is not accepted; accepted: an integer >= 1"),
    (["epochs=two"], "epochs='two' is not accepted; accepted: an integer"),
    (["batch_size=1"], "batch_size=1 is not accepted"),
    (["lr=-0.1"], "lr=-0.1 is not accepted; accepted: a number > 0"),
    (["lr=fast"], "lr='fast' is not accepted; accepted: a number"),
    (["width=0"], "width=0.0 is not accepted"),
    (["freeze_tau=1.5"], "freeze_tau=1.5 is not accepted; accepted: a number in [0, 1]"),
    (["freeze_measure=mi"], "freeze_measure='mi' is not accepted; accepted: subspace, cka"),
    (["freeze_granularity=layer"], "freeze_granularity='layer' is not accepted; accepted: block, stage"),
    (["probes=knn,svm"], "probes=['knn', 'svm'] is not accepted"),
    (["device=tpu"], "device='tpu' is not accepted; accepted: cpu, cuda, cuda:N"),
    (["unknown_key=1"], "--set: unknown key 'unknown_key'"),
    (["epochs"], "--set 'epochs' is not of the form key=value"),
    (["shuffle_classes=maybe"], "shuffle_classes='maybe' is not accepted; accepted: true or false"),
    (["data_root=/nonexistent/dir"], "data_root='/nonexistent/dir' is not an existing directory"),
    (["max_train_per_task=0"], "max_train_per_task=0 is not accepted"),
    (["on_nan=ignore"], "on_nan='ignore' is not accepted; accepted: stop, warn"),
    (["lump_mem_size=-1"], "lump_mem_size=-1 is not accepted"),
    (["lr_schedule=step"], "lr_schedule='step' is not accepted; accepted: none, cosine"),
    (["si_xi=0"], "si_xi=0.0 is not accepted; accepted: a number > 0"),
    (["der_alpha=-0.5"], "der_alpha=-0.5 is not accepted; accepted: a number >= 0"),
    (["cassle_lambda=strong"], "cassle_lambda='strong' is not accepted; accepted: a number"),
]


@pytest.mark.parametrize("overrides,message", BAD_CONFIGS)
def test_bad_config_values(overrides, message):
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_sources(overrides=overrides)
    assert message in str(info.value)


def test_bad_config_files(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        ExperimentConfig.from_sources(files=[bad_yaml])
    listing = tmp_path / "list.yaml"
    listing.write_text("- epochs\n")
    with pytest.raises(ConfigError, match="must contain a mapping"):
        ExperimentConfig.from_sources(files=[listing])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        ExperimentConfig.from_sources(files=[unknown])
    with pytest.raises(ConfigError, match="does not exist"):
        ExperimentConfig.from_sources(files=[tmp_path / "missing.yaml"])


def test_bad_dataset_layouts(tmp_path):
    from avalanche_freeze.benchmarks import DatasetError, make_benchmark

    with pytest.raises(DatasetError, match="cifar-10-batches-py/data_batch_1; expected layout"):
        make_benchmark("cifar10", data_root=str(tmp_path))
    with pytest.raises(DatasetError, match="needs data_root"):
        make_benchmark("cifar100")
    with pytest.raises(DatasetError, match="tiny-imagenet-200/wnids.txt"):
        make_benchmark("tinyimagenet", data_root=str(tmp_path))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_1 is corrupt"):
        make_benchmark("cifar10", data_root=str(tmp_path))
    fm = tmp_path / "fm"
    fm.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (fm / stem).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")  # claims 5 items, has 2
    with pytest.raises(DatasetError, match="is truncated or corrupt"):
        make_benchmark("fmnist", data_root=str(fm))
    with pytest.raises(ValueError, match="unknown benchmark 'svhn'; accepted: fmnist"):
        make_benchmark("svhn")
    with pytest.raises(ValueError, match="n_experiences=3 must be >= 1 and divide"):
        make_benchmark("fmnist", n_experiences=3)


def test_missing_fmnist_everywhere_names_all_three_places(tmp_path, monkeypatch):
    import avalanche_freeze.benchmarks as b

    monkeypatch.setattr(b, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(b.DatasetError) as info:
        b.make_benchmark("fmnist", data_root=str(tmp_path), download=False)
    msg = str(info.value)
    assert str(tmp_path) in msg and "nowhere" in msg and "torchvision download" in msg


def test_cli_never_clobbers_a_checkpoint_silently(tmp_path, fmnist_available, capsys):
    assert _run_cli(tmp_path, "--strategy", "finetune", "--set", "n_experiences=2", name="c") == 0
    assert _run_cli(tmp_path, "--strategy", "finetune", "--set", "n_experiences=2", name="c") == 2
    assert "already holds a run's checkpoint; pass --resume" in capsys.readouterr().err
    assert _run_cli(tmp_path, "--strategy", "finetune", "--set", "n_experiences=2", "--resume", "--overwrite", name="c") == 2
    assert "exclude each other" in capsys.readouterr().err
    # resuming a finished run only reprints its table; --overwrite starts over
    assert _run_cli(tmp_path, "--strategy", "finetune", "--set", "n_experiences=2", "--resume", name="c") == 0
    assert "accuracy matrix [knn_ci]" in capsys.readouterr().out
    assert _run_cli(tmp_path, "--strategy", "finetune", "--set", "n_experiences=2", "--overwrite", name="c") == 0


def test_cli_reports_bad_set_key(capsys):
    assert main(["run", "--set", "epochz=3"]) == 2
    assert "unknown key 'epochz'" in capsys.readouterr().err


def test_console_script_entry_point_lists():
    out = subprocess.run([sys.executable, "-m", "avalanche_freeze.cli", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "lump_freeze" in out.stdout and "simsiam" in out.stdout


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "experiments" / "configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_experiment_configs_are_valid(path):
    cfg = ExperimentConfig.from_sources(files=[path])
    assert path.stem.startswith(cfg.benchmark)
