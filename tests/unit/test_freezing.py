"""Freezing against gradients, optimizer state, BN statistics, FLOP counts and saved activations."""

import copy

import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch.utils.flop_counter import FlopCounterMode

from avalanche_freeze.backbones import CifarResNet18
from avalanche_freeze.freezing.correlation import SubspaceBasis, linear_cka, subspace_ratio
from avalanche_freeze.efficiency import SavedTensorMeter
from avalanche_freeze.plugins import CorrelationFreezePlugin
from avalanche_freeze.backbones import unit_compute_shares
from avalanche_freeze.freezing.prefix import apply_frozen_prefix, remove_from_optimizer

from ..conftest import make_strategy


def _train_step(net, opt, x):
    opt.zero_grad()
    net(x).pow(2).mean().backward()
    opt.step()


def _backward_flops(net, x) -> int:
    """FLOPs of one backward pass of ``net`` on ``x`` (the forward is not counted); gradients cleared."""
    out = net(x).sum()
    with FlopCounterMode(display=False) as counter:
        out.backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def test_frozen_prefix_gets_no_grad_and_does_not_change():
    net = CifarResNet18(width=0.125, in_channels=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(8, 1, 16, 16)
    _train_step(net, opt, x)  # creates momentum state everywhere
    net.set_frozen_prefix(3)
    frozen = [p for u in net.units[:3] for p in u.parameters()]
    remove_from_optimizer(opt, frozen)
    net.train()  # a model.train() call must not re-enable frozen BatchNorm
    frozen_state = copy.deepcopy({k: v for k, v in net.state_dict().items() if k.startswith(("units.0.", "units.1.", "units.2."))})
    trainable_before = [p.clone() for p in net.units[3].parameters()]
    for _ in range(3):
        _train_step(net, opt, torch.rand(8, 1, 16, 16))
    assert all(p.grad is None for p in frozen)
    assert all(p not in opt.state for p in frozen)
    assert all(not any(p is q for q in opt.param_groups[0]["params"]) for p in frozen)
    for k, v in frozen_state.items():  # weights and BN running stats unchanged
        assert torch.equal(net.state_dict()[k], v), k
    assert any(not torch.equal(a, b) for a, b in zip(trainable_before, net.units[3].parameters()))
    assert not net.units[0][1].training and net.units[3].bn1.training


def test_backward_flops_drop_by_the_prefix_share():
    net = CifarResNet18(width=0.25, in_channels=3)
    x = torch.rand(4, 3, 32, 32)
    full = _backward_flops(net, x)
    # independent count: backward of a conv = 2x its forward FLOPs (grad input + grad weight),
    # except the very first conv, which needs no grad input
    fwd = []
    h = x
    for u in net.units:
        with FlopCounterMode(display=False) as c, torch.no_grad():
            h = u(h)
        fwd.append(c.get_total_flops())
    assert full == pytest.approx(2 * sum(fwd) - fwd[0], rel=0.02)
    net.set_frozen_prefix(3)  # stem + layer1
    frozen = _backward_flops(net, x)
    # the frozen units disappear from backward and the first trainable unit's first conv needs no grad input
    with torch.no_grad():
        prefix_out = net.units[2](net.units[1](net.units[0](x)))
    convs_on_input = [net.units[3].conv1, net.units[3].shortcut[0]]  # layer2.0 has a conv shortcut
    with FlopCounterMode(display=False) as c, torch.no_grad():
        for conv in convs_on_input:
            conv(prefix_out)
    expected = full - 2 * sum(fwd[:3]) + fwd[0] - c.get_total_flops()
    assert frozen == pytest.approx(expected, rel=0.02)
    shares = unit_compute_shares(net, x[:1])
    assert 1 - frozen / full == pytest.approx(sum(shares[:3]), abs=0.05)


def test_saved_activation_bytes_drop_as_prefix_grows():
    net = CifarResNet18(width=0.25, in_channels=3)
    x = torch.rand(4, 3, 32, 32)
    sizes = []
    for n in (0, 3, 5):
        net.set_frozen_prefix(n)
        with SavedTensorMeter(exclude=list(net.parameters())) as m:
            net(x).sum()
        sizes.append(m.bytes)
    assert sizes[0] > sizes[1] > sizes[2] > 0


def test_subspace_ratio_inside_and_orthogonal():
    q, _ = torch.linalg.qr(torch.randn(20, 20))
    inside = q[:, :4] @ torch.randn(4, 50)
    outside = q[:, 10:14] @ torch.randn(4, 50)
    basis = SubspaceBasis(energy=0.999)
    basis.update(inside)
    assert basis.ratio(inside) == pytest.approx(1.0, abs=1e-5)
    assert basis.ratio(q[:, :4] @ torch.randn(4, 30)) == pytest.approx(1.0, abs=1e-5)
    assert basis.ratio(outside) == pytest.approx(0.0, abs=1e-5)
    assert subspace_ratio(None, inside) == 0.0


def test_subspace_basis_respects_energy_and_stays_orthonormal():
    r = torch.randn(30, 200) * torch.linspace(3, 0.1, 30).unsqueeze(1)
    basis = SubspaceBasis(energy=0.9)
    basis.update(r)
    assert basis.ratio(r) >= 0.9
    basis.update(torch.randn(30, 200))
    u = basis.basis
    assert torch.allclose(u.T @ u, torch.eye(u.shape[1]), atol=1e-4)


def test_cka_gram_form_equals_the_feature_form():
    x, y = torch.randn(20, 300), torch.randn(20, 7) @ torch.randn(7, 500)
    xc, yc = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    feature_form = float((yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm()))
    assert linear_cka(x, y) == pytest.approx(feature_form, rel=1e-9)


def test_cka_identity_and_orthogonal_invariance():
    x = torch.randn(64, 10)
    q, _ = torch.linalg.qr(torch.randn(10, 10))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(x, 3.0 * x) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(64, 10)) < 0.5


