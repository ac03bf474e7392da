"""Batched, on-device image augmentations for self-supervised training.

Datasets yield un-augmented image tensors in ``[0, 1]``; the strategy draws the
two random views of a whole minibatch at once on the training device (one
independent draw per sample) with `kornia <https://kornia.readthedocs.io>`_.
The parameters follow the SimSiam/LUMP CIFAR recipe (random resized crop with
scale (0.2, 1), horizontal flip, colour jitter 0.4/0.4/0.4/0.1 with p=0.8,
grayscale with p=0.2), as in lightly's ``SimSiamTransform``; lightly's own
transforms work on one PIL image at a time inside dataloader workers, which
cannot serve LUMP's buffer (augmented in batches on the device), so the same
recipe is expressed here with kornia's batched modules.

Example:
    >>> import torch
    >>> aug = TwoViewAugmentation(image_size=28, channels=1, mean=(0.286,), std=(0.353,))
    >>> v1, v2 = aug(torch.rand(4, 1, 28, 28))
    >>> v1.shape, bool((v1 != v2).any())
    (torch.Size([4, 1, 28, 28]), True)
"""

from __future__ import annotations

from typing import Sequence, Tuple

import kornia.augmentation as K
import torch
from torch import Tensor, nn

__all__ = ["TwoViewAugmentation"]


class TwoViewAugmentation(nn.Module):
    """Two independent strong views, a light view and plain normalisation.

    Args:
        image_size: side of the (square) input images.
        channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        min_scale: lower bound of the random-resized-crop area fraction.
        color_jitter_p: probability of colour jitter.
        grayscale_p: probability of grayscale conversion (RGB only).

    ``forward(x)`` returns two strongly augmented, normalised views;
    :meth:`light` is LUMP's buffer transform (padded random crop, flip,
    normalise); :meth:`normalize` is the evaluation transform.
    """

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        min_scale: float = 0.2,
        color_jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
    ) -> None:
        super().__init__()
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
            jitter: nn.Module = K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=color_jitter_p)
            colour = [jitter, K.RandomGrayscale(p=grayscale_p)]
        else:
            colour = [K.ColorJitter(0.4, 0.4, p=color_jitter_p)]
        self.strong = nn.Sequential(
            K.RandomResizedCrop((image_size, image_size), scale=(min_scale, 1.0)),
            K.RandomHorizontalFlip(),
            *colour,
        )
        pad = max(1, image_size // 8)
        self.weak = nn.Sequential(
            K.RandomCrop((image_size, image_size), padding=pad),
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
        """LUMP's buffer transform: padded random crop, horizontal flip, normalise."""
        self._check(x)
        return self.normalize(self.weak(x))

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        self._check(x)
        return self.normalize(self.strong(x)), self.normalize(self.strong(x))
