"""Shared fixtures and helpers: a synthetic in-memory benchmark (no dataset needed), the embedded one,
tiny settings for end-to-end runs. ``unit/`` tests parts on synthetic data; ``e2e/`` runs the command
line, the experiment scripts and the documentation's code on the embedded data."""

from pathlib import Path

import pytest
import torch

from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy
from avalanche_freeze.benchmarks import DEBIAN_FASHION_MNIST, ImageTensorDataset, benchmark_from_datasets
from avalanche_freeze.cli import main as cli_main

#: The repository's root (``README.md``, ``experiments/``, ``docs/``).
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def synthetic_images(n_per_class: int, *, n_classes: int = 10, size: int = 16, seed: int = 0) -> ImageTensorDataset:
    """Grayscale images whose class is a bright bar at a class-specific place and angle, on noise."""
    gen = torch.Generator().manual_seed(seed)
    images, labels = [], []
    coords = torch.arange(size, dtype=torch.float32)
    for c in range(n_classes):
        base = torch.zeros(size, size)
        row = 2 + (c % 5) * (size - 4) // 5
        if c < 5:
            base[row: row + 2, :] = 1.0
        else:
            base[:, row: row + 2] = 1.0
        base += 0.3 * torch.sin(coords * (c + 1) / 3).unsqueeze(0)
        for _ in range(n_per_class):
            img = base + 0.25 * torch.rand(size, size, generator=gen)
            images.append(img.clamp(0, 1))
            labels.append(c)
    batch = (torch.stack(images).unsqueeze(1) * 255).round().to(torch.uint8)
    return ImageTensorDataset(batch, labels)


@pytest.fixture(scope="session")
def tiny_bench():
    """Split synthetic images, 5 tasks x 2 classes, 64 training and 32 test images per task."""
    train, test = synthetic_images(32, seed=0), synthetic_images(16, seed=1)
    return benchmark_from_datasets(train, test, name="synthetic", n_experiences=5, class_order=list(range(10)),
                                   image_size=16, channels=1, mean=(0.3,), std=(0.3,))


def make_strategy(bench, plugins=(), **kwargs) -> SelfSupervisedStrategy:
    """A tiny SimSiam strategy on ``bench`` (width-0.125 ResNet-18, batch 32, one epoch at a constant lr 0.03,
    no logging)."""
    options = {"model": CifarResNet18(width=0.125, in_channels=1), "augmentation": bench.augmentation,
               "ssl_options": {"proj_dim": 32, "pred_dim": 8}, "plugins": list(plugins), "train_mb_size": 32,
               "train_epochs": 1, "lr": 0.03, "lr_schedule": "none", "evaluator": None}
    options.update(kwargs)
    return SelfSupervisedStrategy(**options)


@pytest.fixture(scope="session")
def fmnist_available():
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed under {DEBIAN_FASHION_MNIST}: run `make setup` "
                    "(apt-get install dataset-fashion-mnist)")
    return True


#: Settings of a tiny run of the command line on the embedded benchmark.
TINY_SET = ["train.epochs=1", "data.max_train_per_task=128", "data.max_test_per_task=64", "train.batch_size=32",
            "model.width=0.125", "ssl.proj_dim=32", "ssl.pred_dim=8", "data.n_experiences=5", "eval.mb_size=256",
            "freeze.n_samples=32", "lump.mem_size=64", "eval.knn_k=20", "metrics.flops_every=1",
            "freeze.decide_every=2", "freeze.stability=0",  # 4 iterations a task: decide twice, no gate,
            "freeze.first_task=2", "freeze.max_frozen_share=1.0"]  # from task 2 on, uncapped


def without_timing(history):
    """A freezing history without the wall time of each decision (which differs between runs)."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def run_cli(tmp_path, *extra, name="run"):
    """``avalanche-freeze run`` at the tiny settings into ``tmp_path / name``; returns the exit code."""
    args = ["run", "--quiet", "--output", str(tmp_path / name)]
    for item in TINY_SET:
        args += ["--set", item]
    return cli_main(args + list(extra))


def write_fmnist(folder, *, labels, shape=(28, 28), skip=None):
    """Four IDX files of random images with the given labels (train and test alike)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 256, (len(labels), *shape), dtype=np.uint8)

    def idx(array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        return header + array.tobytes()

    for split in ("train", "t10k"):
        for kind, array in (("images-idx3", images), ("labels-idx1", np.asarray(labels, dtype=np.uint8))):
            name = f"{split}-{kind}-ubyte"
            if name != skip:
                (folder / name).write_bytes(idx(array))
    return folder
