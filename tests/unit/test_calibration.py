"""Calibrated correlation scores: 0 at chance, 1 at the same-task ceiling, the same at any dimension."""

import math

import pytest
import torch

from avalanche_freeze.backbones import CifarResNet18
from avalanche_freeze.freezing import CorrelationFreezePlugin, FreezeConfig
from avalanche_freeze.freezing.correlation import energy_basis, gradient_projection_ratio
from avalanche_freeze.freezing.gradient import chance_ratio, patch_ratio
from avalanche_freeze.freezing.measure import calibrate
from avalanche_freeze.validation import ConfigError

from ..conftest import make_strategy


def _geometry(d: int, k: int, seed: int = 0):
    """An orthonormal basis ``[d, k]`` learnt from patches inside a k-dimensional subspace, that
    subspace's directions, and its orthogonal complement."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))[0]
    inside, outside = q[:, :k], q[:, k:]
    patches = inside @ torch.randn(k, 4 * d, generator=gen, dtype=torch.float64)
    return energy_basis(patches @ patches.T, 0.999), inside, outside, gen


@pytest.mark.parametrize("d,k", [(9, 3), (64, 16), (144, 36)])
def test_inside_orthogonal_and_random_gradients_score_one_zero_and_chance(d, k):
    basis, inside, outside, gen = _geometry(d, k)
    assert basis.shape[1] == k
    g_in = torch.randn(8, k, generator=gen, dtype=torch.float64) @ inside.T
    g_out = torch.randn(8, d - k, generator=gen, dtype=torch.float64) @ outside.T
    assert gradient_projection_ratio(basis, g_in) == pytest.approx(1.0, abs=1e-4)
    assert gradient_projection_ratio(basis, g_out) == pytest.approx(0.0, abs=1e-4)
    # computed from random gradients, the chance level is the analytic sqrt(k / D)
    assert chance_ratio(basis, 8, seed=1) == pytest.approx(math.sqrt(k / d), abs=0.05)
    # the same-task ceiling: held-out patches of the subspace lie in the basis
    held_out = inside @ torch.randn(k, 2 * d, generator=gen, dtype=torch.float64)
    assert patch_ratio(basis, held_out @ held_out.T) == pytest.approx(1.0, abs=1e-4)


def test_the_calibrated_score_does_not_depend_on_the_dimension():
    """Same geometry (rank a quarter of the dimension, 64 % of the gradient's energy inside), two widths:
    the raw ratio is 0.8 at both, the chance level sqrt(1/4) = 0.5, so the calibrated score is 0.6."""
    values = []
    for d in (36, 256):
        k = d // 4
        basis, inside, outside, gen = _geometry(d, k, seed=d)
        a = torch.nn.functional.normalize(torch.randn(16, k, generator=gen, dtype=torch.float64), dim=1) @ inside.T
        b = torch.nn.functional.normalize(torch.randn(16, d - k, generator=gen, dtype=torch.float64), dim=1) @ outside.T
        g = 0.8 * a + 0.6 * b  # each row: 0.64 of its energy inside
        held_out = inside @ torch.randn(k, 2 * d, generator=gen, dtype=torch.float64)
        raw = gradient_projection_ratio(basis, g)
        assert raw == pytest.approx(0.8, abs=0.01)
        values.append(calibrate(raw, chance_ratio(basis, 16, seed=0), patch_ratio(basis, held_out @ held_out.T)))
    assert values[0] == pytest.approx(0.6, abs=0.05) and values[1] == pytest.approx(values[0], abs=0.05)
    # while the raw ratio of a random gradient falls with the dimension, its calibrated score stays near 0
    for d in (36, 256):
        basis, _, _, gen = _geometry(d, d // 4, seed=d + 1)
        g = torch.randn(16, d, generator=gen, dtype=torch.float64)
        assert calibrate(gradient_projection_ratio(basis, g), chance_ratio(basis, 16, seed=0), 1.0) < 0.1


def test_calibrated_scores_are_refused_for_cka_and_recorded_with_their_parts(tiny_bench):
    with pytest.raises(ConfigError, match="score='calibrated' is not accepted; accepted: raw with measure=cka"):
        FreezeConfig(measure="cka", decide_every=0, stability=0.0, score="calibrated")
    runs, after_task_1 = {}, {}
    for score in ("raw", "calibrated"):
        torch.manual_seed(0)
        plugin = CorrelationFreezePlugin(measure="gradient", score=score, tau=0.0, stability=0.0, decide_every=2,
                                         first_task=2, max_frozen_share=0.3, n_samples=16)
        s = make_strategy(tiny_bench, [plugin], train_mb_size=16)
        s.train(tiny_bench.benchmark.train_stream[0])
        after_task_1[score] = plugin.state_dict()
        s.train(tiny_bench.benchmark.train_stream[1])
        runs[score] = plugin
    raw, calibrated = runs["raw"].history[0], runs["calibrated"].history[0]
    assert "score_raw" not in raw and set(calibrated) >= {"score_raw", "score_chance", "score_ceiling"}
    stem = "stem"
    assert 0.0 < calibrated["score_chance"][stem] < calibrated["score_ceiling"][stem] <= 1.0
    # the recorded raw ratio is the raw run's score, and the calibrated score is computed from the parts
    assert calibrated["score_raw"][stem] == pytest.approx(raw["scores"][stem], abs=1e-6)
    assert calibrated["scores"][stem] == pytest.approx(calibrate(calibrated["score_raw"][stem],
                                                                 calibrated["score_chance"][stem],
                                                                 calibrated["score_ceiling"][stem]))
    state = after_task_1["calibrated"]
    assert state["patch_chances"] and state["patch_ceilings"] and not after_task_1["raw"]["patch_chances"]
    restored = CorrelationFreezePlugin(measure="gradient", score="calibrated")
    restored.load_state_dict(state, backbone=CifarResNet18(width=0.125, in_channels=1))
    assert restored.measure.chances == state["patch_chances"] and restored.measure.ceilings == state["patch_ceilings"]
