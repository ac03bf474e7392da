"""The freezing plugin drives its measure and gate through their interfaces only."""

from typing import List

import pytest

from avalanche_freeze.freezing import (MEASURES, CorrelationFreezePlugin, CorrelationMeasure, GradientProjection,
                                       LinearCKA, SubspaceProjection)
from avalanche_freeze.freezing.plugin import MEASURE_CLASSES

from ..conftest import make_strategy

ONCE = {"decide_every": 0, "stability": 0.0}  # what subspace and cka need (decide at the task's start)


def test_every_accepted_measure_has_its_class():
    assert set(MEASURE_CLASSES) == set(MEASURES)
    for cls, options in ((GradientProjection, {}), (SubspaceProjection, ONCE), (LinearCKA, ONCE)):
        plugin = CorrelationFreezePlugin(measure=cls.name, **options)
        assert type(plugin.measure) is cls and plugin.measure.config is plugin.config


def test_the_checkpoint_layout_does_not_depend_on_the_measure():
    keys = {name: set(CorrelationFreezePlugin(measure=name, **({} if name == "gradient" else ONCE)).state_dict())
            for name in MEASURES}
    assert len({frozenset(k) for k in keys.values()}) == 1


class _SpyMeasure(CorrelationMeasure):
    """Scores every unit 1.0 and records which of its methods the plugin called, in order."""

    name = "spy"
    reads_gradients = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self.calls: List[str] = []

    def learn_task(self, backbone, task, *, open_units):
        self.calls.append("learn_task")
        assert task.samples().shape[0] == self.config.n_samples  # images of the finished task, on demand

    def observe_backward(self, backbone, *, open_units):
        self.calls.append("observe_backward")

    def scores(self, backbone, task) -> List[float]:
        self.calls.append("scores")
        return [1.0] * len(backbone.units)

    def restart_window(self) -> None:
        self.calls.append("restart_window")


def test_the_plugin_calls_the_measure_at_the_right_callbacks(tiny_bench):
    plugin = CorrelationFreezePlugin(stability=0.0, decide_every=2, first_task=2, max_frozen_share=0.3, n_samples=16)
    plugin.measure = spy = _SpyMeasure(plugin.config)
    s = make_strategy(tiny_bench, [plugin], train_mb_size=16)  # 4 iterations a task
    s.train(tiny_bench.benchmark.train_stream[0])
    assert spy.calls == ["restart_window", "learn_task"]  # task 1 may not freeze: no gradients read, no check
    spy.calls.clear()
    s.train(tiny_bench.benchmark.train_stream[1])
    # the window opens, gradients of iterations 1-2 are read, a check scores and restarts the window; the
    # prefix then reaches the cap, so iteration 4 checks nothing; the window closes and the finished task is learnt
    assert spy.calls == ["restart_window", "observe_backward", "observe_backward", "scores", "restart_window",
                         "observe_backward", "observe_backward", "restart_window", "learn_task"]
    assert plugin.history[-1]["iteration"] == 2 and s.backbone.num_frozen_units == plugin.frozen_blocks > 0


@pytest.mark.parametrize("reads_gradients", [False, True])
def test_gradients_are_read_only_by_measures_that_ask(tiny_bench, reads_gradients):
    plugin = CorrelationFreezePlugin(stability=0.0, decide_every=100, first_task=2, n_samples=16)
    plugin.measure = spy = _SpyMeasure(plugin.config)
    spy.reads_gradients = reads_gradients
    s = make_strategy(tiny_bench, [plugin], train_mb_size=16)
    for exp in tiny_bench.benchmark.train_stream[:2]:
        s.train(exp)
    assert spy.calls.count("observe_backward") == (4 if reads_gradients else 0)  # task 2's 4 iterations
