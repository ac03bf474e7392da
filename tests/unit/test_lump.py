"""LUMP: reservoir uniformity, stored contents, the mixup formula, and mem_size=0 == finetune."""

import pytest
import torch

from avalanche_freeze.host_proxies import OpCounter, PythonCallCounter, per_sample_calls
from avalanche_freeze.plugins import LUMPPlugin, ReservoirBuffer
from avalanche_freeze.plugins.reservoir import uniform_below

from ..conftest import make_strategy


def _one_by_one(capacity, seed, batches):
    """Algorithm R one item at a time (``torch.randint`` per item): the reference of the vectorised buffer."""
    g = torch.Generator().manual_seed(seed)
    slots, seen = [None] * capacity, 0
    for batch in batches:
        for item in batch.tolist():
            seen += 1
            if seen <= capacity:
                slots[seen - 1] = item
            else:
                j = int(torch.randint(seen, (1,), generator=g))
                if j < capacity:
                    slots[j] = item
    return slots, g


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_uniform_below_equals_one_randint_per_bound(n):
    bounds = torch.arange(300, 300 + n) * 3
    g = torch.Generator().manual_seed(11)
    expected = [int(torch.randint(int(b), (1,), generator=g)) for b in bounds]
    mine = torch.Generator().manual_seed(11)
    assert uniform_below(bounds.numpy(), mine).tolist() == expected
    assert torch.equal(mine.get_state(), g.get_state())  # the generator moved on exactly as far


def test_vectorised_reservoir_keeps_what_one_by_one_insertion_keeps():
    sizes = [1, 5, 16, 37, 64, 3, 200, 2]
    batches, start = [], 0
    for n in sizes * 3:
        batches.append(torch.arange(start, start + n))
        start += n
    buf = ReservoirBuffer(capacity=37, seed=3)
    for batch in batches:
        buf.add(batch.float().view(-1, 1), -batch.float().view(-1, 1))
    expected, g = _one_by_one(37, 3, batches)
    assert buf.raw[:, 0].long().tolist() == expected and buf.views[:, 0].long().tolist() == [-x for x in expected]
    assert buf.num_seen == start and len(buf) == 37 and torch.equal(buf.generator.get_state(), g.get_state())


def test_reservoir_work_per_batch_does_not_grow_with_the_batch():
    def counts(batch):
        buf = ReservoirBuffer(capacity=64, seed=0)
        buf.add(torch.rand(64, 3), torch.rand(64, 3))  # full: every later item draws
        x = torch.rand(batch, 3)
        with OpCounter() as ops, PythonCallCounter() as calls:
            buf.add(x, x)
            buf.sample(batch)
        return ops, calls.count

    (small, calls_small), (large, calls_large) = counts(16), counts(256)
    assert small.host_syncs == large.host_syncs == 0
    assert small.device_ops == large.device_ops
    assert per_sample_calls({16: calls_small, 256: calls_large}, batch=256) == 0


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
    seen = {}

    class Spy:  # runs before LUMP: the batch's raw images and clean second views
        def before_forward(self, strategy, **kw):
            seen["x"], seen["v2"] = strategy.mb_x.clone(), strategy.mb_views[1].clone()

    s = make_strategy(tiny_bench, [Spy(), plugin])
    exp = tiny_bench.benchmark.train_stream[0]
    exp.dataset = exp.dataset.subset(range(32))
    s.train(exp)
    assert len(plugin.buffer) == 16 and plugin.buffer.num_seen == 32
    # a single iteration (32 images): every slot holds one of its raw images with that image's second view
    for raw, view in zip(plugin.buffer.raw, plugin.buffer.views):
        i = int(((seen["x"] - raw).flatten(1).abs().sum(1)).argmin())
        assert torch.equal(seen["x"][i], raw)
        assert torch.equal(seen["v2"][i], view)


