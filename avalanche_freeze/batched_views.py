"""The augmentation recipes as a few whole-batch tensor ops: no per-image loop, no host reads.

Every random parameter (crop box, flip, colour factors, blur width, which images a step
applies to) is drawn for the whole batch at once on the images' device, and every step is
branch-free: a step that an image skips is computed with neutral factors and discarded with
``torch.where``. So one call costs a fixed number of device ops whatever the batch size, and
the host never waits for the device (on CUDA, nothing here synchronises). Only the order of
the colour-jitter steps is drawn on the host (one draw per call, from torch's CPU generator or
a CPU ``generator`` passed in), as torchvision and kornia draw one order per call.

The distributions are the recipe's (torchvision's and kornia's, which
:class:`~avalanche_freeze.augmentations.TwoViewAugmentation` uses by default):

* random resized crop: area fraction uniform in ``scale``, log aspect ratio uniform in
  ``log(ratio)``, integer width/height, first of 10 candidates that fits, else the whole image;
  integer top-left corner uniform over the positions that fit; then the box is resampled to the
  output size with one ``affine_grid`` + ``grid_sample`` (bilinear, or bicubic for LUMP's buffer
  view), the horizontal flip folded into the same affine map;
* colour jitter (torchvision's formulas): brightness multiplies, contrast blends with the
  image's grayscale mean, saturation with its grayscale, hue shifts the HSV hue; factors
  uniform in ``[max(0, 1 - s), 1 + s]`` (hue in ``[-h, h]``), clamped to ``[0, 1]`` after
  every step;
* grayscale (RGB) with the ITU-R 601 luma weights; Gaussian blur with a per-image sigma
  uniform in ``[0.1, 2]`` as a separable grouped convolution with reflected borders.

Example:
    >>> views = BatchedViews(image_size=28, channels=1, min_scale=0.2, brightness=0.4, contrast=0.4,
    ...                      saturation=0.0, hue=0.0, color_jitter_p=0.8, grayscale_p=0.0, blur_p=0.0)
    >>> g = torch.Generator().manual_seed(0)
    >>> out = views.strong(torch.rand(4, 1, 28, 28), generator=g)
    >>> out.shape, bool(out.min() >= 0) and bool(out.max() <= 1)
    (torch.Size([4, 1, 28, 28]), True)
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_hsv
from torch import Tensor

__all__ = ["BatchedViews", "CropBoxes", "adjust_colour", "crop_resize_flip", "draw_crop_boxes",
           "gaussian_blur"]

#: ITU-R 601 luma weights (torchvision's ``rgb_to_grayscale``).
_LUMA = (0.299, 0.587, 0.114)
#: Candidates per image for the random resized crop (torchvision and kornia use 10).
_CROP_CANDIDATES = 10

CropBoxes = Tuple[Tensor, Tensor, Tensor, Tensor]


def _uniform(n: int, low: float, high: float, *, device: torch.device,
             generator: Optional[torch.Generator]) -> Tensor:
    return low + (high - low) * torch.rand(n, device=device, generator=generator)


def draw_crop_boxes(
    batch: int,
    height: int,
    width: int,
    *,
    scale: Tuple[float, float],
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None,
) -> CropBoxes:
    """Random-resized-crop boxes for a batch, drawn on ``device`` without a host read.

    Args:
        batch: number of boxes.
        height, width: input image size in pixels.
        scale: range of the box's area as a fraction of the image's.
        ratio: range of the box's aspect ratio (width / height), sampled log-uniformly.
        device: where the boxes live.
        generator: a generator on ``device`` (``None``: the device's default generator).

    Returns:
        ``(x0, y0, w, h)``: float tensors of shape ``[batch]`` holding integer pixel values,
        with ``0 <= x0``, ``x0 + w <= width`` (likewise for y).

    Example:
        >>> x0, y0, w, h = draw_crop_boxes(3, 32, 32, scale=(0.2, 1.0), generator=torch.Generator().manual_seed(0))
        >>> bool(((x0 + w) <= 32).all()) and bool((w >= 1).all())
        True
    """
    device = torch.device(device)
    area = height * width * _uniform(batch * _CROP_CANDIDATES, *scale, device=device, generator=generator)
    log_ratio = _uniform(batch * _CROP_CANDIDATES, math.log(ratio[0]), math.log(ratio[1]), device=device,
                         generator=generator)
    aspect = log_ratio.exp()
    w = (area * aspect).sqrt().round().view(batch, _CROP_CANDIDATES)
    h = (area / aspect).sqrt().round().view(batch, _CROP_CANDIDATES)
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    # the first candidate that fits: argmax of a strictly decreasing score over the fitting ones
    rank = torch.arange(_CROP_CANDIDATES, 0, -1, device=device)
    first = (fits * rank).argmax(dim=1, keepdim=True)
    any_fits = fits.any(dim=1)
    # fallback as torchvision's: the whole image when its own ratio is inside ``ratio``, else the
    # largest box of the nearest allowed ratio
    image_ratio = width / height
    if image_ratio < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif image_ratio > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(any_fits, w.gather(1, first).squeeze(1), torch.full_like(w[:, 0], fallback_w))
    h = torch.where(any_fits, h.gather(1, first).squeeze(1), torch.full_like(h[:, 0], fallback_h))
    # integer corner uniform over the width - w + 1 positions that fit
    x0 = (torch.rand(batch, device=device, generator=generator) * (width - w + 1)).floor().clamp(max=width - w)
    y0 = (torch.rand(batch, device=device, generator=generator) * (height - h + 1)).floor().clamp(max=height - h)
    return x0, y0, w, h


def crop_resize_flip(
    images: Tensor,
    boxes: CropBoxes,
    flip: Tensor,
    *,
    size: int,
    mode: str = "bilinear",
) -> Tensor:
    """Resample each image's box to ``size x size``, mirrored where ``flip`` is true: one ``grid_sample``.

    Args:
        images: ``[B, C, H, W]``.
        boxes: ``(x0, y0, w, h)`` in pixels, each ``[B]`` (see :func:`draw_crop_boxes`).
        flip: ``[B]`` booleans: mirror the output horizontally.
        size: output side in pixels.
        mode: ``bilinear`` or ``bicubic`` (``grid_sample``'s modes; borders are replicated).

    Example:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> full = tuple(torch.tensor([v, v]) for v in (0.0, 0.0, 8.0, 8.0))
        >>> torch.allclose(crop_resize_flip(x, full, torch.tensor([False, True]), size=8)[1], x[1].flip(-1))
        True
    """
    b, _, height, width = images.shape
    x0, y0, w, h = (v.to(images.dtype) for v in boxes)
    # output coordinate u in [-1, 1] (pixel edges, align_corners=False) -> input coordinate
    sign = 1.0 - 2.0 * flip.to(images.dtype)
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="border", align_corners=False)


def _grayscale(images: Tensor) -> Tensor:
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _per_image(factor: Tensor) -> Tensor:
    return factor.view(-1, 1, 1, 1)


def adjust_colour(
    images: Tensor,
    *,
    brightness: Optional[Tensor] = None,
    contrast: Optional[Tensor] = None,
    saturation: Optional[Tensor] = None,
    hue: Optional[Tensor] = None,
    order: Tuple[int, ...] = (0, 1, 2, 3),
) -> Tensor:
    """torchvision's colour-jitter steps with one factor per image, in ``order``.

    Args:
        images: ``[B, C, H, W]`` in ``[0, 1]`` (C = 1 or 3; saturation and hue need 3).
        brightness, contrast, saturation: ``[B]`` multiplicative factors (1 = unchanged).
        hue: ``[B]`` hue shifts in turns, within ``[-0.5, 0.5]`` (0 = unchanged).
        order: the steps' order, as indices into (brightness, contrast, saturation, hue);
            a step whose factor is ``None`` is skipped.

    Example:
        >>> x = torch.full((1, 1, 2, 2), 0.5)
        >>> adjust_colour(x, brightness=torch.tensor([1.5])).flatten().tolist()
        [0.75, 0.75, 0.75, 0.75]
    """
    out = images
    for step in order:
        if step == 0 and brightness is not None:
            out = (out * _per_image(brightness)).clamp(0, 1)
        elif step == 1 and contrast is not None:
            mean = _grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
            f = _per_image(contrast)
            out = (f * out + (1 - f) * mean).clamp(0, 1)
        elif step == 2 and saturation is not None:
            f = _per_image(saturation)
            out = (f * out + (1 - f) * _grayscale(out)).clamp(0, 1)
        elif step == 3 and hue is not None:
            hsv = rgb_to_hsv(out)  # hue in radians, [0, 2 pi)
            shifted = torch.remainder(hsv[:, :1] + _per_image(hue) * 2 * math.pi, 2 * math.pi)
            out = hsv_to_rgb(torch.cat([shifted, hsv[:, 1:]], dim=1)).clamp(0, 1)
    return out


def gaussian_blur(images: Tensor, sigma: Tensor, *, kernel_size: int) -> Tensor:
    """Blur each image with its own Gaussian (``sigma[i]``): a separable grouped convolution.

    Args:
        images: ``[B, C, H, W]``.
        sigma: ``[B]`` standard deviations in pixels.
        kernel_size: odd kernel side; borders are reflected.

    Example:
        >>> x = torch.rand(2, 3, 9, 9)
        >>> tuple(gaussian_blur(x, torch.tensor([0.5, 2.0]), kernel_size=3).shape)
        (2, 3, 9, 9)
    """
    b, c, height, width = images.shape
    radius = kernel_size // 2
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(taps.view(1, -1) ** 2) / (2 * sigma.to(images.dtype).view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [B*C, k]
    flat = F.pad(images.reshape(1, b * c, height, width), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)
    flat = F.conv2d(flat, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)
    return flat.view(b, c, height, width)


class BatchedViews:
    """The strong (SimSiam/LUMP) and light (LUMP's buffer) views of a batch as whole-batch ops.

    The options are :class:`~avalanche_freeze.augmentations.AugmentConfig`'s (resolved:
    ``blur_p`` a number). Randomness comes from ``generator`` when given (a generator on the
    images' device), else from the device's default generator, which
    ``torch.manual_seed`` seeds and the run's checkpoints save.

    Args:
        image_size: output side.
        channels: 1 or 3.
        min_scale: lower bound of the strong crop's area fraction.
        brightness, contrast, saturation, hue: colour-jitter strengths (saturation and hue
            apply to RGB only).
        color_jitter_p, grayscale_p, blur_p: probabilities of those steps per image.
    """

    def __init__(self, *, image_size: int, channels: int, min_scale: float, brightness: float, contrast: float,
                 saturation: float, hue: float, color_jitter_p: float, grayscale_p: float, blur_p: float) -> None:
        self.image_size = image_size
        self.channels = channels
        self.min_scale = min_scale
        self.jitter = (brightness, contrast, saturation if channels == 3 else 0.0, hue if channels == 3 else 0.0)
        self.color_jitter_p = color_jitter_p
        self.grayscale_p = grayscale_p if channels == 3 else 0.0
        self.blur_p = blur_p
        self.blur_kernel = image_size // 20 * 2 + 1

    def _draw(self, n: int, device: torch.device, generator: Optional[torch.Generator]) -> Tensor:
        return torch.rand(n, device=device, generator=generator)

    def _crop(self, images: Tensor, scale: Tuple[float, float], mode: str,
              generator: Optional[torch.Generator]) -> Tensor:
        b, _, height, width = images.shape
        boxes = draw_crop_boxes(b, height, width, scale=scale, device=images.device, generator=generator)
        flip = self._draw(b, images.device, generator) < 0.5
        return crop_resize_flip(images, boxes, flip, size=self.image_size, mode=mode)

    def jitter_factors(self, n: int, *, device: torch.device | str = "cpu",
                       generator: Optional[torch.Generator] = None) -> Tuple[Optional[Tensor], ...]:
        """Per-image (brightness, contrast, saturation, hue) factors; ``None`` for a disabled step."""
        device = torch.device(device)
        out = []
        for index, strength in enumerate(self.jitter):
            if strength <= 0:
                out.append(None)
            elif index == 3:
                out.append(_uniform(n, -strength, strength, device=device, generator=generator))
            else:
                out.append(_uniform(n, max(0.0, 1 - strength), 1 + strength, device=device, generator=generator))
        return tuple(out)

    @torch.no_grad()
    def strong(self, images: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """Crop (scale ``min_scale``-1), flip, colour jitter, grayscale, blur; values in ``[0, 1]``."""
        b, device = images.shape[0], images.device
        out = self._crop(images, (self.min_scale, 1.0), "bilinear", generator).clamp(0, 1)
        if self.color_jitter_p > 0 and any(s > 0 for s in self.jitter):
            factors = self.jitter_factors(b, device=device, generator=generator)
            # host draw, one per call: from ``generator`` when it is a CPU one, else torch's CPU generator
            host = generator if generator is not None and generator.device.type == "cpu" else None
            order = tuple(torch.randperm(4, generator=host).tolist())
            apply = (self._draw(b, device, generator) < self.color_jitter_p).view(-1, 1, 1, 1)
            out = torch.where(apply, adjust_colour(out, brightness=factors[0], contrast=factors[1],
                                                   saturation=factors[2], hue=factors[3], order=order), out)
        if self.grayscale_p > 0:
            apply = (self._draw(b, device, generator) < self.grayscale_p).view(-1, 1, 1, 1)
            out = torch.where(apply, _grayscale(out).expand_as(out), out)
        if self.blur_p > 0:
            sigma = _uniform(b, 0.1, 2.0, device=device, generator=generator)
            apply = (self._draw(b, device, generator) < self.blur_p).view(-1, 1, 1, 1)
            out = torch.where(apply, gaussian_blur(out, sigma, kernel_size=self.blur_kernel), out)
        return out

    @torch.no_grad()
    def light(self, images: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """LUMP's buffer view: crop (scale 0.08-1, bicubic), flip; values in ``[0, 1]``."""
        return self._crop(images, (0.08, 1.0), "bicubic", generator).clamp(0, 1)
