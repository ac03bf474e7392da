"""SI, DER, CaSSLe and label-free EWC: each term against its formula, and its gradient direction."""

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avalanche_freeze.plugins import CaSSLePlugin, DERPlugin, LUMPPlugin, PFRPlugin, SelfSupervisedEWCPlugin, SIPlugin

from ..conftest import make_strategy as _strategy


class _AtBackward:
    """Runs ``fn(strategy)`` in before_backward, after the plugins listed before it."""

    def __init__(self, fn):
        self.fn = fn

    def before_backward(self, strategy, **kw):
        self.fn(strategy)


# ------------------------------------------------------------------------- SI
def test_si_path_integral_importance_and_penalty_follow_the_formulas():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    plugin = SIPlugin(c=0.5, xi=0.1, clip_value=None)
    strategy = SimpleNamespace(backbone=net, model=net, loss=None)
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    expected = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    plugin.before_training_exp(strategy)
    x, target = torch.randn(16, 3), torch.randn(16, 2)
    for _ in range(5):
        opt.zero_grad()
        strategy.loss = F.mse_loss(net(x), target)
        plugin.before_backward(strategy)
        strategy.loss.backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        plugin.before_update(strategy)
        opt.step()
        plugin.after_update(strategy)
        for n, p in net.named_parameters():
            expected[n] -= grads[n] * (p.detach() - before[n])
    for n in expected:
        assert torch.allclose(plugin.path_integral[n], expected[n], atol=1e-7)
    plugin.after_training_exp(strategy)
    for n, p in net.named_parameters():
        omega = (expected[n] / ((p.detach() - start[n]) ** 2 + 0.1)).clamp_min(0)
        assert torch.allclose(plugin.importance[n], omega, atol=1e-7)
        assert torch.equal(plugin.anchor[n], p.detach())
    assert any(v.sum() > 0 for v in plugin.importance.values())  # the loss went down: importance > 0

    # the penalty's gradient is 2 c Omega (theta - theta*): it pulls every parameter back to its anchor
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.zero_grad()
    penalty = plugin.penalty(net)
    penalty.backward()
    for n, p in net.named_parameters():
        shift = p.detach() - plugin.anchor[n]
        assert torch.allclose(p.grad, 2 * 0.5 * plugin.importance[n] * shift, atol=1e-7)
        assert float((p.grad * shift).sum()) >= 0  # a descent step moves toward theta*


def test_si_path_integral_uses_the_unpenalised_gradient_and_clips_the_step():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    plugin = SIPlugin(c=2.0, xi=1.0, clip_value=0.05)
    strategy = SimpleNamespace(backbone=net, model=net, loss=None)
    plugin.before_training_exp(strategy)  # anchor = current weights
    plugin.importance = {n: torch.rand_like(p) + 0.5 for n, p in net.named_parameters()}  # as after task 1
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3)  # away from the anchor: the penalty has a gradient
    x, target = torch.randn(16, 3), torch.randn(16, 2)
    opt.zero_grad()
    ssl_grads = torch.autograd.grad(F.mse_loss(net(x), target), list(net.parameters()))
    strategy.loss = F.mse_loss(net(x), target)
    plugin.before_backward(strategy)  # adds c * sum Omega (theta - theta*)^2
    assert plugin.last_penalty is not None and float(plugin.last_penalty) > 0
    strategy.loss.backward()
    before = [p.detach().clone() for p in net.parameters()]
    plugin.before_update(strategy)
    assert all(float(p.grad.abs().max()) <= 0.05 + 1e-7 for p in net.parameters())  # clipped as the reference
    opt.step()
    plugin.after_update(strategy)
    for (name, p), g, b in zip(net.named_parameters(), ssl_grads, before):
        assert torch.allclose(plugin.path_integral[name], -g * (p.detach() - b), atol=1e-7)


def test_si_adds_its_penalty_from_the_second_task_on(tiny_bench):
    plugin = SIPlugin(c=1.0)
    penalties = []
    s = _strategy(tiny_bench, [plugin, _AtBackward(lambda st: penalties.append(plugin.last_penalty))])
    s.train(tiny_bench.benchmark.train_stream[0])
    assert all(p is None for p in penalties)
    assert set(plugin.importance) == {n for n, _ in s.backbone.named_parameters()}  # backbone only
    penalties.clear()
    s.train(tiny_bench.benchmark.train_stream[1])
    assert penalties[0] is not None and float(penalties[0].detach()) == 0.0  # theta == theta* at the first step
    assert float(penalties[-1].detach()) > 0


