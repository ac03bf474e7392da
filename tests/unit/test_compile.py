"""train.compile: the compiled training step gives the eager step's losses, and freezing still works."""

import pytest
import torch

from ..conftest import make_strategy


class _Losses:
    def __init__(self):
        self.values = []

    def before_backward(self, strategy, **kwargs):
        self.values.append(strategy.loss.detach().clone())


def _train(bench, *, options=None, frozen=0, **kwargs):
    torch.manual_seed(0)
    losses = _Losses()
    s = make_strategy(bench, [losses], **kwargs)
    s.backbone.set_frozen_prefix(frozen)
    s.train(bench.benchmark.train_stream[0])
    return s, torch.stack(losses.values)


@pytest.mark.parametrize("frozen", [0, 2])
def test_a_compiled_step_gives_the_eager_losses(tiny_bench, frozen):
    _, eager = _train(tiny_bench, frozen=frozen)
    # aot_eager traces forward and backward as torch.compile does, without generating code (fast on CPU)
    s, compiled = _train(tiny_bench, frozen=frozen, compile=True, compile_options={"backend": "aot_eager"})
    assert isinstance(s.training_module, torch._dynamo.eval_frame.OptimizedModule)
    assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    # frozen units still get no gradient and keep their weights out of the step
    assert all(p.grad is None for u in s.backbone.units[:frozen] for p in u.parameters())


@pytest.mark.slow
def test_inductor_compiles_the_step_on_cpu(tiny_bench):
    _, eager = _train(tiny_bench)
    _, compiled = _train(tiny_bench, compile=True)  # inductor: generated kernels, about two minutes on 2 cores
    assert torch.allclose(compiled, eager, rtol=1e-2, atol=1e-3)
