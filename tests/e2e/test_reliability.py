"""A careless or hostile user: bad values, files and folders refused up front with one line; kills at
every step of a checkpoint write, SIGTERM and SIGINT during a task; one run per output directory."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from avalanche_freeze.run.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from avalanche_freeze.cli import main
from avalanche_freeze.run.output_lock import LOCK_NAME

from ..conftest import TINY_SET, without_timing, write_fmnist


def run_cli(output, *extra):
    args = ["run", "--quiet", "--output", str(output)]
    for item in TINY_SET:
        args += ["--set", item]
    return main(args + list(extra))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# (arguments after the tiny settings, files to make first, exit code, text the message must hold)
def _bad_inputs(tmp):
    (tmp / "a_file").write_text("x")
    (tmp / "latin1.yaml").write_bytes(b"train:\n  epochs: 2 # caf\xe9\n")
    (tmp / "dup.yaml").write_text("lump:\n  mem_size: 4\n  mem_size: 8\n")
    (tmp / "list_key.yaml").write_text("? [a, b]\n: 1\n")
    (tmp / "empty_root").mkdir()
    write_fmnist(tmp / "three_files", labels=list(range(10)) * 2, skip="train-labels-idx1-ubyte")
    write_fmnist(tmp / "one_of_class_3", labels=[c for c in range(10) for _ in range(1 if c == 3 else 4)])
    return [
        (["--set", "train.lr=nan"], 2, "train.lr=nan is not accepted; accepted: a finite number > 0"),
        (["--set", "train.weight_decay=nan"], 2, "train.weight_decay=nan is not accepted"),
        (["--set", "lump.alpha=inf"], 2, "lump.alpha=inf is not accepted"),
        (["--set", "si.c=nan"], 2, "si.c=nan is not accepted"),
        (["--set", "eval.knn_temperature=nan"], 2, "eval.knn_temperature=nan is not accepted"),
        (["--set", "health.collapse_std=nan"], 2, "health.collapse_std=nan is not accepted"),
        (["--set", "model.width=inf"], 2, "model.width=inf is not accepted"),
        (["--set", "model.width=nan"], 2, "model.width=nan is not accepted"),
        (["--set", "model.width=1000"], 2, "model.width=1000.0 is not accepted; accepted: a finite number >= 0.015625 and <= 16"),
        (["--set", "model.width=1e-30"], 2, "model.width=1e-30 is not accepted; accepted: a finite number >= 0.015625"),
        (["--strategy", "lump", "--set", "lump.mem_size=0"], 2,
         "lump.mem_size=0 is not accepted; accepted: at least 1 with --strategy lump (an empty buffer trains as"),
        (["--strategy", "der", "--set", "der.mem_size=0"], 2, "der.mem_size=0 is not accepted; accepted: at least 1"),
        (["--strategy", "lump_freeze", "--set", "freeze.schedule=[[1,0,99]]"], 2,
         "freeze.schedule=[[1, 0, 99]] is not accepted; accepted: [task, iteration, blocks] entries with blocks <= 9"),
        (["--set", "data.root=''"], 2, "data.root='' is not accepted; accepted: an existing directory or null"),
        (["--set", "data.root=' '"], 2, "data.root=' ' is not accepted; accepted: an existing directory or null"),
        (["--output", str(Path.cwd())], 2, "--output must name a directory for this run (not the current directory)"),
        (["--set", "seed=4294967296"], 2, "seed=4294967296 is not accepted; accepted: an integer >= 0 and <= 4294967295"),
        (["--set", "eval.probes=knn,knn"], 2, "eval.probes=['knn', 'knn'] is not accepted"),
        (["--set", "freeze.energy=0"], 2, "freeze.energy=0.0 is not accepted; accepted: a finite number > 0 and <= 1"),
        (["--set", "freeze.n_samples=1"], 2, "freeze.n_samples=1 is not accepted; accepted: an integer >= 2"),
        (["--strategy", "lump_freeze", "--set", "freeze.measure=cka", "--set", "freeze.decide_every=0",
          "--set", "train.epochs=1"], 2,
         "freeze.warmup_epochs=1 is not accepted; accepted: fewer than train.epochs=1"),
        (["--strategy", "lump", "--set", "strategy=der"], 2, "--strategy lump and --set strategy=der disagree"),
        (["--config", str(tmp / "latin1.yaml")], 2, "latin1.yaml' is not UTF-8 text"),
        (["--config", str(tmp / "dup.yaml")], 2, "duplicate key 'mem_size'"),
        (["--config", str(tmp)], 2, "is a directory; pass a YAML file"),
        (["--output", str(tmp / "a_file")], 2, "a_file is a file, not a directory"),
        (["--output", str(tmp / "a_file" / "run")], 2, "a_file is a file, not a directory"),
        (["--output", ""], 2, "--output must name a directory for this run"),
        (["--output", str(tmp / "never"), "--resume"], 2, "never holds no checkpoint"),
        (["--set", f"data.root={tmp / 'empty_root'}"], 1,
         "empty_root' (missing there: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]"),
        (["--set", f"data.root={tmp / 'three_files'}"], 1, "(missing there: train-labels-idx1-ubyte[.gz])"),
        (["--set", f"data.root={tmp / 'one_of_class_3'}", "--set", "train.batch_size=2"], 1,
         "has 1 image(s) of class 3; every class needs two at least"),
        (["--set", "ssl.proj_dim=300000"], 1, "ssl.proj_dim=300000 give a model of 90"),  # ~1.3 TiB of heads
        (["--set", "train.batch_size=500"], 2,
         "train.batch_size=500 is not accepted; accepted: at most 128 (the training images of the smallest task"),
        (["--set", "data.max_train_per_task=1"], 2, "data.max_train_per_task=1 is not accepted; accepted: null or at least 4"),
        (["--config", str(tmp / "list_key.yaml")], 2, "a mapping key must be a name or a number; got a list"),
        (["--set", "ssl.name=simclr", "--set", "ssl.options={temperature: abc}"], 2,
         "ssl.options.temperature='abc' is not accepted; accepted: a finite number (default 0.5)"),
        (["--set", "ssl.name=simclr", "--set", "ssl.options={temperature: .nan}"], 2,
         "ssl.options.temperature=nan is not accepted"),
        (["--set", "ssl.name=simclr", "--set", "ssl.options={temperature: 0.5, temperature: 0.2}"], 2,
         "duplicate key 'temperature'"),
        (["--set", "data.n_experiences=3"], 2,
         "data.n_experiences=3 is not accepted; accepted: a divisor of the 10 classes of 'fmnist' or null"),
    ]


def test_bad_inputs_get_one_line_naming_the_key_value_or_path(tmp_path, fmnist_available, capsys):
    rows = _bad_inputs(tmp_path)
    for extra, code, message in rows:
        extra = list(extra)
        output = tmp_path / "out"
        if "--output" in extra:
            i = extra.index("--output")
            output = extra[i + 1]
            del extra[i: i + 2]
        assert run_cli(output, *extra) == code, (extra, capsys.readouterr().err)
        err = capsys.readouterr().err
        assert message in err, (extra, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err  # one line, no traceback
    assert not (tmp_path / "never").exists()  # a refused --resume creates nothing
    assert not (tmp_path / "out").exists()  # a run that failed saved nothing and leaves nothing behind
    assert not list((tmp_path / "empty_root").iterdir())  # nor does a failed download attempt


def test_model_too_large_for_memory_is_refused(tmp_path, fmnist_available, capsys, monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": 2**30})())
    assert run_cli(tmp_path / "big", "--set", "model.width=4") == 1
    assert "model.width=4.0 and ssl.proj_dim=32 give a model of 179M parameters (backbone 179M" in capsys.readouterr().err


def test_malformed_checkpoints_are_refused_with_a_reason(tmp_path, fmnist_available, capsys):
    out = tmp_path / "run"
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2") == 0
    state = load_checkpoint(out)
    del state["strategy"]["optimizer_params"]
    save_checkpoint(state, out)
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2", "--resume") == 1
    assert "strategy state is incomplete: it lacks optimizer_params" in capsys.readouterr().err
    del state["rng"]
    save_checkpoint(state, out)
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2", "--resume") == 1
    assert "is incomplete: it lacks rng" in capsys.readouterr().err
    torch.save(state, out / CHECKPOINT_NAME)  # 0.1's format: no header
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2", "--resume") == 1
    assert "is not a checkpoint of this version" in capsys.readouterr().err
    magic = b"avalanche-freeze checkpoint\n"
    (out / CHECKPOINT_NAME).write_bytes(magic + b"format 3\n")  # the header, then nothing
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2", "--resume") == 1
    assert "is truncated after its header" in capsys.readouterr().err
    (out / CHECKPOINT_NAME).write_bytes(magic + b"format 2\nsha256 00\n")  # 0.2's format
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2", "--resume") == 1
    assert "is in 'format 2' (written by avalanche-freeze 0.2" in capsys.readouterr().err


class _RunsCode:
    """Unpickling this creates the file ``marker``: the stand-in for any code a crafted checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, fmnist_available, capsys):
    out = tmp_path / "run"
    assert run_cli(out, "--strategy", "lump", "--set", "data.n_experiences=2") == 0
    state = load_checkpoint(out)  # a real checkpoint of this run, with valid header and digest ...
    marker = tmp_path / "code-ran"
    state["strategy"]["plugins"]["lump"] = _RunsCode(marker)  # ... carrying a payload that runs code
    save_checkpoint(state, out)
    assert not marker.exists()
    assert run_cli(out, "--strategy", "lump", "--set", "data.n_experiences=2", "--resume") == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    assert f"checkpoint {out / CHECKPOINT_NAME} holds more than tensors and plain values" in err
    assert "nothing in it was run" in err and "open" in err  # the refused global is named


