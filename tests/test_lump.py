"""LUMP: reservoir uniformity, stored contents, per-batch mixup, and mem_size=0 == finetune."""

import torch

from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy
from avalanche_freeze.plugins import LUMPPlugin, ReservoirBuffer


def test_reservoir_keeps_a_uniform_sample():
    counts = torch.zeros(100)
    for seed in range(400):
        buf = ReservoirBuffer(capacity=10, seed=seed)
        for start in range(0, 100, 7):  # batches of 7, ids 0..99
            ids = torch.arange(start, min(start + 7, 100)).float().view(-1, 1)
            buf.add(ids, ids)
        counts[buf.raw[:, 0].long()] += 1
    # each id is kept with probability 10/100: 40 expected times in 400 runs
    expected = 400 * 10 / 100
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 150  # 99 dof: P(chi2 > 150) ~ 0.001
    early, late = counts[:50].sum(), counts[50:].sum()
    assert abs(float(early - late)) < 0.15 * 4000 / 2


def test_buffer_stores_raw_images_and_second_views(tiny_bench):
    plugin = LUMPPlugin(mem_size=16, seed=0)
    s = SelfSupervisedStrategy(model=CifarResNet18(width=0.125, in_channels=1), augmentation=tiny_bench.augmentation,
                               ssl_options={"proj_dim": 32, "pred_dim": 8}, plugins=[plugin], train_mb_size=32,
                               evaluator=None)
    seen = {}

    class Spy:
        def before_forward(self, strategy, **kw):
            seen["x"], seen["v2"] = strategy.mb_x.clone(), strategy.mb_views[1].clone()

    s.plugins.insert(0, Spy())
    ds = tiny_bench.benchmark.train_stream[0].dataset
    from torch.utils.data import Subset
    exp = tiny_bench.benchmark.train_stream[0]
    exp.dataset = ds.subset(range(32))
    s.train(exp)
    assert len(plugin.buffer) == 16 and plugin.buffer.num_seen == 32
    # a single iteration (32 images): every slot holds one of its raw images with that image's second view
    for raw, view in zip(plugin.buffer.raw, plugin.buffer.views):
        i = int(((seen["x"] - raw).flatten(1).abs().sum(1)).argmin())
        assert torch.equal(seen["x"][i], raw)
        assert torch.equal(seen["v2"][i], view)


def test_mixup_draws_one_lambda_per_batch_and_loss_uses_mixed_views(tiny_bench):
    plugin = LUMPPlugin(mem_size=64, alpha=0.4, seed=0)
    s = SelfSupervisedStrategy(model=CifarResNet18(width=0.125, in_channels=1), augmentation=tiny_bench.augmentation,
                               ssl_options={"proj_dim": 32, "pred_dim": 8}, plugins=[plugin], train_mb_size=32,
                               evaluator=None)
    lambdas, checks = [], []
    orig_ssl_forward = s.model.ssl.forward

    def spy(backbone, v1, v2):
        checks.append((v1 is s.mb_views[0], plugin.last_lambda))
        return orig_ssl_forward(backbone, v1, v2)

    s.model.ssl.forward = spy

    class Rec:
        def after_forward(self, strategy, **kw):
            lambdas.append(plugin.last_lambda)

    s.plugins.append(Rec())
    s.train(tiny_bench.benchmark.train_stream[0])
    assert lambdas[0] is None  # first batch of task 1: empty buffer, no mixup
    assert all(0 < lam < 1 for lam in lambdas[1:]) and len(set(lambdas[1:])) == len(lambdas) - 1
    assert all(used_mixed for used_mixed, _ in checks)


def test_mem_size_zero_equals_finetune_bit_for_bit(tiny_bench):
    def run(plugins):
        torch.manual_seed(3)
        net = CifarResNet18(width=0.125, in_channels=1)
        s = SelfSupervisedStrategy(model=net, augmentation=tiny_bench.augmentation,
                                   ssl_options={"proj_dim": 32, "pred_dim": 8}, plugins=plugins,
                                   train_mb_size=32, evaluator=None)
        for exp in tiny_bench.benchmark.train_stream[:2]:
            s.train(exp)
        return s.model.state_dict()

    torch.manual_seed(99)
    lump = LUMPPlugin(mem_size=0, seed=5)
    a, b = run([lump]), run([])
    assert all(torch.equal(a[k], b[k]) for k in a)
