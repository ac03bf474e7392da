"""The freezing rule's surroundings: control schedules at equal frozen compute, honest timing,
the validation split, and reuse of runs across unrelated configuration sections."""

import time

import pytest
import torch

from avalanche_freeze.freezing.schedules import (fixed_schedule, freezeout_schedule, frozen_compute, random_schedule,
                                               schedule_compute)

SHARES = [0.05, 0.1, 0.1, 0.1, 0.15, 0.1, 0.15, 0.1, 0.15]
ITERATIONS = [40, 40, 40, 40, 40]
RULE = [{"experience": 1, "iteration": 16, "frozen_blocks": 2}, {"experience": 2, "iteration": 32, "frozen_blocks": 4},
        {"experience": 4, "iteration": 0, "frozen_blocks": 5}]


def test_frozen_compute_by_hand():
    # task 1: 24 iterations at 0.15; task 2: 32 at 0.15 then 8 at 0.35; task 3: 40 at 0.35; task 4: 40 at 0.5
    assert frozen_compute(RULE, ITERATIONS, SHARES) == pytest.approx(24 * .15 + 32 * .15 + 8 * .35 + 40 * .35 + 40 * .5)
    # a decision at a task's last iteration counts from the next task on
    assert schedule_compute([[1, 40, 1]], ITERATIONS, SHARES) == pytest.approx(3 * 40 * 0.05)


def test_controls_match_the_rule_frozen_compute():
    target = frozen_compute(RULE, ITERATIONS, SHARES)
    fixed2 = fixed_schedule(target, ITERATIONS, SHARES, from_task=1)
    fixed3 = fixed_schedule(target, ITERATIONS, SHARES, from_task=2)
    assert fixed2[0][:2] == [1, 0] and fixed3[0][:2] == [2, 0]
    for schedule in (fixed2, fixed3):  # the closest single prefix: within half a unit's step
        blocks = schedule[0][2]
        step = max(SHARES[blocks - 1], SHARES[min(blocks, len(SHARES) - 1)]) * sum(ITERATIONS[schedule[0][0]:])
        assert abs(schedule_compute(schedule, ITERATIONS, SHARES) - target) <= step / 2 + 1e-9
    freezeout = freezeout_schedule(target, ITERATIONS, SHARES, blocks=5)
    assert [e[2] for e in freezeout] == [1, 2, 3, 4, 5]  # shallow first, one unit at a time
    assert schedule_compute(freezeout, ITERATIONS, SHARES) == pytest.approx(target, rel=0.02)
    rand = random_schedule(target, ITERATIONS, SHARES, seed=3)
    assert [e[2] for e in rand] == sorted(e[2] for e in rand) and all(e[1] == 0 for e in rand)
    assert schedule_compute(rand, ITERATIONS, SHARES) == pytest.approx(target, rel=0.05)
    assert rand == random_schedule(target, ITERATIONS, SHARES, seed=3)


def test_counted_iterations_are_kept_out_of_training_time(tiny_bench, monkeypatch):
    """Counting made artificially slow (0.25 s per counter): the training time must not include it."""
    from avalanche.training.plugins import EvaluationPlugin
    from torch.utils.flop_counter import FlopCounterMode

    from avalanche_freeze import efficiency

    class SlowCounter(FlopCounterMode):
        def __enter__(self):
            time.sleep(0.25)
            return super().__enter__()

    monkeypatch.setattr(efficiency, "FlopCounterMode", SlowCounter)
    metric = efficiency.EfficiencyMetrics(count_every=2)
    from ..conftest import make_strategy

    s = make_strategy(tiny_bench, evaluator=EvaluationPlugin(metric, loggers=[]), train_mb_size=16, train_epochs=3)
    start = time.perf_counter()
    s.train(tiny_bench.benchmark.train_stream[0])  # 12 iterations, 6 counted (2 counters each)
    wall = time.perf_counter() - start
    values = metric.last
    assert values["CountedTime_Exp"] >= 3.0  # the six counted windows held the 12 slow counters
    assert values["TrainTime_Exp"] < wall - 2.5  # ... and were replaced by the median uncounted window
    assert values["BwdFLOPs_Exp"] > 0 and values["Iterations_Exp"] == 12