def test_frozen_prefix_runs_without_autograd_even_when_the_input_requires_grad():
    net = CifarResNet18(width=0.125, in_channels=1)
    net.set_frozen_prefix(3)
    x = torch.rand(4, 1, 16, 16, requires_grad=True)  # e.g. an adversarial or mixed input with a graph
    with SavedTensorMeter(exclude=list(net.parameters())) as meter:
        out = net(x)
    out.sum().backward()
    assert x.grad is None  # no graph reaches back through the frozen units
    with torch.no_grad():
        h = net.units[2](net.units[1](net.units[0](x)))
    with SavedTensorMeter(exclude=list(net.parameters())) as suffix_only:
        for unit in net.units[3:]:
            h = unit(h)
        torch.nn.functional.adaptive_avg_pool2d(h, 1)
    assert meter.bytes == suffix_only.bytes  # only the trainable suffix saves activations


def test_plugin_restores_its_prefix_from_a_checkpoint():
    plugin = CorrelationFreezePlugin(n_samples=8)
    plugin.history = [{"experience": 1, "scores": {}, "frozen_units": ["stem", "layer1.0"], "frozen_blocks": 2,
                       "frozen_share": 0.3}]
    plugin.tasks_done = 2
    fresh_net = CifarResNet18(width=0.125, in_channels=1)
    fresh = CorrelationFreezePlugin(n_samples=8)
    fresh.load_state_dict(plugin.state_dict(), device="cpu", backbone=torch.nn.Sequential(fresh_net))
    assert fresh_net.num_frozen_units == 2 and fresh.tasks_done == 2 and fresh.history == plugin.history
    assert all(not p.requires_grad for u in fresh_net.units[:2] for p in u.parameters())
    assert all(p.requires_grad for u in fresh_net.units[2:] for p in u.parameters())
    assert not fresh_net.units[0][1].training  # frozen BatchNorm in eval mode


