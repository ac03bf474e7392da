"""The strategy in an Avalanche script: evaluation plugin, probes and their caches, the plugin protocol."""

import pytest
import torch
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics, loss_metrics
from avalanche.logging import InteractiveLogger
from avalanche.training.plugins import EvaluationPlugin

from avalanche_freeze.evaluation import probe_accuracy_metrics
from avalanche_freeze.probes import KNNProbe
from avalanche_freeze.protocols import SelfSupervisedState

from ..conftest import make_strategy


def test_strategy_with_avalanche_evaluation_plugin(tiny_bench):
    metrics = probe_accuracy_metrics(probes=("knn", "linear"))
    ev = EvaluationPlugin(*metrics, accuracy_metrics(experience=True),
                          forgetting_metrics(experience=True, stream=True), loss_metrics(epoch=True),
                          loggers=[InteractiveLogger()])
    s = make_strategy(tiny_bench, evaluator=ev, lr_schedule="cosine", train_epochs=3, lr=0.05)
    bench = tiny_bench.benchmark
    for exp in bench.train_stream[:2]:
        s.train(exp)
        res = s.eval(bench.test_stream[: exp.current_experience + 1])
    assert "StreamForgetting/eval_phase/test_stream" in res
    for key in ("KNN_CI", "KNN_TI", "LINEAR_CI", "LINEAR_TI"):
        v = res[f"Top1_{key}_Acc_Exp/eval_phase/test_stream/Task000/Exp001"]
        assert 0.0 <= v <= 1.0
    # the primary probe (kNN, class-incremental) drives Avalanche's own accuracy metric
    assert res["Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001"] == res["Top1_KNN_CI_Acc_Exp/eval_phase/test_stream/Task000/Exp001"]
    # the per-experience values are also kept as structured data, equal to the logged ones
    knn_ti = next(m for m in metrics if m.key == "knn_ti" and m.emit_at == "experience")
    assert knn_ti.last_values == {j: res[f"Top1_KNN_TI_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in (0, 1)}
    # task-incremental on a 2-class task of well-separated synthetic classes is far above chance
    assert knn_ti.last_values[0] > 0.75


def test_probe_evaluator_banks_follow_the_protocols_and_refresh_after_updates(tiny_bench):
    s = make_strategy(tiny_bench)
    stream = tiny_bench.benchmark.train_stream
    for exp in stream[:2]:
        s.train(exp)
    ev = s.probe_evaluator
    assert ev.trained == [0, 1]
    assert ev.bank_ids("class_incremental", 0) == [0, 1] and ev.bank_ids("task_incremental", 0) == [0]
    feats, labels = ev.bank(s, 1)
    assert feats.shape == (64, s.backbone.feature_dim) and sorted(set(labels.tolist())) == [2, 3]
    # the bank is the model's features of the un-augmented images
    x = torch.stack([stream[1].dataset.eval()[i][0] for i in range(4)])
    s.model.eval()
    with torch.no_grad():
        assert torch.allclose(feats[:4], s.model(s.augmentation.normalize(x)), atol=1e-5)
    probe = KNNProbe(k=5)
    fitted = ev.fitted(s, probe, "class_incremental", eval_exp_id=0)
    assert fitted is ev.fitted(s, probe, "class_incremental", eval_exp_id=0)  # one fit shared by the metrics
    assert fitted.bank.shape[0] == 128 and probe.bank is None  # the probe itself is left unfitted
    s.train(stream[2])  # the model changes: banks and fits are recomputed
    assert ev.fitted(s, probe, "class_incremental", eval_exp_id=0).bank.shape[0] == 192


def test_strategy_provides_the_plugin_protocol_and_rejects_bad_options(tiny_bench):
    s = make_strategy(tiny_bench)
    assert isinstance(s, SelfSupervisedState)
    with pytest.raises(ValueError, match="probe_protocol='joint' is not accepted; accepted: class_incremental"):
        make_strategy(tiny_bench, probe_protocol="joint")
    with pytest.raises(ValueError, match="train_mb_size=1 is not accepted; accepted: an integer >= 2"):
        make_strategy(tiny_bench, train_mb_size=1)
    with pytest.raises(ValueError, match="ssl='moco' is not accepted"):
        make_strategy(tiny_bench, ssl="moco", ssl_options=None)


def test_the_reference_knn_cap_is_an_option(tiny_bench):
    s = make_strategy(tiny_bench)
    for exp in tiny_bench.benchmark.train_stream[:2]:
        s.train(exp)
    probe = KNNProbe(k=200)
    assert s.probe_evaluator.fitted(s, probe, "class_incremental", eval_exp_id=0).k == 200
    s.probe_evaluator.knn_k_capped_by_tasks = True
    s.probe_evaluator.invalidate()
    assert s.probe_evaluator.fitted(s, probe, "class_incremental", eval_exp_id=0).k == 2  # two tasks seen