def test_time_stamps_measure_the_time_between_them():
    """The stamps shared by the efficiency metric and the throughput benchmark: host clock on CPU."""
    from avalanche_freeze.efficiency import seconds_between, time_stamp

    start = time_stamp("cpu")
    time.sleep(0.05)
    end = time_stamp("cpu")
    assert isinstance(start, float) and 0.05 <= seconds_between(start, end) < 1.0
    assert seconds_between(end, start) < 0
    with pytest.raises(TypeError, match="stamps of different kinds"):
        seconds_between(start, object())


def test_validation_split_is_unused_training_images(fmnist_available):
    from avalanche_freeze.benchmarks import make_benchmark
    from avalanche_freeze.run.config import ConfigError

    test_mode = make_benchmark("fmnist", max_train_per_task=200, max_test_per_task=100, seed=1)
    val_mode = make_benchmark("fmnist", max_train_per_task=200, max_test_per_task=100, seed=1, eval_split="validation")
    for t in range(5):
        train_a = test_mode.benchmark.train_stream[t].dataset
        train_b = val_mode.benchmark.train_stream[t].dataset
        val = val_mode.benchmark.test_stream[t].dataset
        images = lambda ds: {ds[i][0].numpy().tobytes() for i in range(len(ds))}  # noqa: E731
        trained = images(train_b)
        assert trained == images(train_a)  # the same training images as a test-split run
        assert len(val) == len(test_mode.benchmark.test_stream[t].dataset) == 100
        assert not images(val) & trained  # never an image the run trains on
        assert not images(val) & images(test_mode.benchmark.test_stream[t].dataset)  # nor a test image
    with pytest.raises(ConfigError, match="eval_split='validation' is not accepted.*max_train_per_task"):
        make_benchmark("fmnist", max_train_per_task=None, eval_split="validation")


def test_unused_plugin_sections_do_not_change_a_run():
    from avalanche_freeze.run.config import ExperimentConfig
    from avalanche_freeze.run.experiment import config_differences

    lump = ExperimentConfig.from_sources(files=[], overrides=["strategy=lump"]).to_dict()
    lump_tuned = ExperimentConfig.from_sources(files=[], overrides=["strategy=lump", "freeze.tau=0.1"]).to_dict()
    assert config_differences(lump, lump_tuned) == []  # LUMP has no freezing plugin
    rule = ExperimentConfig.from_sources(files=[], overrides=["strategy=lump_freeze"]).to_dict()
    rule_tuned = ExperimentConfig.from_sources(files=[], overrides=["strategy=lump_freeze", "freeze.tau=0.1"]).to_dict()
    assert config_differences(rule, rule_tuned) == ["freeze.tau"]
    assert "lump.mem_size" in config_differences(
        lump, ExperimentConfig.from_sources(files=[], overrides=["strategy=lump", "lump.mem_size=8"]).to_dict())


def test_a_run_saved_before_a_key_existed_has_that_keys_default():
    """Results written by an earlier version (no ``train.precision`` key yet) are reused and resumed by
    a configuration with the key's default, and not by one with another value."""
    from avalanche_freeze.run.config import ExperimentConfig
    from avalanche_freeze.run.experiment import config_differences

    now = ExperimentConfig.from_sources(files=[], overrides=["strategy=lump"]).to_dict()
    saved = {**now, "train": {k: v for k, v in now["train"].items() if k not in ("precision", "channels_last")}}
    assert config_differences(saved, now) == [] and config_differences(now, saved) == []
    bf16 = ExperimentConfig.from_sources(files=[], overrides=["strategy=lump", "train.precision=bf16"]).to_dict()
    assert config_differences(saved, bf16) == ["train.precision"]


