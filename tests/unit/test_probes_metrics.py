"""kNN and linear probes against hand computations; accuracy-matrix summaries on a hand-made matrix."""

import math

import pytest
import torch

from avalanche_freeze.analysis.continual_metrics import (
    average_accuracy,
    backward_transfer,
    forgetting_avalanche,
    forgetting_last,
    forgetting_max,
    learning_accuracy,
    summarize,
)
from avalanche_freeze.probes import KNNProbe, LinearProbe


def test_knn_matches_hand_computation_with_noncontiguous_classes():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([4, 9, 9, 4])  # non-contiguous ids
    q = torch.tensor([[1.0, 0.2]])
    probe = KNNProbe(k=3, temperature=0.1).fit(bank, labels)
    qn = q / q.norm()
    sims = (bank / bank.norm(dim=1, keepdim=True)) @ qn[0]
    top = sims.topk(3)
    expected = torch.zeros(10)
    for s, i in zip(top.values, top.indices):
        expected[labels[i]] += math.exp(float(s) / 0.1)
    scores = probe.predict_scores(q)[0]
    assert scores.shape == (10,)  # max label + 1
    # LUMP's votes up to a factor per query (the probe subtracts the largest similarity)
    assert torch.allclose(scores / scores.sum(), expected / expected.sum(), rtol=1e-5)


def test_knn_k_is_capped_only_by_bank_size():
    # k = 200 with 50 bank samples and any number of tasks: all 50 neighbours vote
    bank = torch.randn(50, 4)
    labels = torch.randint(0, 3, (50,))
    probe = KNNProbe(k=200, temperature=0.1).fit(bank, labels)
    q = torch.randn(1, 4)
    sims = torch.nn.functional.normalize(bank, dim=1) @ torch.nn.functional.normalize(q, dim=1)[0]
    expected = torch.zeros(3).index_add_(0, labels, (sims / 0.1).exp())
    scores = probe.predict_scores(q)[0]
    assert torch.allclose(scores / scores.sum(), expected / expected.sum(), rtol=1e-5)


def test_knn_does_not_overflow_at_small_temperatures():
    torch.manual_seed(0)
    bank, labels = torch.randn(300, 8), torch.randint(0, 4, (300,))
    queries = torch.randn(50, 8)
    scores = KNNProbe(k=50, temperature=0.005).fit(bank, labels).predict_scores(queries)
    assert torch.isfinite(scores).all()
    # reference in float64, where exp(1 / 0.005) = exp(200) is still representable
    sims = torch.nn.functional.normalize(queries.double(), dim=1) @ torch.nn.functional.normalize(bank.double(), dim=1).T
    top, idx = sims.topk(50, dim=1)
    ref = torch.zeros(50, 4, dtype=torch.float64).scatter_add_(1, labels[idx], (top / 0.005).exp())
    assert torch.equal(scores.argmax(1), ref.argmax(1))


def test_linear_probe_separates_separable_data():
    x = torch.cat([torch.randn(40, 5) + 4, torch.randn(40, 5) - 4])
    y = torch.cat([torch.full((40,), 2), torch.full((40,), 7)])
    probe = LinearProbe(epochs=30, lr=0.05).fit(x, y)
    assert (probe.predict_scores(x).argmax(1) == y).float().mean() == 1.0


def test_probe_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"bank features must be \[N, D\] and labels \[N\]"):
        KNNProbe().fit(torch.randn(4, 3), torch.zeros(5))


def test_summaries_on_hand_made_matrix():
    m = [
        [0.90, None, None],
        [0.70, 0.80, None],
        [0.60, 0.85, 0.75],
    ]
    assert average_accuracy(m) == pytest.approx((0.60 + 0.85 + 0.75) / 3)
    # task 0: max(0.9, 0.7) - 0.6 = 0.3; task 1: max(0.8) - 0.85 = -0.05
    assert forgetting_max(m) == pytest.approx((0.30 - 0.05) / 2)
    # LUMP's code and Avalanche: first (right after learning) minus last
    assert forgetting_last(m) == pytest.approx(((0.90 - 0.60) + (0.80 - 0.85)) / 2)
    assert backward_transfer(m) == pytest.approx(((0.60 - 0.90) + (0.85 - 0.80)) / 2)
    assert summarize(m)["avg_acc"] == pytest.approx(average_accuracy(m))
    assert learning_accuracy(m) == pytest.approx((0.90 + 0.80 + 0.75) / 3)
    assert summarize(m)["learning_acc"] == pytest.approx(learning_accuracy(m))


def test_forgetting_ignores_rows_before_a_task_was_learned():
    # accuracy on task 1 measured before it was trained (0.95) must not count
    m = [[0.9, 0.95], [0.8, 0.5]]
    assert forgetting_max(m) == pytest.approx(0.1)


def test_the_two_forgetting_definitions_differ_and_avalanche_agrees_with_the_last_one():
    # task 0 peaks after task 1 (0.95) and ends at 0.6: max-based 0.35, first-minus-last 0.2
    m = [[0.80, None, None], [0.95, 0.70, None], [0.60, 0.65, 0.90]]
    assert forgetting_max(m) == pytest.approx(((0.95 - 0.60) + (0.70 - 0.65)) / 2)
    assert forgetting_last(m) == pytest.approx(((0.80 - 0.60) + (0.70 - 0.65)) / 2)
    assert forgetting_last(m) == pytest.approx(-backward_transfer(m))
    assert forgetting_avalanche(m) == pytest.approx(forgetting_last(m))
    assert set(summarize(m)) == {"avg_acc", "forgetting_max", "forgetting_last", "forgetting_avalanche", "bwt",
                                 "learning_acc"}


def test_avalanche_stream_forgetting_in_a_run_equals_forgetting_last(tiny_bench):
    """Avalanche's own StreamForgetting, attached to the kNN class-incremental probe, gives the
    first-minus-last forgetting of the run's accuracy matrix."""
    from avalanche.evaluation.metrics import forgetting_metrics
    from avalanche.training.plugins import EvaluationPlugin

    from avalanche_freeze.evaluation import probe_accuracy_metrics

    from ..conftest import make_strategy

    metrics = probe_accuracy_metrics(probes=("knn",), protocols=("class_incremental",), stream=False)
    s = make_strategy(tiny_bench, evaluator=EvaluationPlugin(*metrics, forgetting_metrics(stream=True)))
    matrix = []
    for exp in tiny_bench.benchmark.train_stream[:3]:
        s.train(exp)
        res = s.eval(tiny_bench.benchmark.test_stream[: exp.current_experience + 1])
        matrix.append([metrics[0].last_values.get(j) for j in range(3)])
    assert res["StreamForgetting/eval_phase/test_stream"] == pytest.approx(forgetting_last(matrix))
    assert forgetting_avalanche(matrix) == pytest.approx(forgetting_last(matrix))