# ------------------------------------------------------------------------ DER
def test_der_replays_stored_features_with_the_mse_term(tiny_bench):
    plugin = DERPlugin(mem_size=48, alpha=0.4, seed=0)
    checked = []

    def check(st):
        if plugin.last_penalty is None:
            return
        backbone = copy.deepcopy(st.backbone)  # probe a copy: the real graph must stay intact
        target = plugin.last_replay_targets
        penalty = 0.4 * ((backbone(plugin.last_replay_inputs) - target) ** 2).mean()
        assert torch.allclose(plugin.last_penalty, penalty, rtol=1e-5)
        # descending the term's gradient moves the replayed features toward the stored ones
        params = [p for p in backbone.parameters() if p.requires_grad]
        grads = torch.autograd.grad(penalty, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(1e-3 * g)
            after = F.mse_loss(backbone(plugin.last_replay_inputs), target)
        checked.append(float(after) < float(plugin.last_penalty) / 0.4)

    s = _strategy(tiny_bench, [plugin, _AtBackward(check)], train_epochs=2)
    s.train(tiny_bench.benchmark.train_stream[0])
    assert len(plugin.buffer) == 48 and plugin.buffer.num_seen == 128
    assert len(checked) == 3 and all(checked)  # iterations 2-4 of 4 replay
    # stored features are the backbone's 512-d (width-scaled) features, not images
    assert plugin.buffer.views.shape == (48, s.backbone.feature_dim)


def test_der_refuses_to_run_with_lump(tiny_bench):
    from avalanche_freeze.plugins import LUMPPlugin

    s = _strategy(tiny_bench, [DERPlugin(seed=0), LUMPPlugin(seed=0)])
    with pytest.raises(ValueError, match="DERPlugin cannot be combined with LUMPPlugin"):
        s.train(tiny_bench.benchmark.train_stream[0])


# --------------------------------------------------------------------- CaSSLe
def test_cassle_distils_into_the_frozen_previous_model(tiny_bench):
    plugin = CaSSLePlugin(lam=1.0)
    seen = []

    def check(st):
        if plugin.last_penalty is None:
            seen.append(None)
            return
        predictor = copy.deepcopy(st.model.cassle_predictor)  # probe a copy: the real graph must stay intact
        with torch.no_grad():
            targets = [plugin.frozen_ssl.projector(plugin.frozen_backbone(v)) for v in st.mb_views]
        z = [zi.detach() for zi in st.ssl_output.projections]
        # CaSSLe's predictive distiller for SimSiam: 2 - 2 cos, the frozen copy in training mode (batch statistics)
        assert plugin.frozen_backbone.training and plugin.frozen_ssl.training
        penalty = 0.5 * sum(2 - 2 * F.cosine_similarity(predictor(zi), ti).mean() for zi, ti in zip(z, targets))
        assert torch.allclose(plugin.last_penalty, penalty, atol=1e-5)
        # a step against the term's gradient makes the predictions more similar to the frozen targets
        params = list(predictor.parameters())
        grads = torch.autograd.grad(penalty, params)
        with torch.no_grad():
            cos_before = F.cosine_similarity(predictor(z[0]), targets[0]).mean()
            for p, g in zip(params, grads):
                p.sub_(1e-2 * g)
            cos_after = F.cosine_similarity(predictor(z[0]), targets[0]).mean()
        seen.append(float(cos_after) > float(cos_before))

    s = _strategy(tiny_bench, [plugin, _AtBackward(check)])
    s.train(tiny_bench.benchmark.train_stream[0])
    assert seen and all(v is None for v in seen)  # nothing to distil from during task 1
    end_of_task1 = {k: v.detach().clone() for k, v in s.backbone.named_parameters()}
    predictor_before = [p.detach().clone() for p in s.model.cassle_predictor.parameters()]
    assert all(any(p is q for q in s.optimizer.param_groups[0]["params"]) for p in s.model.cassle_predictor.parameters())
    seen.clear()
    snapshot = {}

    class KeepCopy:
        def after_training_epoch(self, strategy, **kw):
            snapshot.update({k: v.detach().clone() for k, v in plugin.frozen_backbone.named_parameters()})

    s.plugins.append(KeepCopy())
    s.train(tiny_bench.benchmark.train_stream[1])
    assert seen and all(seen)
    # the teacher's weights are the end-of-task-1 model's and stay untouched; the predictor learns
    assert all(torch.equal(snapshot[k], end_of_task1[k]) for k in end_of_task1)
    assert any(not torch.equal(a, b) for a, b in zip(predictor_before, s.model.cassle_predictor.parameters()))


# ------------------------------------------------------------------------ PFR
def test_pfr_pulls_projected_features_toward_the_frozen_backbone(tiny_bench):
    plugin = PFRPlugin(lam=2.0)
    seen = []

    def check(st):
        if plugin.last_penalty is None:
            seen.append(None)
            return
        assert not plugin.frozen_backbone.training  # the teacher uses its running statistics
        projector = copy.deepcopy(st.model.pfr_predictor)
        with torch.no_grad():
            targets = [plugin.frozen_backbone(v) for v in st.mb_views]
        feats = [f.detach() for f in st.ssl_output.features]
        penalty = 2.0 * 0.5 * sum(-F.cosine_similarity(projector(h), t).mean() for h, t in zip(feats, targets))
        assert torch.allclose(plugin.last_penalty, penalty, atol=1e-5)
        seen.append(True)

    s = _strategy(tiny_bench, [plugin, _AtBackward(check)])
    s.train(tiny_bench.benchmark.train_stream[0])
    assert seen and all(v is None for v in seen)
    assert s.model.pfr_predictor[0].in_features == s.backbone.feature_dim  # features, not projections
    seen.clear()
    s.train(tiny_bench.benchmark.train_stream[1])
    assert seen and all(seen)


# ------------------------------------------------------------------------ EWC
def test_ewc_importance_is_label_free_and_penalty_pulls_back(tiny_bench):
    plugin = SelfSupervisedEWCPlugin(ewc_lambda=50.0)
    s = _strategy(tiny_bench, [plugin])
    exp = tiny_bench.benchmark.train_stream[0]
    s.train(exp)
    imp = plugin.importances[0]
    assert sum(float(v.data.sum()) for v in imp.values()) > 0
    # labels play no part: importances computed with every label replaced by -1 are identical
    x = torch.stack([exp.dataset[i][0] for i in range(64)])
    garbage = torch.utils.data.TensorDataset(x, torch.full((64,), -1), torch.zeros(64, dtype=torch.long))
    torch.manual_seed(1)
    a = plugin.ssl_importances(s, garbage, batch_size=32)
    torch.manual_seed(1)
    b = plugin.ssl_importances(s, torch.utils.data.TensorDataset(x, torch.arange(64), torch.zeros(64, dtype=torch.long)),
                               batch_size=32)
    assert all(torch.equal(a[k].data, b[k].data) for k in a)

    # penalty = lambda * sum F (theta - theta*)^2, gradient 2 lambda F (theta - theta*)
    with torch.no_grad():
        for p in s.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    s.loss = torch.zeros(())
    s.clock.train_exp_counter = 1
    plugin.before_backward(s)
    s.model.zero_grad()
    s.loss.backward()
    for name, p in s.model.named_parameters():
        shift = p.detach() - plugin.saved_params[0][name].data
        assert torch.allclose(p.grad, 2 * 50.0 * imp[name].data * shift, atol=1e-6)


def test_ewc_and_si_state_round_trips():
    si = SIPlugin()
    si.importance, si.anchor = {"w": torch.rand(3)}, {"w": torch.rand(3)}
    si2 = SIPlugin()
    si2.load_state_dict(si.state_dict())
    assert torch.equal(si2.importance["w"], si.importance["w"]) and torch.equal(si2.anchor["w"], si.anchor["w"])
    from avalanche.training.utils import ParamData

    ewc = SelfSupervisedEWCPlugin(ewc_lambda=1.0)
    ewc.saved_params[0] = {"w": ParamData("w", init_tensor=torch.rand(2, 2))}
    ewc.importances[0] = {"w": ParamData("w", init_tensor=torch.rand(2, 2))}
    ewc2 = SelfSupervisedEWCPlugin(ewc_lambda=1.0)
    ewc2.load_state_dict(ewc.state_dict())
    assert torch.equal(ewc2.importances[0]["w"].data, ewc.importances[0]["w"].data)


@pytest.mark.parametrize("make,message", [
    (lambda: SIPlugin(c=-1), "c=-1 is not accepted; accepted: a finite number >= 0"),
    (lambda: SIPlugin(xi=0), "xi=0 is not accepted; accepted: a finite number > 0"),
    (lambda: SIPlugin(clip_value=0), "clip_value=0 is not accepted; accepted: a finite number > 0 or null"),
    (lambda: DERPlugin(alpha=-1), "alpha=-1 is not accepted"),
    (lambda: DERPlugin(mem_size=-2), "mem_size=-2 is not accepted; accepted: an integer >= 0"),
    (lambda: CaSSLePlugin(lam=float("nan")), "lam=nan is not accepted"),
    (lambda: PFRPlugin(lam=-1), "lam=-1 is not accepted"),
    (lambda: SelfSupervisedEWCPlugin(ewc_lambda=-1), "ewc_lambda=-1 is not accepted"),
])
def test_baseline_plugins_reject_bad_options(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize("make_plugin", [LUMPPlugin, DERPlugin, CaSSLePlugin, PFRPlugin, SelfSupervisedEWCPlugin],
                         ids=["LUMP", "DER", "CaSSLe", "PFR", "EWC"])
def test_plugins_that_need_the_ssl_strategy_refuse_another_before_any_iteration(tiny_bench, make_plugin):
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    from avalanche_freeze import CifarResNet18

    iterations = []

    class Counter:
        def before_training_iteration(self, strategy, **kw):
            iterations.append(1)

    model = nn.Sequential(CifarResNet18(width=0.125, in_channels=1), nn.Linear(64, 10))
    plugin = make_plugin()
    naive = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=16,
                  plugins=[plugin, Counter()], evaluator=EvaluationPlugin())
    with pytest.raises(TypeError, match=rf"{type(plugin).__name__} needs a SelfSupervisedStrategy .*; Naive lacks "
                                        r"mb_views, ssl_output, augmentation, backbone, ssl_method"):
        naive.train(tiny_bench.benchmark.train_stream[0])
    assert not iterations
