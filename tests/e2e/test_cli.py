"""The command line end to end on the embedded benchmark: results, recipes, registered methods, refusals."""

import json
import signal
import subprocess
import sys
import time

import pytest

import torch

from avalanche_freeze import CifarResNet18, load_backbone
from avalanche_freeze.cli import main
from avalanche_freeze.run.checkpoint import load_checkpoint
from avalanche_freeze.run.recipes import available_strategies

from ..conftest import REPO, TINY_SET, run_cli


def test_cli_end_to_end_writes_results(tmp_path, fmnist_available, capsys):
    assert run_cli(tmp_path, "--strategy", "lump_freeze", "--set", "freeze.tau=0.0",
                   "--set", "freeze.max_frozen_share=0.3") == 0
    out = capsys.readouterr().out
    assert "accuracy matrix [knn_ci]" in out and "avg_acc" in out
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(r) >= {"config", "acc_matrix", "avg_acc", "forgetting_max", "forgetting_last", "forgetting_avalanche", "bwt", "efficiency"}
    assert r["config"]["freeze"]["max_frozen_share"] == 0.3 and r["config"]["strategy"] == "lump_freeze"
    m = r["acc_matrix"]["knn_ci"]
    assert len(m) == 5 and all(len(row) == 5 for row in m)
    assert all(m[i][j] is not None for i in range(5) for j in range(i + 1))
    assert all(m[i][j] is None for i in range(5) for j in range(i + 1, 5))
    assert r["avg_acc"]["knn_ci"] == pytest.approx(sum(m[4]) / 5)
    assert r["freeze_history"][0]["frozen_blocks"] > 0
    eff = r["efficiency"]
    assert eff[-1]["BwdFLOPs_Iter"] < eff[0]["BwdFLOPs_Iter"]  # freezing removed backward work


@pytest.mark.parametrize("recipe", available_strategies())
def test_every_recipe_runs_two_experiences(tmp_path, fmnist_available, recipe):
    assert run_cli(tmp_path, "--strategy", recipe, "--set", "data.n_experiences=2", name=recipe) == 0
    r = json.loads((tmp_path / recipe / "results.json").read_text())
    assert r["config"]["strategy"] == recipe
    assert len(r["acc_matrix"]["knn_ti"]) == 2 and None not in r["acc_matrix"]["knn_ti"][1]


