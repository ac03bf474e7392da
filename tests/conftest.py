import os
from pathlib import Path

import pytest
import torch

from avalanche_freeze.benchmarks import DEBIAN_FASHION_MNIST


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fmnist_available():
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed under {DEBIAN_FASHION_MNIST}: run `make setup` (apt-get install dataset-fashion-mnist)")
    return True


@pytest.fixture(scope="session")
def tiny_bench(fmnist_available):
    from avalanche_freeze import make_benchmark

    return make_benchmark("fmnist", max_train_per_task=128, max_test_per_task=64)


TINY_SET = ["epochs=1", "max_train_per_task=128", "max_test_per_task=64", "batch_size=32", "width=0.125",
            "proj_dim=32", "pred_dim=8", "n_experiences=5", "eval_mb_size=256", "freeze_samples=32",
            "lump_mem_size=64", "knn_k=20"]
