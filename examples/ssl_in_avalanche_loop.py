"""Self-supervised continual learning in a plain Avalanche loop.

SimSiam + LUMP + the freezing rule on Split Fashion-MNIST (the embedded copy), evaluated after every
task with kNN probes under both protocols and Avalanche's own forgetting metrics; prints the
class-incremental accuracy matrix, average accuracy, forgetting and the frozen prefix per task.

    python examples/ssl_in_avalanche_loop.py          # about 2 minutes on 2 CPU cores
    python examples/ssl_in_avalanche_loop.py --tiny   # a few seconds (what the test suite runs)
"""

import argparse

from avalanche.evaluation.metrics import forgetting_metrics
from avalanche.logging import InteractiveLogger
from avalanche.training.plugins import EvaluationPlugin

from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy, make_benchmark
from avalanche_freeze.analysis.continual_metrics import average_accuracy, forgetting_last
from avalanche_freeze.evaluation import probe_accuracy_metrics
from avalanche_freeze.plugins import CorrelationFreezePlugin, LUMPPlugin


def main(tiny: bool) -> None:
    bench = make_benchmark("fmnist", n_experiences=5, seed=0,
                           max_train_per_task=128 if tiny else 2000, max_test_per_task=64 if tiny else 1000)
    probes = probe_accuracy_metrics(probes=("knn",), protocols=("class_incremental", "task_incremental"))
    strategy = SelfSupervisedStrategy(
        model=CifarResNet18(width=0.125 if tiny else 0.25, in_channels=1),
        augmentation=bench.augmentation,
        ssl="simsiam",
        plugins=[LUMPPlugin(mem_size=256),
                 # the shipped rule; the tiny run decides every 2 iterations from task 2 on
                 CorrelationFreezePlugin(decide_every=2, first_task=2) if tiny else CorrelationFreezePlugin()],
        evaluator=EvaluationPlugin(*probes, forgetting_metrics(experience=True, stream=True),
                                   loggers=[InteractiveLogger()]),
        train_mb_size=32 if tiny else 128, train_epochs=1 if tiny else 3,
    )
    knn_ci = next(m for m in probes if m.key == "knn_ci" and m.emit_at == "experience")
    matrix, frozen = [], []
    for exp in bench.benchmark.train_stream:
        strategy.train(exp)
        strategy.eval(bench.benchmark.test_stream[: exp.current_experience + 1])
        matrix.append([knn_ci.last_values.get(j) for j in range(len(bench.benchmark.train_stream))])
        frozen.append(strategy.backbone.num_frozen_units)

    print("\nkNN accuracy, class-incremental (%): row = after training task i, column = task j")
    for i, row in enumerate(matrix):
        print(f"  after task {i}: " + "  ".join("  -  " if v is None else f"{100 * v:5.1f}" for v in row))
    print(f"average accuracy {100 * average_accuracy(matrix):.2f} %, forgetting {100 * forgetting_last(matrix):.2f} "
          f"points, frozen blocks per task {frozen}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny settings: a few seconds")
    main(parser.parse_args().tiny)
