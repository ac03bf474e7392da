"""The batched augmentation backend: same distributions as kornia's, torchvision's formulas, no host reads."""

import math

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from avalanche_freeze.augmentations import TwoViewAugmentation
from avalanche_freeze.batched_views import (BatchedViews, adjust_colour, crop_resize_flip, draw_crop_boxes,
                                            gaussian_blur)
from avalanche_freeze.host_proxies import OpCounter, PythonCallCounter, per_sample_calls
from avalanche_freeze.validation import ConfigError

N = 20000
QUANTILES = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])


def _views(channels=1, **options):
    settings = dict(image_size=32, channels=channels, min_scale=0.2, brightness=0.4, contrast=0.4, saturation=0.4,
                    hue=0.1, color_jitter_p=0.8, grayscale_p=0.2, blur_p=0.0)
    settings.update(options)
    return BatchedViews(**settings)


def _kornia_boxes(scale, ratio=(3 / 4, 4 / 3)):
    torch.manual_seed(0)
    src = K.RandomResizedCrop((32, 32), scale=scale, ratio=ratio).forward_parameters(torch.Size((N, 1, 32, 32)))["src"]
    w = src[:, 1, 0] - src[:, 0, 0] + 1
    h = src[:, 2, 1] - src[:, 1, 1] + 1
    return src[:, 0, 0], w, h


@pytest.mark.parametrize("scale", [(0.2, 1.0), (0.08, 1.0)])
def test_crop_boxes_follow_kornias_distribution(scale):
    x0, _, w, h = draw_crop_boxes(N, 32, 32, scale=scale, generator=torch.Generator().manual_seed(1))
    kx0, kw, kh = _kornia_boxes(scale)
    assert bool((w >= 1).all() and (x0 >= 0).all() and (x0 + w <= 32).all() and (h <= 32).all())
    ours, theirs = (w * h / 1024, kw * kh / 1024)
    assert torch.allclose(ours.quantile(QUANTILES), theirs.quantile(QUANTILES), atol=0.02)
    assert float(ours.min()) >= scale[0] - 0.05 and float(ours.max()) <= 1.0
    ratio_ours, ratio_theirs = (w / h).log(), (kw / kh).log()
    assert torch.allclose(ratio_ours.quantile(QUANTILES), ratio_theirs.quantile(QUANTILES), atol=0.03)
    # the corner is uniform over the positions that fit: its mean relative position is one half
    room = 32 - w
    relative = (x0[room > 0] / room[room > 0]).mean()
    relative_kornia = (kx0[(32 - kw) > 0] / (32 - kw)[(32 - kw) > 0]).mean()
    assert abs(float(relative) - 0.5) < 0.01 and abs(float(relative_kornia) - 0.5) < 0.01


def test_crop_falls_back_as_torchvision_when_no_candidate_fits():
    g = torch.Generator().manual_seed(0)
    x0, y0, w, h = draw_crop_boxes(500, 32, 32, scale=(1.0, 1.0), generator=g)
    assert bool((w == 32).all() and (h == 32).all() and (x0 == 0).all() and (y0 == 0).all())
    # a square image narrower than every allowed ratio keeps its width at the smallest ratio
    x0, y0, w, h = draw_crop_boxes(500, 32, 32, scale=(1.0, 1.0), ratio=(2.0, 3.0), generator=g)
    assert bool((w == 32).all() and (h == 16).all() and (x0 == 0).all())
    assert set(y0.tolist()) == set(range(17))


def test_crop_resize_flip_resamples_the_box():
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    full = tuple(torch.tensor([v] * 3, dtype=torch.float64) for v in (0, 0, 8, 8))
    flip = torch.tensor([False, True, False])
    out = crop_resize_flip(x, full, flip, size=8)
    assert torch.allclose(out[0], x[0]) and torch.allclose(out[1], x[1].flip(-1))
    # the left half (x0=0, w=4, full height) resized to 8x8: interior columns as torch's own bilinear resize
    half = tuple(torch.tensor([v] * 3, dtype=torch.float64) for v in (0, 0, 4, 8))
    out = crop_resize_flip(x, half, torch.zeros(3, dtype=torch.bool), size=8)
    expected = F.interpolate(x[:, :, :, :4], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(out[..., 1:7], expected[..., 1:7])
    # a box at the right edge, shifted: the resampled pixels come from that box
    right = tuple(torch.tensor([v] * 3, dtype=torch.float64) for v in (4, 2, 4, 4))
    out = crop_resize_flip(x, right, torch.zeros(3, dtype=torch.bool), size=4)
    assert torch.allclose(out, x[:, :, 2:6, 4:8])


def test_flip_rate_is_one_half_and_independent_per_image():
    views = _views(min_scale=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0)
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(4000, 1, 32, 32).contiguous()
    out = views.strong(ramp, generator=torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, 0] > out[:, 0, 0, -1]
    assert abs(float(flipped.float().mean()) - 0.5) < 0.03
    # neighbours in the batch are not coupled
    assert abs(float((flipped[1:] == flipped[:-1]).float().mean()) - 0.5) < 0.03


def test_jitter_factors_match_kornias_ranges():
    torch.manual_seed(0)
    theirs = K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0).forward_parameters(torch.Size((N, 3, 8, 8)))
    ours = _views(channels=3).jitter_factors(N, generator=torch.Generator().manual_seed(0))
    names = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
    for factor, name in zip(ours, names):
        assert torch.allclose(factor.quantile(QUANTILES), theirs[name].quantile(QUANTILES), atol=0.02), name
    assert float(ours[0].min()) >= 0.6 and float(ours[0].max()) <= 1.4
    assert float(ours[3].abs().max()) <= 0.1
    # per-image independence: brightness and contrast of one image, brightness of two neighbours
    assert abs(float(torch.corrcoef(torch.stack([ours[0], ours[1]]))[0, 1])) < 0.03
    assert abs(float(torch.corrcoef(torch.stack([ours[0][1:], ours[0][:-1]]))[0, 1])) < 0.03
    # grayscale images get brightness and contrast only
    assert _views(channels=1).jitter_factors(4)[2:] == (None, None)