def test_checkpoints_of_every_kind_of_strategy_load_as_weights_only(tmp_path, fmnist_available):
    """Every recipe's checkpoint (LUMP + freezing, the baselines' states, Avalanche's stock buffers,
    importances and previous models) is tensors and plain values: plain ``torch.load(weights_only=True)``
    reads the payload."""
    import io

    for recipe in ("lump_freeze", "der", "Replay", "EWC", "LwF", "DER"):
        out = tmp_path / recipe
        assert run_cli(out, "--strategy", recipe, "--set", "data.n_experiences=2") == 0
        payload = (out / CHECKPOINT_NAME).read_bytes().split(b"\n", 3)[3]
        state = torch.load(io.BytesIO(payload), weights_only=True)
        assert state["next_task"] == 2, recipe


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import avalanche_freeze.run.checkpoint as ckpt
    from avalanche_freeze.cli import main

    op, nth_save, signum = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    saves = {"n": 0}
    real_save, real_os = ckpt.save_checkpoint, ckpt.os

    class KillingOS:  # the os module, but the signal just before the chosen operation of the chosen save
        def __getattr__(self, name):
            attr = getattr(real_os, name)
            if saves["n"] == nth_save and name == op.split(":")[0]:
                calls = saves.setdefault(name, 0) + 1
                saves[name] = calls
                if calls == int(op.split(":")[1]):
                    os.kill(os.getpid(), signum)
            return attr

    def counting_save(state, directory):
        saves["n"] += 1
        return real_save(state, directory)

    ckpt.os = KillingOS()
    ckpt.save_checkpoint = counting_save
    import avalanche_freeze.run.experiment as experiment
    experiment.save_checkpoint = counting_save
    sys.exit(main(sys.argv[4:]))
