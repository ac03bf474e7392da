"""A supervised reference evaluated like the self-supervised runs, with Avalanche's forgetting metrics right.

Avalanche's ``Naive`` trains a backbone + linear head with labels; a ``SelfSupervisedStrategy`` that
shares the backbone never trains and only evaluates it with kNN probes. ``probes.mark_trained(exp)``
tells it which task the backbone was trained on, so the probe banks grow and Avalanche's forgetting
metrics take their reference accuracy at the right evaluation. Without it, Avalanche's
``StreamForgetting`` stays 0 however much the backbone forgets (the probe strategy never starts a
training experience). Prints Avalanche's forgetting beside the one computed from the accuracy matrix.

    python examples/supervised_reference.py          # about a minute on 2 CPU cores
    python examples/supervised_reference.py --tiny   # a few seconds (what the test suite runs)
"""

import argparse

import torch
from avalanche.evaluation.metrics import forgetting_metrics
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin

from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy, make_benchmark
from avalanche_freeze.analysis.continual_metrics import forgetting_last
from avalanche_freeze.evaluation import probe_accuracy_metrics


def main(tiny: bool) -> None:
    bench = make_benchmark("fmnist", n_experiences=5, seed=0,
                           max_train_per_task=128 if tiny else 2000, max_test_per_task=64 if tiny else 1000)
    backbone = CifarResNet18(width=0.125 if tiny else 0.25, in_channels=1)
    classifier = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, bench.num_classes))
    supervised = Naive(model=classifier, optimizer=torch.optim.SGD(classifier.parameters(), lr=0.05, momentum=0.9),
                       train_mb_size=32 if tiny else 128, train_epochs=1 if tiny else 2, evaluator=None)

    knn_ci = probe_accuracy_metrics(probes=("knn",), protocols=("class_incremental",), stream=False)[0]
    evaluator = EvaluationPlugin(knn_ci, forgetting_metrics(stream=True), loggers=[])
    # the probe strategy's default probe (kNN, class-incremental) is what Avalanche's forgetting metrics score
    probes = SelfSupervisedStrategy(model=backbone, augmentation=bench.augmentation, evaluator=evaluator)

    n_tasks = len(bench.benchmark.train_stream)
    matrix = []
    for exp in bench.benchmark.train_stream:
        supervised.train(exp)  # normalisation and augmentation are left out: a minimal supervised reference
        probes.mark_trained(exp)
        probes.eval(bench.benchmark.test_stream[: exp.current_experience + 1])
        matrix.append([knn_ci.last_values.get(j) for j in range(n_tasks)])

    avalanche = evaluator.get_last_metrics()["StreamForgetting/eval_phase/test_stream"]
    print("kNN accuracy, class-incremental (%), row = after training task i:")
    for row in matrix:
        print("  " + "  ".join("  -  " if v is None else f"{100 * v:5.1f}" for v in row))
    print(f"forgetting: Avalanche's StreamForgetting {100 * avalanche:.2f} points, "
          f"from the accuracy matrix {100 * forgetting_last(matrix):.2f} points")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny settings: a few seconds")
    main(parser.parse_args().tiny)
