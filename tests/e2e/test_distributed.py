"""Distributed data-parallel training on CPU with the gloo backend: gathered losses, torchrun runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from avalanche_freeze.ssl import BarlowTwins, SimCLR, SimSiam, VICReg

from ..conftest import TINY_SET

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

WORLD = 2
METHODS = {"barlowtwins": lambda: BarlowTwins(feature_dim=8, proj_dim=16),
           "simclr": lambda: SimCLR(feature_dim=8, proj_dim=16, out_dim=8),
           "vicreg": lambda: VICReg(feature_dim=8, proj_dim=16),
           "simsiam": lambda: SimSiam(feature_dim=8, proj_dim=16, pred_dim=4)}


def _global_batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(12, 16, generator=gen), torch.randn(12, 16, generator=gen)


def _gathered_loss_worker(rank: int, init_file: str, name: str, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        method = METHODS[name]()
        z1, z2 = _global_batch()
        part = slice(rank * 6, (rank + 1) * 6)
        a, b = z1[part].clone().requires_grad_(), z2[part].clone().requires_grad_()
        loss = method.ssl_loss(a, b)
        loss.backward()
        # numpy, not tensors: a tensor is passed by shared memory that dies with this process
        queue.put((rank, float(loss.detach()), a.grad.numpy().copy(), b.grad.numpy().copy()))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["barlowtwins", "simclr", "vicreg"])
def test_gathered_loss_equals_single_process_loss_on_the_global_batch(name, tmp_path):
    """Each of 2 gloo processes holds half the batch: the loss is the one-process loss of the whole
    batch, and each process's gradient, averaged as DDP does, is the one-process gradient of its half."""
    z1, z2 = _global_batch()
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    reference = METHODS[name]().ssl_loss(a, b)
    reference.backward()
    for rank, loss, grad_a, grad_b in _spawn(_gathered_loss_worker, tmp_path, name):
        part = slice(rank * 6, (rank + 1) * 6)
        assert loss == pytest.approx(float(reference.detach()), rel=1e-5)
        torch.testing.assert_close(torch.from_numpy(grad_a) / WORLD, a.grad[part], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(grad_b) / WORLD, b.grad[part], rtol=1e-4, atol=1e-6)


def _freeze_decision_worker(rank: int, init_file: str, queue) -> None:
    from types import SimpleNamespace

    from avalanche_freeze import CifarResNet18
    from avalanche_freeze.plugins import CorrelationFreezePlugin

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        backbone = CifarResNet18(width=0.125, in_channels=1)
        plugin = CorrelationFreezePlugin(decide_every=4, max_frozen_share=1.0)
        plugin.compute_shares = [1 / len(backbone.units)] * len(backbone.units)
        # the processes disagree: process 0 finds every unit correlated, process 1 none
        plugin.measure.scores = lambda net, task: [1.0 if rank == 0 else 0.0] * len(net.units)
        strategy = SimpleNamespace(optimizer=torch.optim.SGD(backbone.parameters(), lr=0.1),
                                   experience=SimpleNamespace(current_experience=1),
                                   clock=SimpleNamespace(train_iterations=4),
                                   evaluator=SimpleNamespace(publish_metric_value=lambda value: None))
        plugin._decide(strategy, backbone)
        queue.put((rank, backbone.num_frozen_units))
    finally:
        dist.destroy_process_group()