""")


_KILL_RUN = ["run", "--quiet", "--strategy", "lump_freeze",
             *[a for item in TINY_SET + ["freeze.tau=0", "freeze.max_frozen_share=0.3"] for a in ("--set", item)]]


@pytest.fixture(scope="module")
def uninterrupted_kill_run(tmp_path_factory, fmnist_available):
    """The results of the killed runs' configuration, uninterrupted (computed once for every kill point)."""
    out = tmp_path_factory.mktemp("full")
    assert main(_KILL_RUN + ["--output", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("kill_at", ["fsync:1", "replace:1", "fsync:2"],
                         ids=["data-written-not-synced", "synced-not-renamed", "renamed-folder-not-synced"])
def test_a_kill_at_any_step_of_a_checkpoint_write_resumes_exactly(tmp_path, uninterrupted_kill_run, kill_at):
    base = _KILL_RUN
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, kill_at, "2", str(int(signal.SIGKILL)), *base,
                           "--output", str(tmp_path / "k")], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (tmp_path / "k" / "results.json").exists()
    assert main(base + ["--output", str(tmp_path / "k"), "--resume"]) == 0
    full = uninterrupted_kill_run
    resumed = json.loads((tmp_path / "k" / "results.json").read_text())
    for key in ("acc_matrix", "avg_acc", "forgetting_max", "forgetting_last"):
        assert resumed[key] == full[key], key
    assert without_timing(resumed["freeze_history"]) == without_timing(full["freeze_history"])
    assert [e["BwdFLOPs_Iter"] for e in resumed["efficiency"]] == [e["BwdFLOPs_Iter"] for e in full["efficiency"]]


@pytest.mark.parametrize("signum", [signal.SIGTERM], ids=["SIGTERM"])  # SIGINT takes the same handler
def test_a_signal_during_the_first_checkpoint_write_keeps_the_task(tmp_path, fmnist_available, signum):
    """The signal arrives after the first checkpoint's data is written, before it is synced and renamed:
    the write completes, the message says task 0 is checkpointed, and --resume continues exactly."""
    settings = [a for item in TINY_SET + ["data.n_experiences=2"] for a in ("--set", item)]
    base = ["run", "--quiet", "--strategy", "lump", *settings]
    assert main(base + ["--output", str(tmp_path / "full")]) == 0
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, "fsync:1", "1", str(int(signum)), *base,
                           "--output", str(tmp_path / "s")], capture_output=True, text=True)
    assert proc.returncode == 128 + signum, proc.stderr[-2000:]
    assert f"interrupted by {signal.Signals(signum).name} during task 1: tasks 0-0 are checkpointed" in proc.stderr
    assert (tmp_path / "s" / CHECKPOINT_NAME).is_file() and not list((tmp_path / "s").glob("*.tmp"))
    assert main(base + ["--output", str(tmp_path / "s"), "--resume"]) == 0
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    resumed = json.loads((tmp_path / "s" / "results.json").read_text())
    assert resumed["acc_matrix"] == full["acc_matrix"]