def test_plugin_freezes_prefix_progressively_and_logs(tiny_bench):
    plugin = CorrelationFreezePlugin(measure="subspace", decide_every=0, stability=0, tau=0.0, max_frozen_share=0.5,
                                     n_samples=32, first_task=2, shrink=False)
    s = make_strategy(tiny_bench, [plugin])
    net = s.backbone
    stream = tiny_bench.benchmark.train_stream
    s.train(stream[0])
    assert net.num_frozen_units == 0
    s.train(stream[1])
    shares = plugin.compute_shares
    n = net.num_frozen_units
    assert n > 0 and sum(shares[:n]) <= 0.5 < sum(shares[: n + 1])
    rec = plugin.history[-1]
    assert rec["experience"] == 1 and set(rec["scores"]) == set(net.unit_names()) and rec["frozen_blocks"] == n
    frozen_ids = {id(p) for u in net.units[:n] for p in u.parameters()}
    assert not frozen_ids & {id(p) for g in s.optimizer.param_groups for p in g["params"]}
    plugin.config.tau = 1.0  # nothing qualifies any more: the prefix must not shrink
    s.train(stream[2])
    assert net.num_frozen_units >= n
    assert not frozen_ids & {id(p) for g in s.optimizer.param_groups for p in g["params"]}


def test_plugin_works_with_avalanche_naive(tiny_bench):
    from avalanche.training import Naive

    net = CifarResNet18(width=0.125, in_channels=1)
    model = torch.nn.Sequential(net, torch.nn.Linear(net.feature_dim, 10))
    plugin = CorrelationFreezePlugin(measure="subspace", decide_every=0, stability=0, tau=0.0, max_frozen_share=0.3,
                                     n_samples=32, first_task=2)
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                     train_mb_size=32, plugins=[plugin], evaluator=None)
    strategy.train(tiny_bench.benchmark.train_stream[0])
    strategy.train(tiny_bench.benchmark.train_stream[1])
    assert net.num_frozen_units > 0
    assert all(p.grad is None for u in net.units[: net.num_frozen_units] for p in u.parameters())


def test_normalized_score_is_near_one_for_the_same_distribution_and_near_zero_for_noise():
    from avalanche_freeze.benchmarks import benchmark_from_datasets

    from ..conftest import synthetic_images

    bench = benchmark_from_datasets(synthetic_images(200, seed=0), synthetic_images(16, seed=1), name="synthetic",
                                    n_experiences=5, class_order=list(range(10)), image_size=16, channels=1,
                                    mean=(0.3,), std=(0.3,))
    plugin = CorrelationFreezePlugin(measure="subspace", decide_every=0, stability=0, n_samples=64, normalize=True, tau=1.0)
    s = make_strategy(bench, [plugin], train_epochs=2)
    s.train(bench.benchmark.train_stream[0])
    assert len(plugin.measure.ceilings) == len(s.backbone.units)  # from held-out samples of the finished task
    data = bench.benchmark.train_stream[0].dataset.eval()
    unseen = s.augmentation.normalize(torch.stack([data[i][0] for i in range(200, 264)]))  # neither basis nor ceiling
    floor_noise = s.augmentation.normalize(torch.rand(unseen.shape))
    other_noise = s.augmentation.normalize(torch.rand(unseen.shape))
    same = plugin.measure.normalized_scores(s.backbone, unseen, floor_noise)
    noise = plugin.measure.normalized_scores(s.backbone, other_noise, floor_noise)
    raw_noise = plugin.measure.raw_scores(s.backbone, other_noise)
    assert min(same) > 0.9 and max(noise) < 0.1, (same, noise)
    assert max(raw_noise) > 0.1  # the raw ratio of noise is not near 0: that is what the floor removes


# ------------------------------------------------------------------ the gradient (TRGP) measure
def test_conv_input_patches_reproduce_the_convolution():
    from avalanche_freeze.freezing.correlation import conv_input_patches

    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=False)
    x = torch.randn(4, 3, 9, 9)
    patches = conv_input_patches(x, conv)  # [27, 4 * 25]
    out = (conv.weight.reshape(5, -1) @ patches).reshape(5, 4, 5, 5).permute(1, 0, 2, 3)
    assert torch.allclose(out, conv(x), atol=1e-5)