def _spawn(target, tmp_path, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(r, str(tmp_path / "init"), *args, queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in range(WORLD))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_every_process_applies_the_freezing_decision_of_process_0(tmp_path):
    results = _spawn(_freeze_decision_worker, tmp_path)
    assert results == [(0, 9), (1, 9)]


def _eval_loader_worker(rank: int, init_file: str, queue) -> None:
    from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy
    from avalanche_freeze.benchmarks import benchmark_from_datasets

    from ..conftest import synthetic_images

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        bench = benchmark_from_datasets(synthetic_images(8, seed=0), synthetic_images(4, seed=1), name="synthetic",
                                        n_experiences=5, class_order=list(range(10)), image_size=16, channels=1,
                                        mean=(0.3,), std=(0.3,))
        strategy = SelfSupervisedStrategy(model=CifarResNet18(width=0.125, in_channels=1),
                                          augmentation=bench.augmentation, probe=None, train_mb_size=4,
                                          eval_mb_size=2, evaluator=None)
        sizes = {}
        for name, exp in (("train", bench.benchmark.train_stream[0]), ("eval", bench.benchmark.test_stream[0])):
            strategy.experience = exp
            strategy.adapted_dataset = exp.dataset
            strategy.is_training = name == "train"  # as Avalanche's train() and eval() set it
            (strategy.make_train_dataloader if name == "train" else strategy.make_eval_dataloader)()
            sizes[name] = sum(len(mb[0]) for mb in strategy.dataloader)
        queue.put((rank, sizes))
    finally:
        dist.destroy_process_group()


def test_training_data_is_sharded_and_evaluation_data_is_not(tmp_path):
    """16 training images of a task: 8 per process; 8 test images: all 8 in each process."""
    assert _spawn(_eval_loader_worker, tmp_path) == [(0, {"train": 8, "eval": 8}), (1, {"train": 8, "eval": 8})]


def test_per_sample_losses_are_not_gathered():
    """SimSiam's loss is a mean over samples: DDP's gradient averaging already gives the global one."""
    assert not SimSiam.global_batch and BarlowTwins.global_batch and SimCLR.global_batch and VICReg.global_batch


def _torchrun(output: Path, *extra: str, nproc: int = WORLD) -> subprocess.Popen:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "avalanche_freeze", "run", "--quiet", "--output", str(output)]
    for item in TINY_SET:
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args + list(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


FREEZING = ("--strategy", "lump_freeze", "--set", "data.n_experiences=2", "--set", "freeze.tau=0.0",
            "--set", "freeze.max_frozen_share=0.3")


@pytest.fixture(scope="module")
def freezing_run(tmp_path_factory, fmnist_available):
    """One uninterrupted two-process ``lump_freeze`` launch (two tasks, freezing in the second): checked
    on its own, and the reference of the killed-and-resumed and the two-node launches."""
    out = tmp_path_factory.mktemp("torchrun") / "reference"
    proc = _torchrun(out, *FREEZING)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout
    return out, stdout


def test_torchrun_two_processes_train_lump_freeze(freezing_run):
    out, stdout = freezing_run
    assert stdout.count("accuracy matrix [knn_ci]") == 1  # process 0 prints, once
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "log.txt", "results.json"]
    r = json.loads((out / "results.json").read_text())
    assert r["processes"] == 2
    assert r["freeze_history"] and r["freeze_history"][0]["frozen_blocks"] > 0
    per_process = r["frozen_blocks_per_process"]
    assert per_process[-1][0] > 0 and all(len(set(row)) == 1 for row in per_process)
    assert [row[0] for row in per_process] == [e["frozen_blocks"] for e in r["efficiency"]]
    log = (out / "log.txt").read_text()
    assert log.count("-- >> Start of training phase << --") == 2  # one logger, two tasks


def test_torchrun_refuses_plugins_without_distributed_support(tmp_path, fmnist_available):
    proc = _torchrun(tmp_path / "run", "--strategy", "cassle", "--set", "data.n_experiences=2")
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "CaSSLePlugin do not support distributed training" in stdout


def test_torchrun_killed_run_resumes_to_the_uninterrupted_results(tmp_path, freezing_run):
    # two tasks: killed after the first one's checkpoint, the resumed run freezes in the second
    reference, _ = freezing_run
    killed = _torchrun(tmp_path / "killed", *FREEZING)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGTERM)  # torchrun and both processes, after task 0's checkpoint
    try:
        killed.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # a process stuck in a collective: the checkpoint is atomic anyway
        os.killpg(killed.pid, signal.SIGKILL)
        killed.communicate(timeout=60)
    assert not (tmp_path / "killed" / "results.json").exists(), "the run ended before it was killed"
    resumed = _torchrun(tmp_path / "killed", "--resume", *FREEZING)
    stdout, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stdout
    a = json.loads((reference / "results.json").read_text())
    b = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert b["acc_matrix"] == a["acc_matrix"]
    assert b["frozen_blocks_per_process"] == a["frozen_blocks_per_process"]
    assert any(n > 0 for blocks in a["frozen_blocks_per_process"] for n in blocks)  # the resumed task froze


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    """Multi-node: process RANK=3 with LOCAL_RANK=1 is on cuda:1 (Avalanche's helper would take cuda:3)."""
    from types import SimpleNamespace

    from avalanche_freeze.distributed import local_device

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device(SimpleNamespace(use_cuda=True)) == torch.device("cuda:1")
    assert local_device(SimpleNamespace(use_cuda=False)) == torch.device("cpu")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_two_node_launch_equals_a_one_node_two_process_run(tmp_path, freezing_run):
    """Two `torchrun --nnodes=2` launches on this machine (one process each, gloo) give the results, the
    freezing decisions included, of one `torchrun --nproc_per_node=2` launch."""
    single, _ = freezing_run
    port = _free_port()
    nodes = []
    for node in (0, 1):
        args = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
                "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}",
                "-m", "avalanche_freeze", "run", "--quiet", "--output", str(tmp_path / "nodes")]
        for item in TINY_SET:
            args += ["--set", item]
        args += FREEZING  # after the tiny settings, as _torchrun puts them
        nodes.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True))
    outputs = [p.communicate(timeout=600)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outputs
    single_r = json.loads((single / "results.json").read_text())
    nodes_r = json.loads((tmp_path / "nodes" / "results.json").read_text())
    assert nodes_r["processes"] == single_r["processes"] == 2
    assert nodes_r["acc_matrix"] == single_r["acc_matrix"]
    assert nodes_r["frozen_blocks_per_process"] == single_r["frozen_blocks_per_process"]
