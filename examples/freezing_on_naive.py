"""The freezing rule on Avalanche's supervised ``Naive`` strategy.

``CorrelationFreezePlugin`` needs only a model that contains a ``FreezableBackbone`` (here
``CifarResNet18`` under a linear head): it scores the backbone's units on each new task against the
old tasks, freezes the correlated prefix, and takes it out of the optimizer and of autograd.
``EfficiencyMetrics`` counts the backward FLOPs per task, so the saving is visible next to the accuracy.

    python examples/freezing_on_naive.py          # about a minute on 2 CPU cores
    python examples/freezing_on_naive.py --tiny   # a few seconds (what the test suite runs)
"""

import argparse

import torch
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin

from avalanche_freeze import CifarResNet18, make_benchmark
from avalanche_freeze.efficiency import EfficiencyMetrics
from avalanche_freeze.plugins import CorrelationFreezePlugin


def main(tiny: bool) -> None:
    bench = make_benchmark("fmnist", n_experiences=5, seed=0,
                           max_train_per_task=128 if tiny else 2000, max_test_per_task=64 if tiny else 1000)
    backbone = CifarResNet18(width=0.125 if tiny else 0.25, in_channels=1)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, bench.num_classes))
    efficiency = EfficiencyMetrics(count_every=10)
    freeze = CorrelationFreezePlugin(decide_every=2, first_task=2) if tiny else CorrelationFreezePlugin()
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     train_mb_size=32 if tiny else 128, train_epochs=1 if tiny else 2, plugins=[freeze],
                     evaluator=EvaluationPlugin(accuracy_metrics(experience=True, stream=True), efficiency,
                                                loggers=[]))
    print("task  frozen blocks  backward GFLOPs  stream accuracy (%)")
    for exp in bench.benchmark.train_stream:
        strategy.train(exp)
        backward = efficiency.last["BwdFLOPs_Exp"]
        strategy.eval(bench.benchmark.test_stream[: exp.current_experience + 1])
        accuracy = strategy.evaluator.get_last_metrics()["Top1_Acc_Stream/eval_phase/test_stream/Task000"]
        print(f"{exp.current_experience:4d}  {backbone.num_frozen_units:13d}  {backward / 1e9:15.2f}  "
              f"{100 * accuracy:19.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny settings: a few seconds")
    main(parser.parse_args().tiny)
