"""Loss metrics on the device: Avalanche's values under Avalanche's names, without a host read per iteration."""

import pytest
import torch
from avalanche.evaluation.metrics import LossMetric, loss_metrics
from avalanche.training.plugins import EvaluationPlugin

from avalanche_freeze.device_loss import DeviceLossMean, device_loss_metrics
from avalanche_freeze.host_proxies import OpCounter

from ..conftest import make_strategy


def test_device_mean_equals_avalanches_loss_metric_and_reads_nothing_while_updating():
    g = torch.Generator().manual_seed(0)
    theirs, ours = LossMetric(), DeviceLossMean()
    losses = torch.rand(20, generator=g) * 5
    patterns = torch.randint(1, 64, (20,), generator=g).tolist()
    with OpCounter() as ops:
        for loss, n in zip(losses, patterns):
            ours.update(loss, n)
    for loss, n in zip(losses, patterns):
        theirs.update(loss, n)
    assert ops.host_syncs == 0
    assert ours.result() == pytest.approx(theirs.result(), rel=1e-6)
    assert ours.result() == pytest.approx(float((losses * torch.tensor(patterns)).sum() / sum(patterns)), rel=1e-6)
    ours.reset()
    assert ours.result() == 0.0 == LossMetric().result()


def test_epoch_loss_of_a_training_run_matches_avalanches(tiny_bench):
    values = []
    for metrics in (loss_metrics(epoch=True), device_loss_metrics(epoch=True)):
        torch.manual_seed(0)
        evaluator = EvaluationPlugin(*metrics, loggers=[])
        s = make_strategy(tiny_bench, evaluator=evaluator, train_epochs=2)
        s.train(tiny_bench.benchmark.train_stream[0])
        last = evaluator.get_all_metrics()
        values.append({k: v[1] for k, v in last.items() if k.startswith("Loss_Epoch")})
    assert values[0].keys() == values[1].keys() and len(values[0]) == 1
    (key,) = values[0]
    assert len(values[0][key]) == 2  # one value per epoch
    assert values[1][key] == pytest.approx(values[0][key], rel=1e-5)