def test_energy_basis_keeps_the_directions_carrying_the_energy():
    from avalanche_freeze.freezing.correlation import energy_basis

    directions = torch.linalg.qr(torch.randn(10, 10))[0]
    scales = torch.tensor([10.0, 5.0, 1.0, 0.1] + [0.0] * 6)
    r = directions @ torch.diag(scales) @ torch.randn(10, 500)
    basis = energy_basis(r @ r.T, 0.97)
    assert basis.shape == (10, 2)  # 100 + 25 of 126 parts of the energy > 0.97; one direction is not
    assert torch.allclose(basis.T @ basis, torch.eye(2), atol=1e-5)
    assert energy_basis(r @ r.T, 0.999).shape[1] == 3


def test_gradient_score_is_high_on_old_input_directions_and_low_on_new_ones():
    """The stem of a 2-channel backbone: task A lights channel 0 only. A gradient computed on
    channel-0 images lies in A's input-patch space (ratio ~1); one on channel-1 images does not (~0)."""
    net = CifarResNet18(width=0.125, in_channels=2)
    plugin = CorrelationFreezePlugin(measure="gradient", score="raw", n_samples=16, energy=0.9999)
    plugin.compute_shares = unit_compute_shares(net, torch.randn(1, 2, 16, 16))

    def images(channel):
        x = torch.zeros(16, 2, 16, 16)
        x[:, channel] = torch.rand(16, 16, 16)
        return x

    plugin.measure.add_task_bases(net, images(0), open_units=plugin.open_units(net))
    assert len(plugin.measure.patch_bases[0][0]) == 1  # stem: one conv, one old task
    for channel, expected in ((0, 1.0), (1, 0.0)):
        net.zero_grad()
        net(images(channel)).pow(2).mean().backward()
        plugin.start_window(net, images(channel))
        plugin.measure.observe_backward(net, open_units=plugin.open_units(net))
        assert plugin.measure.scores(net, None)[0] == pytest.approx(expected, abs=0.02)


# ------------------------------------------------------------------ the stability gate
def test_gate_accepts_converged_units_and_refuses_a_reinitialised_one():
    torch.manual_seed(0)
    net = CifarResNet18(width=0.125, in_channels=1)
    x, target = torch.rand(32, 1, 16, 16), torch.randn(32, net.feature_dim)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            (net(x) - target).pow(2).mean().backward()
            opt.step()

    steps(300)  # a toy regression trained to convergence
    plugin = CorrelationFreezePlugin(stability=0.99, n_samples=32)
    plugin.start_window(net, x)
    steps(16)
    settled = plugin.gate.values(net)
    assert min(settled) >= 0.99, settled
    plugin.start_window(net, x)
    for m in net.units[3].modules():  # layer1.2's weights just re-initialised
        if hasattr(m, "reset_parameters") and m is not net.units[3]:
            m.reset_parameters()
    after_reset = plugin.gate.values(net)
    assert min(after_reset[:3]) >= 0.99 and after_reset[3] < 0.99, after_reset


# ------------------------------------------------------------------ decisions during a task
class _OptimizerSpy(SupervisedPlugin):
    """Records, at every training iteration, whether the stem's weights are in the optimizer."""

    def __init__(self):
        super().__init__()
        self.stem_in_optimizer = []

    def before_training_iteration(self, strategy, **kwargs):
        ids = {id(p) for g in strategy.optimizer.param_groups for p in g["params"]}
        self.stem_in_optimizer.append((strategy.experience.current_experience,
                                       id(strategy.backbone.units[0][0].weight) in ids))


def test_mid_task_decision_takes_units_out_of_the_optimizer_at_that_iteration(tiny_bench):
    spy = _OptimizerSpy()
    plugin = CorrelationFreezePlugin(measure="gradient", tau=0.0, stability=0.0, decide_every=3,
                                     max_frozen_share=0.3, n_samples=16, first_task=2)
    s = make_strategy(tiny_bench, [plugin, spy], train_mb_size=8, train_epochs=1)  # 8 iterations per task
    s.train(tiny_bench.benchmark.train_stream[0])
    assert s.backbone.num_frozen_units == 0 and not plugin.history  # task 1: nothing to correlate with
    s.train(tiny_bench.benchmark.train_stream[1])
    task2 = [inside for exp, inside in spy.stem_in_optimizer if exp == 1]
    assert task2 == [True] * 3 + [False] * 5  # frozen after the 3rd iteration, out from the 4th on
    first = plugin.history[0]
    assert first["experience"] == 1 and first["iteration"] == 3 and first["frozen_blocks"] > 0
    assert [h["iteration"] for h in plugin.history] == [3]  # the cap is reached: nothing left to decide at 6
    assert plugin.decision_seconds[1] > 0


