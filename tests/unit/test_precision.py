"""Mixed precision (autocast, float32 losses, the gradient scaler) and the channels_last layout."""

import pytest
import torch
from avalanche.core import SupervisedPlugin

from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.plugins import CorrelationFreezePlugin, LUMPPlugin
from avalanche_freeze.ssl import BarlowTwins, SimSiam

from ..conftest import make_strategy

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class _Recorder(SupervisedPlugin):
    """Records, per iteration, the SSL output dtypes and the gradient norm seen in ``after_backward``."""

    def __init__(self):
        super().__init__()
        self.feature_dtypes, self.loss_dtypes, self.grad_norms, self.scales = [], [], [], []

    def after_forward(self, strategy, **kwargs):
        self.feature_dtypes.append(strategy.ssl_output.features[0].dtype)
        self.loss_dtypes.append(strategy.ssl_output.loss.dtype)

    def after_backward(self, strategy, **kwargs):
        grads = [p.grad for p in strategy.backbone.parameters() if p.grad is not None]
        self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        if strategy.grad_scaler is not None:
            self.scales.append(strategy.grad_scaler.get_scale())


def _train_one_experience(bench, precision, device="cpu", **kwargs):
    torch.manual_seed(0)
    recorder = _Recorder()
    strategy = make_strategy(bench, plugins=[recorder, *kwargs.pop("plugins", [])], precision=precision,
                             device=device, **kwargs)
    strategy.train(bench.benchmark.train_stream[0])
    return strategy, recorder


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocasts_the_forward_and_keeps_the_loss_in_float32(tiny_bench, device):
    strategy, rec = _train_one_experience(tiny_bench, "bf16", device)
    assert strategy.grad_scaler is None
    assert set(rec.feature_dtypes) == {torch.bfloat16}  # the backbone ran under autocast
    assert set(rec.loss_dtypes) == {torch.float32}
    assert all(torch.isfinite(p).all() for p in strategy.model.parameters())
    assert all(p.dtype == torch.float32 for p in strategy.model.parameters())  # float32 master weights


@pytest.mark.parametrize("device", DEVICES)
def test_float16_scales_the_loss_and_plugins_see_unscaled_gradients(tiny_bench, device):
    _, rec32 = _train_one_experience(tiny_bench, "32", device)
    strategy, rec16 = _train_one_experience(tiny_bench, "16", device)
    assert isinstance(strategy.grad_scaler, torch.amp.GradScaler) and rec16.scales[0] == 2.0 ** 16
    assert set(rec16.feature_dtypes) == {torch.float16} and set(rec16.loss_dtypes) == {torch.float32}
    # the first iteration starts from the same weights: the gradient plugins read is the true one,
    # not 65536 times it
    assert rec16.grad_norms[0] == pytest.approx(rec32.grad_norms[0], rel=0.05)


def test_float32_is_the_default_and_precision_is_checked(tiny_bench):
    strategy, rec = _train_one_experience(tiny_bench, "32")
    assert strategy.grad_scaler is None and set(rec.feature_dtypes) == {torch.float32}
    with pytest.raises(ConfigError, match="precision.*'8'.*32, bf16, 16"):
        make_strategy(tiny_bench, precision="8")
    with pytest.raises(ConfigError, match="precision"):
        ExperimentConfig.from_sources(overrides=["train.precision=fp8"])
    assert ExperimentConfig.from_sources(overrides=["train.precision=16"]).train.precision == "16"


@pytest.mark.parametrize("method", [lambda: BarlowTwins(feature_dim=8, proj_dim=16),
                                    lambda: SimSiam(feature_dim=8, proj_dim=16, pred_dim=4)])
def test_ssl_losses_are_computed_in_float32_under_autocast(method):
    torch.manual_seed(0)
    m = method()
    f1, f2 = torch.randn(6, 8), torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.loss_from_features(f1, f2, view1=None, view2=None)
        assert out.projections[0].dtype == torch.bfloat16  # the heads ran in bfloat16 ...
        a, b = out.projections
    assert out.loss.dtype == torch.float32  # ... the loss did not
    if isinstance(m, BarlowTwins):  # the loss of the float32 copies of the bfloat16 projections
        assert float(out.loss) == pytest.approx(float(m.criterion(a.detach().float(), b.detach().float())), rel=1e-6)


def test_channels_last_model_and_views():
    from avalanche_freeze import CifarResNet18
    from avalanche_freeze.benchmarks import ImageTensorDataset, benchmark_from_datasets

    # three channels: with one, the NCHW and NHWC layouts of a tensor coincide
    data = ImageTensorDataset(torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8), [i % 2 for i in range(64)])
    bench = benchmark_from_datasets(data, data, name="rgb", n_experiences=1, class_order=[0, 1], image_size=16,
                                    channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    seen = []

    class Views(SupervisedPlugin):
        def before_forward(self, strategy, **kwargs):
            seen.append(all(v.is_contiguous(memory_format=torch.channels_last) for v in strategy.mb_views))

    strategy = make_strategy(bench, plugins=[Views()], channels_last=True, model=CifarResNet18(width=0.125))
    assert strategy.backbone.units[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    strategy.train(bench.benchmark.train_stream[0])
    assert seen and all(seen)


def test_freezing_ignores_gradients_of_skipped_float16_steps(tiny_bench):
    """An iteration whose gradients overflow (the scaler skips its step) adds nothing to the sums."""
    from avalanche_freeze import CifarResNet18

    plugin = CorrelationFreezePlugin(measure="gradient", decide_every=4)
    net = CifarResNet18(width=0.125, in_channels=1)
    net(torch.randn(2, 1, 16, 16)).sum().backward()
    plugin.measure.observe_backward(net, open_units=plugin.open_units(net))
    before = {i: [s.clone() for s in sums] for i, sums in plugin.measure.grad_sums.items()}
    assert before
    stem = net.units[0][0].weight
    stem.grad[0, 0, 0, 0] = float("inf")
    plugin.measure.observe_backward(net, open_units=plugin.open_units(net))
    for i, sums in plugin.measure.grad_sums.items():
        for s, b in zip(sums, before[i]):
            torch.testing.assert_close(s, b)
    stem.grad[0, 0, 0, 0] = 0.0
    plugin.measure.observe_backward(net, open_units=plugin.open_units(net))  # finite again: added
    assert not torch.equal(plugin.measure.grad_sums[0][0], before[0][0])


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_lump_and_freezing_train_in_mixed_precision(tiny_bench, precision):
    freeze = CorrelationFreezePlugin(decide_every=2, tau=0.0, stability=0.0, max_frozen_share=0.3, n_samples=32,
                                     first_task=2)
    strategy = make_strategy(tiny_bench, plugins=[LUMPPlugin(mem_size=64, seed=0), freeze], precision=precision)
    for exp in tiny_bench.benchmark.train_stream[:2]:
        strategy.train(exp)
    assert strategy.backbone.num_frozen_units > 0
    assert all(torch.isfinite(p).all() for p in strategy.model.parameters())