def _rule_config(*overrides):
    from avalanche_freeze.run.config import ExperimentConfig

    return ExperimentConfig.from_sources(files=[], overrides=["strategy=lump_freeze", *overrides]).to_dict()


def test_a_run_saved_before_first_task_existed_froze_from_task_2():
    """``freeze.first_task`` was added with the paper's 2 and its default is now 3: a rule run saved
    before the key existed is the same run as ``first_task=2`` and not the same as the default."""
    from avalanche_freeze.run.experiment import config_differences

    now = _rule_config()
    saved = {**now, "freeze": {k: v for k, v in now["freeze"].items() if k != "first_task"}}
    assert now["freeze"]["first_task"] == 3
    assert config_differences(saved, now) == ["freeze.first_task"] == config_differences(now, saved)
    assert config_differences(saved, _rule_config("freeze.first_task=2")) == []


def test_a_fixed_schedule_makes_the_decision_options_neutral():
    """Two runs that follow the same fixed schedule give the same results whatever the rule's options
    (a control run made under older defaults is reused); the schedule itself, and the options of a
    run that decides, still count."""
    from avalanche_freeze.run.experiment import config_differences

    schedule = "freeze.schedule=[[2,0,4]]"
    older = _rule_config(schedule, "freeze.stability=0.999", "freeze.first_task=2", "freeze.max_frozen_share=1.0")
    assert config_differences(older, _rule_config(schedule)) == []
    assert config_differences(older, _rule_config("freeze.schedule=[[1,0,4]]")) == ["freeze.schedule"]
    assert config_differences(_rule_config(), _rule_config("freeze.stability=0.999")) == ["freeze.stability"]
    assert config_differences(_rule_config(schedule), _rule_config()) == ["freeze.schedule"]


def test_a_freeze_in_the_middle_of_a_short_task_shows_in_the_flop_totals(tiny_bench):
    """A 3-block freeze at iteration 1 of a 4-iteration task, FLOPs sampled every 1000 iterations: the first
    iteration after the change is counted anyway, and the totals equal counting every iteration."""
    from avalanche.training.plugins import EvaluationPlugin

    from avalanche_freeze import efficiency
    from avalanche_freeze.plugins import CorrelationFreezePlugin

    from ..conftest import make_strategy

    totals = {}
    for every in (1, 1000):
        torch.manual_seed(0)
        metric = efficiency.EfficiencyMetrics(count_every=every)
        s = make_strategy(tiny_bench, plugins=[CorrelationFreezePlugin(schedule=[[0, 1, 3]])],
                          evaluator=EvaluationPlugin(metric, loggers=[]), train_mb_size=24, train_epochs=2)
        s.train(tiny_bench.benchmark.train_stream[0])  # 64 images: two full batches of 24 per epoch
        assert s.backbone.num_frozen_units == 3
        totals[every] = metric.last
    exact, sampled = totals[1], totals[1000]
    assert exact["Iterations_Exp"] == sampled["Iterations_Exp"] == 4
    for key in ("FwdFLOPs_Exp", "BwdFLOPs_Exp", "SavedActBytes_Iter"):
        assert sampled[key] == pytest.approx(exact[key], rel=1e-9), key
    # the saving is there: 3 of 4 iterations ran with 3 frozen blocks
    metric = efficiency.EfficiencyMetrics(count_every=1)
    make_strategy(tiny_bench, evaluator=EvaluationPlugin(metric, loggers=[]), train_mb_size=24,
                  train_epochs=2).train(tiny_bench.benchmark.train_stream[0])
    assert exact["BwdFLOPs_Exp"] < 0.95 * metric.last["BwdFLOPs_Exp"]
    assert exact["FwdFLOPs_Exp"] == pytest.approx(metric.last["FwdFLOPs_Exp"], rel=1e-9)