def test_first_task_holds_every_unit_trainable_until_that_task(tiny_bench):
    spy = _OptimizerSpy()
    plugin = CorrelationFreezePlugin(measure="gradient", tau=0.0, stability=0.0, decide_every=3,
                                     max_frozen_share=0.3, n_samples=16, first_task=3)
    summed_in = []  # tasks_done at each gradient accumulation
    accumulate = plugin.measure.observe_backward
    plugin.measure.observe_backward = lambda backbone, **kw: (summed_in.append(plugin.tasks_done),
                                                              accumulate(backbone, **kw))
    s = make_strategy(tiny_bench, [plugin, spy], train_mb_size=8, train_epochs=1)  # 8 iterations per task
    for exp in tiny_bench.benchmark.train_stream[:2]:
        s.train(exp)
    assert s.backbone.num_frozen_units == 0 and not plugin.history and not summed_in  # task 2: no decision
    assert len(plugin.measure.patch_bases[0][0]) == 2  # stem conv: one input-patch basis per old task
    s.train(tiny_bench.benchmark.train_stream[2])
    assert [inside for exp, inside in spy.stem_in_optimizer if exp == 2] == [True] * 3 + [False] * 5
    assert [(h["experience"], h["iteration"]) for h in plugin.history] == [(2, 3)]
    assert set(summed_in) == {2}  # gradients summed in task 3 only
    with pytest.raises(ValueError, match="first_task"):
        CorrelationFreezePlugin(first_task=1)


def test_gate_holds_back_units_that_still_move(tiny_bench):
    plugin = CorrelationFreezePlugin(measure="gradient", tau=0.0, stability=1.0, decide_every=2, n_samples=16,
                                     first_task=2)
    s = make_strategy(tiny_bench, [plugin], train_mb_size=8, train_epochs=1)
    for exp in tiny_bench.benchmark.train_stream[:2]:
        s.train(exp)
    assert s.backbone.num_frozen_units == 0  # CKA 1.0 is never reached while training
    assert plugin.history and all(h["stability"] and max(h["stability"].values()) < 1.0 for h in plugin.history)


def test_fixed_schedule_freezes_at_the_given_iteration(tiny_bench):
    spy = _OptimizerSpy()
    plugin = CorrelationFreezePlugin(schedule=[[1, 2, 3], [2, 0, 4]])
    s = make_strategy(tiny_bench, [plugin, spy], train_mb_size=8, train_epochs=1)
    for exp in tiny_bench.benchmark.train_stream[:3]:
        s.train(exp)
    assert [inside for exp, inside in spy.stem_in_optimizer if exp == 1] == [True] * 2 + [False] * 6
    assert [(h["experience"], h["iteration"], h["frozen_blocks"]) for h in plugin.history] == [(1, 2, 3), (2, 0, 4)]
    assert s.backbone.num_frozen_units == 4


def test_a_schedule_from_task_one_keeps_the_prefix_at_its_initialisation(tiny_bench):
    """``[[0, 0, B]]`` (``bench_freeze.py --fixed-prefix 1:B``): the untrained-features control."""
    spy = _OptimizerSpy()
    plugin = CorrelationFreezePlugin(schedule=[[0, 0, 2]])
    s = make_strategy(tiny_bench, [plugin, spy], train_mb_size=8, train_epochs=1)
    initial = {k: v.clone() for k, v in s.backbone.state_dict().items()}
    for exp in tiny_bench.benchmark.train_stream[:2]:
        s.train(exp)
    assert spy.stem_in_optimizer and not any(inside for _, inside in spy.stem_in_optimizer)
    frozen = {f"units.{i}." for i in range(2)}
    after = s.backbone.state_dict()
    changed = {k for k in initial if k.endswith(("weight", "running_mean")) and not torch.equal(initial[k], after[k])}
    assert changed and not any(k.startswith(tuple(frozen)) for k in changed)  # weights and BN statistics untouched
    assert any(k.startswith("units.2.") for k in changed)  # the first open unit trained
    assert [(h["experience"], h["iteration"], h["frozen_blocks"]) for h in plugin.history] == [(0, 0, 2)]


