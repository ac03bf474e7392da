"""Training health: representation collapse is detected, reported with task/epoch, and stops (or warns)."""

import math

import pytest
import torch

from avalanche_freeze import CifarResNet18
from avalanche_freeze.health import TrainingHealthError, TrainingHealthPlugin

from ..conftest import make_strategy


def _strategy(bench, health, collapsed: bool):
    net = CifarResNet18(width=0.125, in_channels=1)
    if collapsed:  # every image maps to the same (zero) feature vector
        with torch.no_grad():
            for p in net.parameters():
                p.zero_()
    return make_strategy(bench, [health], model=net)


def test_collapse_stops_the_run_with_task_and_epoch(tiny_bench):
    health = TrainingHealthPlugin(collapse_std=1e-4)
    s = _strategy(tiny_bench, health, collapsed=True)
    with pytest.raises(TrainingHealthError, match=r"representation collapse at task 0, epoch 0, .*< collapse_std=0.0001"):
        s.train(tiny_bench.benchmark.train_stream[0])
    assert health.last_feature_std < 1e-4


def test_collapse_can_warn_instead_and_a_healthy_run_passes(tiny_bench):
    health = TrainingHealthPlugin(on_nan="warn", collapse_std=1e-4)
    s = _strategy(tiny_bench, health, collapsed=True)
    with pytest.warns(RuntimeWarning, match="representation collapse at task 0"):
        s.train(tiny_bench.benchmark.train_stream[0])
    healthy = TrainingHealthPlugin(collapse_std=1e-4)
    _strategy(tiny_bench, healthy, collapsed=False).train(tiny_bench.benchmark.train_stream[0])
    d = CifarResNet18(width=0.125, in_channels=1).feature_dim
    assert healthy.last_feature_std > 0.1 / d**0.5  # spread features: of the order of 1/sqrt(D)
    disabled = TrainingHealthPlugin(collapse_std=0)
    _strategy(tiny_bench, disabled, collapsed=True).train(tiny_bench.benchmark.train_stream[0])  # no error
    assert math.isnan(disabled.last_feature_std)  # the check did not run
