"""Batched, on-device image augmentations for self-supervised training.

Datasets yield un-augmented image tensors in ``[0, 1]``; the strategy draws the
two random views of a whole minibatch at once on the training device (one
independent draw per sample) with `kornia <https://kornia.readthedocs.io>`_.
The parameters follow the SimSiam/LUMP recipe (random resized crop with scale
(0.2, 1), horizontal flip, colour jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale with
p=0.2, Gaussian blur with p=0.5 for images larger than 32 px as in LUMP's reference
code), as in lightly's ``SimSiamTransform``; lightly's own
transforms work on one PIL image at a time inside dataloader workers, which
cannot serve LUMP's buffer (augmented in batches on the device), so the same
recipe is expressed here with kornia's batched modules.

``backend="batched"`` draws the same distributions with
:class:`~avalanche_freeze.batched_views.BatchedViews`: a few whole-batch ops with no per-image
loop and no host read, the choice on a GPU, where kornia's per-image crops and host reads make
the training loop wait on the host. ``kornia`` stays the default because every result the
project reports was measured with it; the two backends draw different random numbers, so a
run's views (and its numbers) change with the backend.

Example:
    >>> import torch
    >>> aug = TwoViewAugmentation(image_size=28, channels=1, mean=(0.286,), std=(0.353,))
    >>> v1, v2 = aug(torch.rand(4, 1, 28, 28))
    >>> v1.shape, bool((v1 != v2).any())
    (torch.Size([4, 1, 28, 28]), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from .batched_views import BatchedViews
from .validation import check_choice, check_number

__all__ = ["AUGMENT_BACKENDS", "AugmentConfig", "TwoViewAugmentation"]

#: Implementations of the augmentations: ``kornia`` (default) and ``batched`` (see the module docs).
AUGMENT_BACKENDS = ("kornia", "batched")


@dataclass
class AugmentConfig:
    """The ``augment`` configuration section: the strong two-view augmentation's strengths.

    Attributes:
        min_scale: lower bound of the random-resized-crop area fraction (0.2).
        brightness, contrast, saturation, hue: colour-jitter strengths (0.4, 0.4, 0.4, 0.1;
            saturation and hue apply to RGB images only).
        color_jitter_p: probability of colour jitter (0.8).
        grayscale_p: probability of grayscale conversion, RGB only (0.2).
        blur_p: probability of Gaussian blur (``None``: the reference's rule, 0.5 for images
            larger than 32 px, i.e. Tiny-ImageNet, and 0 otherwise).
        backend: ``kornia`` (kornia's modules, the default) or ``batched`` (whole-batch ops
            without host reads, for GPUs; see the module docs).
    """

    min_scale: float = 0.2
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    color_jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: Optional[float] = None
    backend: str = "kornia"

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, AUGMENT_BACKENDS)
        check_number("min_scale", self.min_scale, above=0, at_most=1)
        for key in ("brightness", "contrast", "saturation"):
            check_number(key, getattr(self, key), at_least=0)
        check_number("hue", self.hue, at_least=0, at_most=0.5)
        for key in ("color_jitter_p", "grayscale_p"):
            check_number(key, getattr(self, key), at_least=0, at_most=1)
        check_number("blur_p", self.blur_p, at_least=0, at_most=1, optional=True)


class TwoViewAugmentation(nn.Module):
    """Two independent strong views, a light view and plain normalisation.

    Args:
        image_size: side of the (square) input images.
        channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        min_scale, brightness, contrast, saturation, hue, color_jitter_p, grayscale_p, blur_p: the strong
            views' options (see :class:`AugmentConfig`).
        backend: ``kornia`` or ``batched`` (see the module docs).

    ``forward(x)`` returns two strongly augmented, normalised views;
    :meth:`light` is LUMP's buffer transform (its reference's unsupervised-mode
    transform: random resized crop with scale 0.08-1 and ratio 3/4-4/3, bicubic, then
    horizontal flip and normalise); :meth:`normalize` is the evaluation transform.
    """

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        min_scale: float = AugmentConfig.min_scale,
        brightness: float = AugmentConfig.brightness,
        contrast: float = AugmentConfig.contrast,
        saturation: float = AugmentConfig.saturation,
        hue: float = AugmentConfig.hue,
        color_jitter_p: float = AugmentConfig.color_jitter_p,
        grayscale_p: float = AugmentConfig.grayscale_p,
        blur_p: Optional[float] = AugmentConfig.blur_p,
        backend: str = AugmentConfig.backend,
    ) -> None:
        super().__init__()
        AugmentConfig(min_scale=min_scale, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue,
                      color_jitter_p=color_jitter_p, grayscale_p=grayscale_p, blur_p=blur_p, backend=backend)
        if channels not in (1, 3):
            raise ValueError(f"channels={channels} is not accepted; accepted: 1, 3")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"mean/std have {len(mean)}/{len(std)} values; expected {channels} (one per channel)"
            )
        self.image_size = image_size
        self.channels = channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        if channels == 3:
            jitter: nn.Module = K.ColorJitter(brightness, contrast, saturation, hue, p=color_jitter_p)
            colour = [jitter, K.RandomGrayscale(p=grayscale_p)]
        else:
            colour = [K.ColorJitter(brightness, contrast, p=color_jitter_p)]
        if blur_p is None:
            blur_p = 0.5 if image_size > 32 else 0.0
        blur = []
        if blur_p > 0:  # the reference's kernel: image_size // 20 * 2 + 1 (7 at 64 px), sigma 0.1-2
            kernel = image_size // 20 * 2 + 1
            blur = [K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=blur_p)]
        self.strong = nn.Sequential(
            K.RandomResizedCrop((image_size, image_size), scale=(min_scale, 1.0)),
            K.RandomHorizontalFlip(),
            *colour,
            *blur,
        )
        self.backend = backend
        self.batched = BatchedViews(
            image_size=image_size, channels=channels, min_scale=min_scale, brightness=brightness, contrast=contrast,
            saturation=saturation, hue=hue, color_jitter_p=color_jitter_p, grayscale_p=grayscale_p, blur_p=blur_p,
        )
        self.weak = nn.Sequential(
            K.RandomResizedCrop((image_size, image_size), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                resample="BICUBIC"),
            K.RandomHorizontalFlip(),
        )

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected a batch of shape [B, {self.channels}, H, W]; got {tuple(x.shape)}"
            )

    def normalize(self, x: Tensor) -> Tensor:
        """Normalise a batch of images in ``[0, 1]`` (the evaluation transform)."""
        self._check(x)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def light(self, x: Tensor) -> Tensor:
        """LUMP's buffer transform: random resized crop (scale 0.08-1, bicubic), flip, normalise."""
        self._check(x)
        if self.backend == "batched":
            return self.normalize(self.batched.light(x))
        return self.normalize(self.weak(x).clamp(0, 1))  # bicubic overshoots; PIL's clamps to the pixel range

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        self._check(x)
        if self.backend == "batched":  # both views in one pass over the doubled batch
            first, second = self.normalize(self.batched.strong(torch.cat([x, x]))).chunk(2)
            return first, second
        return self.normalize(self.strong(x)), self.normalize(self.strong(x))