@pytest.mark.parametrize("options, key", [
    ({"measure": "gradient", "decide_every": 0}, "measure"),
    ({"measure": "gradient", "shrink": True}, "shrink"),
    ({"measure": "cka", "shrink": True}, "shrink"),
    ({"measure": "subspace", "decide_every": 0, "stability": 0.9}, "stability"),
    ({"schedule": [[1, 2]]}, "schedule"),
    ({"schedule": [[1, -2, 3]]}, "schedule"),
])
def test_inconsistent_freeze_options_are_refused_with_the_key(options, key):
    from avalanche_freeze.run.config import ConfigError

    with pytest.raises(ConfigError, match=f"^{key}="):
        CorrelationFreezePlugin(**options)


@pytest.mark.parametrize("reference, still_refused", [("task", True), ("check", False)])
def test_gate_reference_task_remembers_a_move_and_check_forgets_it(reference, still_refused):
    net = CifarResNet18(width=0.125, in_channels=1).eval()
    x = torch.rand(32, 1, 16, 16)
    plugin = CorrelationFreezePlugin(stability=0.99, gate_reference=reference, n_samples=32)
    plugin.start_window(net, x)
    for m in net.units[3].modules():  # layer1.2 moves once, between the start and the first check
        if hasattr(m, "reset_parameters") and m is not net.units[3]:
            m.reset_parameters()
    assert plugin.gate.values(net)[3] < 0.99
    second = plugin.gate.values(net)  # nothing moved since the first check
    assert min(second[:3]) >= 0.99
    assert (second[3] < 0.99) is still_refused, second


def test_unfrozen_units_train_again_from_the_group_they_left_with_fresh_state():
    net = CifarResNet18(width=0.125, in_channels=1)
    head = torch.nn.Linear(net.feature_dim, 2)
    outside = net.units[-1].conv1.weight  # a parameter the user never gave the optimizer
    backbone_params = [p for p in net.parameters() if p is not outside]
    opt = torch.optim.SGD([{"params": list(head.parameters())}, {"params": backbone_params, "lr": 0.05}],
                          lr=0.1, momentum=0.9)
    x = torch.rand(8, 1, 16, 16)

    def step():
        opt.zero_grad()
        head(net(x)).pow(2).mean().backward()
        opt.step()

    step()
    apply_frozen_prefix(net, 5, opt)
    reopened = [p for u in net.units[2:5] for p in u.parameters()]
    assert not any(any(p is q for q in opt.param_groups[1]["params"]) for p in reopened)
    apply_frozen_prefix(net, 2, opt)  # units 2-4 train again
    net.train()
    in_group = lambda p, g: any(p is q for q in opt.param_groups[g]["params"])  # noqa: E731
    assert all(in_group(p, 1) and not in_group(p, 0) for p in reopened)  # back where they were, once
    assert all(p.requires_grad and p not in opt.state for p in reopened)  # fresh state: no old momentum
    assert not any(in_group(outside, g) for g in (0, 1))  # what the user left out stays out
    assert net.units[3].bn1.training and not net.units[1].bn1.training
    before = [p.clone() for p in reopened]
    running = net.units[3].bn1.running_mean.clone()
    step()
    assert all(p.grad is not None for p in reopened)
    assert all(not torch.equal(a, b) for a, b in zip(before, reopened))
    assert not torch.equal(running, net.units[3].bn1.running_mean)  # BatchNorm statistics update again
    assert all(p.grad is None for u in net.units[:2] for p in u.parameters())