_SIGNAL_SCRIPT = textwrap.dedent("""
    import os, sys
    from avalanche_freeze.cli import main
    from avalanche_freeze.strategy import SelfSupervisedStrategy

    signum = int(sys.argv[1])
    real_epoch = SelfSupervisedStrategy.training_epoch

    def epoch(self, **kwargs):  # the signal arrives in the middle of task 1
        if self.experience.current_experience == 1:
            os.kill(os.getpid(), signum)
        return real_epoch(self, **kwargs)

    SelfSupervisedStrategy.training_epoch = epoch
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_cleanly_and_resume_exactly(tmp_path, fmnist_available, signum):
    settings = [a for item in TINY_SET + ["data.n_experiences=2"] for a in ("--set", item)]
    base = ["run", "--quiet", "--strategy", "lump", *settings]
    assert main(base + ["--output", str(tmp_path / "full")]) == 0
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_SCRIPT, str(int(signum)), *base,
                           "--output", str(tmp_path / "s")], capture_output=True, text=True)
    assert proc.returncode == 128 + signum, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"interrupted by {signal.Signals(signum).name} during task 1: tasks 0-0 are checkpointed" in proc.stderr
    assert "--resume" in proc.stderr
    assert not (tmp_path / "s" / LOCK_NAME).exists()  # the lock was released
    assert main(base + ["--output", str(tmp_path / "s"), "--resume"]) == 0
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    resumed = json.loads((tmp_path / "s" / "results.json").read_text())
    assert resumed["acc_matrix"] == full["acc_matrix"]


def test_a_locked_output_is_refused_and_a_stale_lock_taken_over(tmp_path, fmnist_available, capsys):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-11-26T03:00:00+00:00"}
        (out / LOCK_NAME).write_text(json.dumps(lock))
        assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2") == 1
        err = capsys.readouterr().err
        assert f"is in use by another run (pid {holder.pid} on {socket.gethostname()}, started 2026-11-26" in err
        assert not (out / "results.json").exists()
    finally:
        holder.kill()
        holder.wait()
    (out / LOCK_NAME).write_text(json.dumps({**lock, "pid": _dead_pid()}))  # its process is gone
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2") == 0
    assert (out / "results.json").is_file() and not (out / LOCK_NAME).exists()


def test_overwrite_removes_the_previous_results_first_and_resume_accepts_logging_options(tmp_path, fmnist_available,
                                                                                          monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    two = ["--strategy", "finetune", "--set", "data.n_experiences=2"]
    assert run_cli(out, *two) == 0
    assert run_cli(out, *two, "--set", "eval.mb_size=64", "--wandb", "--resume") == 0  # neutral keys may differ
    assert list((out / "wandb").glob("offline-run-*"))
    (change,) = json.loads((out / "results.json").read_text())["resumed_with_changes"]  # ... and are recorded
    assert change["from_task"] == 2 and change["changed"]["eval.mb_size"] == [256, 64]
    with open(out / "log.txt", "a") as log:
        log.write("SENTINEL of the run before --overwrite\n")
    assert run_cli(out, *two, "--set", "train.lr=0.01", "--wandb", "--resume") == 1  # a refused resume ...
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1  # ... leaves no empty W&B run
    stale = json.loads((out / "results.json").read_text())
    assert run_cli(out, *two, "--set", "health.collapse_std=1e-3", "--overwrite") == 0
    fresh = json.loads((out / "results.json").read_text())
    assert fresh["config"]["health"]["collapse_std"] == 1e-3 != stale["config"]["health"]["collapse_std"]
    assert "SENTINEL" not in (out / "log.txt").read_text()  # --overwrite starts a new log
    assert "resumed_with_changes" not in fresh


def test_nan_weights_stop_the_run_before_evaluation(tiny_bench):
    from avalanche_freeze.health import TrainingHealthError, TrainingHealthPlugin

    from ..conftest import make_strategy

    class Poison:  # a last step that leaves a NaN weight
        def after_training_epoch(self, strategy, **kw):
            with torch.no_grad():
                strategy.backbone.units[3].conv1.weight[0, 0, 0, 0] = float("nan")

    s = make_strategy(tiny_bench, [Poison(), TrainingHealthPlugin()])
    with pytest.raises(TrainingHealthError, match=r"non-finite weights after task 0 .* backbone.units.3.conv1.weight"):
        s.train(tiny_bench.benchmark.train_stream[0])


def test_log_is_written_line_by_line(tmp_path, fmnist_available):
    out = tmp_path / "run"
    assert run_cli(out, "--strategy", "finetune", "--set", "data.n_experiences=2") == 0
    text = (out / "log.txt").read_text()
    assert "Top1_KNN_CI_Acc_Exp" in text


def test_wandb_unreachable_falls_back_to_offline(tmp_path, monkeypatch, capsys):
    from avalanche_freeze.run.config import ExperimentConfig
    from avalanche_freeze.run.wandb_logging import make_wandb_logger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    wandb.teardown()  # forget settings earlier tests of this process gave wandb (offline mode)
    cfg = ExperimentConfig.from_sources(overrides=["wandb.enabled=true", "wandb.init_timeout=3"])
    try:
        logger = make_wandb_logger(cfg, tmp_path)
        logger.finish()
    finally:
        wandb.teardown()  # wandb keeps the (unreachable) server in process-wide settings otherwise
    assert "W&B could not be reached" in capsys.readouterr().err
    assert os.environ["WANDB_MODE"] == "offline"
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_the_memory_check_counts_the_ssl_heads_and_lump_s_buffer(monkeypatch):
    """Free memory set between what the model needs and what model + LUMP buffer need: finetune passes,
    LUMP with a large buffer is refused (and a large projector counts as much as a large backbone)."""
    import psutil

    from avalanche_freeze.run.config import ExperimentConfig
    from avalanche_freeze.run.experiment import _check_memory

    cfg = lambda *o: ExperimentConfig.from_sources(overrides=["model.width=0.125", *o])  # noqa: E731
    model_bytes = 4 * 4 * 2_000_000  # above the width-0.125 model with SimSiam's default heads (about 1M parameters)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": model_bytes})())
    _check_memory(cfg("strategy=finetune"), 1, 28)  # fits
    with pytest.raises(ValueError, match="more than the"):
        _check_memory(cfg("strategy=lump", "lump.mem_size=100000"), 1, 28)  # 100k buffered images do not
    with pytest.raises(ValueError, match=r"SSL heads [1-9]"):
        _check_memory(cfg("strategy=finetune", "ssl.proj_dim=4096"), 1, 28)