def test_a_registered_ssl_method_runs_from_the_cli_by_name(tmp_path, fmnist_available):
    from avalanche_freeze.ssl import BarlowTwins, register_ssl_method

    def narrow_barlow(*, feature_dim, backbone=None, proj_dim, pred_dim, lambda_offdiag=5e-3):
        return BarlowTwins(feature_dim=feature_dim, proj_dim=proj_dim // 2, lambda_offdiag=lambda_offdiag)

    register_ssl_method("narrow_barlow", narrow_barlow)
    assert run_cli(tmp_path, "--strategy", "lump", "--set", "data.n_experiences=2", "--set", "ssl.name=narrow_barlow",
                   "--set", "ssl.options={lambda_offdiag: 0.01}") == 0
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["config"]["ssl"] == {"name": "narrow_barlow", "proj_dim": 32, "pred_dim": 8,
                                  "options": {"lambda_offdiag": 0.01}}


def test_cli_never_clobbers_a_checkpoint_silently(tmp_path, fmnist_available, capsys):
    two = ["--strategy", "finetune", "--set", "data.n_experiences=2"]
    assert run_cli(tmp_path, *two, name="c") == 0
    assert run_cli(tmp_path, *two, name="c") == 2
    assert "already holds a run's checkpoint; pass --resume" in capsys.readouterr().err
    assert run_cli(tmp_path, *two, "--resume", "--overwrite", name="c") == 2
    assert "exclude each other" in capsys.readouterr().err
    # resuming a finished run only reprints its table; --overwrite starts over
    assert run_cli(tmp_path, *two, "--resume", name="c") == 0
    assert "accuracy matrix [knn_ci]" in capsys.readouterr().out
    assert run_cli(tmp_path, *two, "--overwrite", name="c") == 0


def test_cli_reports_bad_set_key_and_value(capsys):
    assert main(["run", "--set", "train.epochz=3"]) == 2
    assert "unknown key 'train.epochz'" in capsys.readouterr().err
    assert main(["run", "--set", "lump.alpha=-1"]) == 2
    assert "lump.alpha=-1.0 is not accepted; accepted: a finite number > 0" in capsys.readouterr().err


def test_console_script_lists_strategies_methods_and_keys():
    out = subprocess.run([sys.executable, "-m", "avalanche_freeze.cli", "list"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "lump_freeze" in out.stdout and "simsiam" in out.stdout and "lump.mem_size (256)" in out.stdout


def test_positional_overrides_and_environment_variables_in_the_output(tmp_path, fmnist_available, monkeypatch):
    monkeypatch.setenv("SWEEP_RUN", "abc123")
    args = ["run", "--quiet", "--strategy", "lump", "--output", str(tmp_path / "sweep" / "$SWEEP_RUN")]
    assert main(args + TINY_SET + ["data.n_experiences=2", "lump.alpha=0.3"]) == 0
    r = json.loads((tmp_path / "sweep" / "abc123" / "results.json").read_text())
    assert r["config"]["lump"]["alpha"] == 0.3 and r["config"]["data"]["n_experiences"] == 2
    monkeypatch.delenv("SWEEP_RUN")
    assert main(args) == 2  # an unset variable is an error, not a folder named "$SWEEP_RUN"
    assert main(["run", "--quiet", "--output", str(tmp_path / "x"), "train.epochs"]) == 2


def test_the_sweep_file_runs_the_cli_with_accepted_values():
    import yaml

    from avalanche_freeze.cli import _parser
    from avalanche_freeze.run.config import ExperimentConfig

    sweep = yaml.safe_load((REPO / "experiments/sweeps/freeze.yaml").read_text())
    command = [c for c in sweep["command"] if not c.startswith("${")]
    assert command[0] == sweep["program"] == "avalanche-freeze"
    args = _parser().parse_args(command[1:] + [f"{k}={v['values'][0]}" for k, v in sweep["parameters"].items()])
    assert args.command == "run" and args.wandb and str(args.output).endswith("$WANDB_RUN_ID")
    files = [REPO / p for p in args.config]
    for key, spec in sweep["parameters"].items():
        for value in spec["values"]:
            cfg = ExperimentConfig.from_sources(files=files, overrides=args.overrides + [f"{key}={value}",
                                                                                          "strategy=lump_freeze"])
            assert cfg.data.eval_split == "validation"


def test_a_stream_with_a_transformed_task_records_the_transforms_and_what_stopped_each_prefix(tmp_path,
                                                                                                fmnist_available):
    assert run_cli(tmp_path, "--strategy", "lump_freeze", "--set", "data.n_experiences=2",
                   "--set", "data.task_transforms=[none,permute]", "--set", "freeze.tau=0.0") == 0
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["config"]["data"]["task_transforms"] == ["none", "permute"]
    per_task = [(e["task"], e["frozen_blocks"], e["freeze_stopped_by"]) for e in r["efficiency"]]
    decided = [h for h in r["freeze_history"] if h["experience"] == 1]
    assert per_task[0] == (0, 0, None) and decided  # task 1 may not freeze; task 2 decides (first_task=2)
    assert per_task[1] == (1, decided[-1]["frozen_blocks"], decided[-1]["stopped_by"])
    assert main(["run", "--output", str(tmp_path / "bad"), "--set", "data.n_experiences=2",
                 "--set", "data.task_transforms=[none,swirl]"]) == 2


def test_export_writes_a_backbone_plain_torch_loads_with_the_run_s_features(tmp_path, fmnist_available, capsys):
    assert run_cli(tmp_path, "--strategy", "lump_freeze", "--set", "data.n_experiences=2") == 0
    run = tmp_path / "run"
    assert main(["export", str(run), "--output", str(tmp_path / "out" / "backbone.pt")]) == 0
    assert "backbone written to" in capsys.readouterr().out
    path = tmp_path / "out" / "backbone.pt"
    state = torch.load(path, weights_only=True)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["tasks_trained"] == 2 and meta["config"]["strategy"] == "lump_freeze"
    assert set(meta["final_accuracy"]) >= {"knn_ci", "knn_ti"}
    # the run's own backbone, straight from its checkpoint
    model = load_checkpoint(run)["strategy"]["model"]
    reference = CifarResNet18(width=meta["width"], in_channels=1)
    reference.load_state_dict({k[len("backbone."):]: v for k, v in model.items() if k.startswith("backbone.")})
    reference.set_frozen_prefix(0)
    assert state.keys() == {k for k in reference.state_dict() if k != "frozen_units"}
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(load_backbone(path)(x), reference.eval()(x))
    assert main(["export", str(run), "--format", "torchvision"]) == 0  # default output: RUN_DIR/backbone.pt
    assert "layer1.0.conv1.weight" in torch.load(run / "backbone.pt", weights_only=True)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "missing")]) == 1
    assert "holds no run checkpoint" in capsys.readouterr().err


def test_importing_the_package_and_its_launcher_is_light():
    code = ("import sys, avalanche_freeze, avalanche_freeze.launcher; "
            "print(sorted(m for m in ('torch', 'avalanche', 'avalanche_freeze.cli') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # the heavy imports wait for the first use of a name


@pytest.mark.parametrize("delay", [0.6, 1.0, 1.6])  # torch and Avalanche take several seconds to import
def test_ctrl_c_while_starting_prints_one_line_and_exits_130(delay):
    # SIGINT as a terminal delivers it (a test run in the background inherits an ignored SIGINT).
    # Exit status 130, not death by the signal (-2): finalising the half-imported modules did that
    # in a few tries of a hundred under load, before the launcher left with os._exit.
    proc = subprocess.Popen([sys.executable, "-m", "avalanche_freeze", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted while starting; nothing was run" in err
