"""Training health: representation collapse is detected, reported with task/epoch, and stops (or warns)."""

import math

import pytest
import torch

from avalanche_freeze import CifarResNet18
from avalanche_freeze.health import TrainingHealthError, TrainingHealthPlugin
from avalanche_freeze.host_proxies import OpCounter

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


class _PoisonLoss:
    """Makes the loss of one iteration of the epoch non-finite and counts the iterations that ran."""

    def __init__(self, at: int):
        self.at, self.ran = at, 0

    def before_backward(self, strategy, **kwargs):
        if strategy.clock.train_epoch_iterations == self.at:
            strategy.loss = strategy.loss * float("nan")

    def after_training_iteration(self, strategy, **kwargs):
        self.ran += 1


@pytest.mark.parametrize("check_every, ran", [(0, 2), (1, 0)])
def test_a_non_finite_loss_is_read_at_the_epoch_end_or_every_n_iterations(tiny_bench, check_every, ran):
    # 64 images in batches of 32: two iterations; the first one's loss is NaN
    poison = _PoisonLoss(at=0)
    health = TrainingHealthPlugin(collapse_std=0, check_every=check_every)
    s = make_strategy(tiny_bench, [poison, health])
    with pytest.raises(TrainingHealthError, match=r"non-finite loss \(nan\) at task 0, epoch 0, iteration 0"):
        s.train(tiny_bench.benchmark.train_stream[0])
    # check_every=0 reads once, at the epoch's end (both iterations ran); 1 reads before the first step
    assert poison.ran == ran


def test_the_loss_check_does_not_read_the_device_between_reads(tiny_bench):
    health = TrainingHealthPlugin(collapse_std=0, check_every=0)
    s = make_strategy(tiny_bench, [health])
    s.train(tiny_bench.benchmark.train_stream[0])  # the device-side state exists

    class Step:
        loss = torch.tensor(float("inf"))
        clock = s.clock
        experience = s.experience

    with OpCounter() as ops:
        for _ in range(5):
            health.before_backward(Step)
    assert ops.host_syncs == 0
    with pytest.raises(TrainingHealthError, match="non-finite loss \\(inf\\)"):
        health.after_training_epoch(Step)
    health.after_training_epoch(Step)  # read and cleared: nothing left to report