def test_colour_steps_are_torchvisions_per_image():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    b, c, s = (torch.tensor(v) for v in ([0.6, 1.0, 1.3, 1.4], [0.7, 1.2, 1.0, 0.6], [1.4, 0.6, 0.9, 1.1]))
    hue = torch.tensor([-0.1, 0.05, 0.0, 0.08])
    order = (2, 0, 3, 1)
    out = adjust_colour(x, brightness=b, contrast=c, saturation=s, hue=hue, order=order)
    steps = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(4):
        expected = x[i]
        for step in order:
            expected = steps[step](expected, float((b, c, s, hue)[step][i]))
        assert torch.allclose(out[i], expected, atol=2e-3), i
    grey = torch.rand(2, 1, 8, 8)
    expected = TF.adjust_contrast(TF.adjust_brightness(grey[1], 1.3), 0.7)
    assert torch.allclose(adjust_colour(grey, brightness=torch.tensor([1.0, 1.3]), contrast=torch.tensor([1.0, 0.7]),
                                        order=(0, 1))[1], expected, atol=1e-6)


def test_blur_is_torchvisions_gaussian_blur_per_image():
    x = torch.rand(3, 3, 16, 16)
    sigma = torch.tensor([0.3, 1.0, 2.0])
    out = gaussian_blur(x, sigma, kernel_size=7)
    for i in range(3):
        expected = TF.gaussian_blur(x[i], [7, 7], [float(sigma[i])] * 2)
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_grayscale_probability_one_gives_equal_channels():
    out = _views(channels=3, grayscale_p=1.0).strong(torch.rand(8, 3, 32, 32))
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_a_fixed_generator_gives_identical_views():
    views = _views(channels=3, blur_p=0.5)
    x = torch.rand(16, 3, 32, 32)
    first = views.strong(x, generator=torch.Generator().manual_seed(3))
    again = views.strong(x, generator=torch.Generator().manual_seed(3))
    other = views.strong(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    light = views.light(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(light, views.light(x, generator=torch.Generator().manual_seed(3)))
    # identical images get different views (independent draws per image)
    same = views.strong(x[:1].expand(16, -1, -1, -1).contiguous(), generator=torch.Generator().manual_seed(5))
    assert len({tuple(v.flatten()[:64].tolist()) for v in same}) == 16


def _counts(aug, batch):
    x = torch.rand(batch, 3, 32, 32)
    with OpCounter() as ops, PythonCallCounter() as calls:
        aug(x)
        aug.light(x)
    return ops, calls.count


def test_batched_backend_has_no_host_reads_and_no_per_image_work():
    aug = TwoViewAugmentation(image_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, blur_p=0.5,
                              backend="batched")
    small, calls_small = _counts(aug, 8)
    large, calls_large = _counts(aug, 64)
    assert small.host_syncs == large.host_syncs == 0
    assert small.device_ops == large.device_ops
    assert per_sample_calls({8: calls_small, 64: calls_large}, batch=256) == 0
    # kornia's default backend, for contrast: reads the device and loops over images
    kornia_aug = TwoViewAugmentation(image_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, blur_p=0.5)
    kornia_small, _ = _counts(kornia_aug, 8)
    kornia_large, _ = _counts(kornia_aug, 64)
    assert kornia_large.host_syncs > 0 and kornia_large.device_ops > kornia_small.device_ops


def test_two_view_augmentation_batched_backend():
    aug = TwoViewAugmentation(image_size=28, channels=1, mean=(0.3,), std=(0.35,), backend="batched")
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(0)
    v1, v2 = aug(x)
    assert v1.shape == v2.shape == x.shape and not torch.equal(v1, v2)
    assert float(v1.min()) >= (0 - 0.3) / 0.35 - 1e-5 and float(v1.max()) <= (1 - 0.3) / 0.35 + 1e-5
    torch.manual_seed(0)
    again = aug(x)
    assert torch.equal(again[0], v1)  # seeded by torch.manual_seed, as the kornia backend
    assert math.isclose(float(aug.light(x).std()), float(aug.normalize(x).std()), rel_tol=0.5)
    with pytest.raises(ConfigError, match="backend.*kornia, batched"):
        TwoViewAugmentation(image_size=28, channels=1, mean=(0.3,), std=(0.35,), backend="dali")