def test_loss_sees_the_mixup_of_clean_views_and_buffer_samples(tiny_bench):
    plugin = LUMPPlugin(mem_size=48, alpha=0.4, seed=0)
    steps = []

    class Clean:  # before LUMP: the clean views and the buffer as it is before this iteration's mixup
        def before_forward(self, strategy, **kw):
            size = len(plugin.buffer)
            steps.append({"clean": [v.clone() for v in strategy.mb_views],
                          "buffer": None if size == 0 else (plugin.buffer.raw[:size].clone(), plugin.buffer.views[:size].clone())})

    s = make_strategy(tiny_bench, [Clean(), plugin])
    sample, light, ssl_forward = plugin.buffer.sample, s.augmentation.light, s.model.ssl.forward

    def record_sample(n):
        steps[-1]["sampled"] = sample(n)
        return steps[-1]["sampled"]

    def record_light(x):
        steps[-1]["light"] = light(x)
        return steps[-1]["light"]

    def record_forward(backbone, v1, v2):
        steps[-1]["seen"] = (v1.clone(), v2.clone())
        steps[-1]["lambda"] = plugin.last_lambda
        return ssl_forward(backbone, v1, v2)

    plugin.buffer.sample, s.augmentation.light, s.model.ssl.forward = record_sample, record_light, record_forward
    for exp in tiny_bench.benchmark.train_stream[:2]:
        s.train(exp)

    assert steps[0]["buffer"] is None and steps[0]["lambda"] is None  # first batch of task 1: nothing to mix
    assert all(torch.equal(a, b) for a, b in zip(steps[0]["seen"], steps[0]["clean"]))
    mixed = steps[1:]
    assert len(mixed) == 3 and all(0 < st["lambda"] < 1 for st in mixed)
    assert len({st["lambda"] for st in mixed}) == len(mixed)  # one draw per batch
    for st in mixed:
        lam, (raw, view2) = st["lambda"], st["sampled"]
        k = len(raw)
        assert k == min(32, len(st["buffer"][0]))
        # the drawn items are distinct buffer entries, each raw image with its own stored view
        stored_raw, stored_views = st["buffer"]
        idx = [int((stored_raw - r).flatten(1).abs().sum(1).argmin()) for r in raw]
        assert len(set(idx)) == k
        assert all(torch.equal(stored_raw[i], r) and torch.equal(stored_views[i], v) for i, r, v in zip(idx, raw, view2))
        clean1, clean2 = st["clean"]
        seen1, seen2 = st["seen"]
        assert seen1.shape[0] == k
        assert torch.allclose(seen1, lam * clean1[:k] + (1 - lam) * st["light"], atol=1e-6)
        assert torch.allclose(seen2, lam * clean2[:k] + (1 - lam) * view2, atol=1e-6)
        assert not torch.allclose(seen1, clean1[:k])


def test_mem_size_zero_equals_finetune_bit_for_bit(tiny_bench):
    def run(plugins):
        torch.manual_seed(3)
        s = make_strategy(tiny_bench, plugins)
        for exp in tiny_bench.benchmark.train_stream[:2]:
            s.train(exp)
        return s.model.state_dict()

    torch.manual_seed(99)
    a, b = run([LUMPPlugin(mem_size=0, seed=5)]), run([])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lump_state_round_trips_and_refuses_a_plain_strategy():
    plugin = LUMPPlugin(mem_size=4, seed=1)
    plugin.buffer.add(torch.rand(6, 1, 4, 4), torch.rand(6, 1, 4, 4))
    plugin.rng.beta(0.4, 0.4)
    copy = LUMPPlugin(mem_size=4, seed=9)
    copy.load_state_dict(plugin.state_dict(), device="cpu", backbone=None)
    assert torch.equal(copy.buffer.raw, plugin.buffer.raw) and copy.buffer.num_seen == 6
    assert copy.rng.beta(0.4, 0.4) == plugin.rng.beta(0.4, 0.4)
    with pytest.raises(TypeError, match="LUMPPlugin needs a SelfSupervisedStrategy .*; object lacks mb_views"):
        plugin.before_forward(object())


def test_buffer_transform_is_the_reference_random_resized_crop():
    from avalanche_freeze.augmentations import TwoViewAugmentation

    aug = TwoViewAugmentation(image_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    crop = aug.weak[0]
    params = crop.forward_parameters(torch.Size([4000, 3, 32, 32]))
    boxes = params["src"]  # corners of each crop in the source image
    w = boxes[:, 1, 0] - boxes[:, 0, 0] + 1
    h = boxes[:, 2, 1] - boxes[:, 1, 1] + 1
    area = (w * h) / (32 * 32)
    # scale 0.08-1 (rounded to whole pixels), far below the strong views' 0.2; ratio 3/4-4/3
    assert float(area.min()) < 0.15 and float(area.min()) > 0.05 and float(area.max()) <= 1.0
    assert float((w / h).min()) > 0.6 and float((w / h).max()) < 1.7
    assert str(crop.flags["resample"]).lower().endswith("bicubic")
    out = aug.light(torch.rand(8, 3, 32, 32))
    assert out.shape == (8, 3, 32, 32) and float(out.min()) >= -1 - 1e-6 and float(out.max()) <= 1 + 1e-6