def test_unfreezing_brings_the_backward_flops_back():
    net = CifarResNet18(width=0.25, in_channels=3)
    x = torch.rand(4, 3, 32, 32)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    full = _backward_flops(net, x)
    apply_frozen_prefix(net, 1, opt)
    stem_only = _backward_flops(net, x)
    apply_frozen_prefix(net, 5, opt)
    frozen = _backward_flops(net, x)
    apply_frozen_prefix(net, 1, opt)  # units 1-4 unfrozen: their backward is computed again
    assert frozen < stem_only < full
    assert _backward_flops(net, x) == stem_only


class _ScriptedScores:
    """Replaces a measure's scores by one list per task (0-based), to drive the plugin's decisions."""

    def __init__(self, measure, by_task):
        self.measure, self.by_task = measure, by_task
        self.calls = []

    def __call__(self, backbone, task):
        self.calls.append(self.task)
        return list(self.by_task[self.task])


def test_shrink_unfreezes_the_prefix_at_a_task_whose_scores_fall_below_tau(tiny_bench):
    spy = _OptimizerSpy()
    plugin = CorrelationFreezePlugin(measure="subspace", tau=0.8, stability=0.0, decide_every=0, n_samples=16,
                                     first_task=2, max_frozen_share=1.0, shrink=True)
    n = 9
    scripted = _ScriptedScores(plugin.measure, {1: [1.0] * n, 2: [1.0, 0.3] + [1.0] * (n - 2)})
    plugin.measure.scores = scripted
    s = make_strategy(tiny_bench, [plugin, spy], train_mb_size=8, train_epochs=1)
    for t, exp in enumerate(tiny_bench.benchmark.train_stream[:3]):
        scripted.task = t
        s.train(exp)
    # task 2: everything passes (no cap): all 9 units frozen; task 3: layer1.0 fails, the prefix is cut to the stem
    assert [(h["experience"], h["frozen_blocks"], h.get("revision", False), h["stopped_by"])
            for h in plugin.history] == [(1, 9, False, "end"), (2, 1, True, "tau"), (2, 1, False, "tau")]
    assert s.backbone.num_frozen_units == 1
    layer1 = s.backbone.units[1]
    ids = {id(p) for g in s.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in ids and p.requires_grad for p in layer1.parameters())
    assert [inside for exp, inside in spy.stem_in_optimizer if exp == 2] == [False] * 8
    s.model.eval()
    s.model.train()  # layer1.0's BatchNorm follows the model's mode again; the stem's stays in eval mode
    assert layer1.bn1.training and not s.backbone.units[0][1].training


def test_without_shrink_the_prefix_stays_whatever_the_new_task_scores(tiny_bench):
    plugin = CorrelationFreezePlugin(measure="subspace", tau=0.8, stability=0.0, decide_every=0, n_samples=16,
                                     first_task=2, max_frozen_share=1.0, shrink=False)
    assert CorrelationFreezePlugin().config.shrinks and not CorrelationFreezePlugin(measure="gradient").config.shrinks
    scripted = _ScriptedScores(plugin.measure, {1: [1.0] * 9, 2: [0.0] * 9})
    plugin.measure.scores = scripted
    s = make_strategy(tiny_bench, [plugin], train_mb_size=8, train_epochs=1)
    for t, exp in enumerate(tiny_bench.benchmark.train_stream[:3]):
        scripted.task = t
        s.train(exp)
    assert s.backbone.num_frozen_units == 9 and not any(h.get("revision") for h in plugin.history)


def test_the_frozen_prefix_is_read_without_a_host_sync_and_survives_state_dict_loads():
    from avalanche_freeze.host_proxies import OpCounter

    net = CifarResNet18(width=0.125, in_channels=1)
    net.set_frozen_prefix(3)
    x = torch.rand(2, 1, 16, 16)
    with OpCounter() as ops:
        net(x)
        assert net.num_frozen_units == 3
    assert ops.host_syncs == 0  # the count is a Python int beside the buffer, not a .item() per forward
    wrapped = torch.nn.Sequential(CifarResNet18(width=0.125, in_channels=1))
    wrapped.load_state_dict(torch.nn.Sequential(net).state_dict())  # a checkpoint restore, nested
    assert wrapped[0].num_frozen_units == 3 and int(wrapped[0].frozen_units) == 3
