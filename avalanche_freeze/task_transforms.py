"""Per-task image transforms: streams whose tasks differ, built from one data set.

Split Fashion-MNIST's tasks look alike to a small convolutional network, so a freezing rule
that freezes "what is correlated with earlier tasks" has nothing to tell apart there. A task
transform changes what one task's images look like, applied to every image of that task
(training, validation and test images alike) before the self-supervised augmentations, and the
result is still an ordinary Avalanche benchmark. With ``[none, none, permute, none, none]`` task 3
is a new domain among plain ones: a fixed schedule would freeze the shallow units there too,
a rule that reads task correlation should not.

==============  ===============================================================================
name            what a task's images become
==============  ===============================================================================
``none``        unchanged
``permute``     one fixed pixel permutation per task (Permuted MNIST): local structure destroyed
``invert``      ``1 - x``: every edge and texture kept, intensities reversed
``highpass``    ``0.5 + (x - blur(x))``: the fine detail only, on a grey background (Gaussian
                blur, sigma 1.5 pixels)
==============  ===============================================================================

From Python any callable works too: it receives a task's images as a float tensor
``[N, C, H, W]`` in ``[0, 1]`` and returns a tensor of the same shape in ``[0, 1]``.

Example:
    >>> import torch
    >>> x = torch.rand(4, 1, 8, 8)
    >>> y = task_transform("permute", task=2, seed=0)(x)
    >>> torch.equal(y, task_transform("permute", task=2, seed=0)(x)), torch.equal(y.sort().values, x.sort().values)
    (True, False)
    >>> torch.allclose(task_transform("invert", task=0, seed=0)(x), 1 - x)
    True
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .validation import ConfigError, check_choice

__all__ = ["TASK_TRANSFORMS", "TaskTransform", "apply_task_transforms", "task_transform"]

#: A task's transform: float images ``[N, C, H, W]`` in ``[0, 1]`` to the same.
TaskTransform = Callable[[Tensor], Tensor]

#: Names accepted by ``data.task_transforms``.
TASK_TRANSFORMS = ("none", "permute", "invert", "highpass")

_HIGHPASS_SIGMA = 1.5


def _permute(task: int, seed: int) -> TaskTransform:
    def apply(x: Tensor) -> Tensor:
        gen = torch.Generator().manual_seed(1_000_003 * seed + 7_919 * (task + 1))
        order = torch.randperm(x.shape[-2] * x.shape[-1], generator=gen).to(x.device)
        return x.flatten(-2)[..., order].reshape(x.shape)
    return apply


def _highpass(x: Tensor) -> Tensor:
    radius = int(3 * _HIGHPASS_SIGMA)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-offsets ** 2 / (2 * _HIGHPASS_SIGMA ** 2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    blurred = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return (0.5 + x - blurred).clamp(0, 1)


def task_transform(name: str, *, task: int, seed: int) -> TaskTransform:
    """The transform called ``name`` for task ``task`` (0-based) of a run seeded with ``seed``
    (``permute`` draws its permutation from both: fixed per task and run, other tasks and seeds get
    others)."""
    check_choice("task_transforms", name, TASK_TRANSFORMS)
    if name == "permute":
        return _permute(task, seed)
    if name == "invert":
        return lambda x: 1 - x
    if name == "highpass":
        return _highpass
    return lambda x: x


def apply_task_transforms(images: Tensor, task_of: Sequence[int], transforms: Sequence[Union[str, TaskTransform]],
                          *, seed: int, chunk: int = 4096) -> Tensor:
    """``uint8`` images ``[N, C, H, W]`` with each image's task transform applied.

    Args:
        images: the images, ``uint8``.
        task_of: per image, its task (0-based).
        transforms: per task, a name of :data:`TASK_TRANSFORMS` or a callable on float images in ``[0, 1]``.
        seed: the run's seed (``permute``'s permutations).
        chunk: images transformed at a time.
    """
    fns = [task_transform(t, task=i, seed=seed) if isinstance(t, str) else t for i, t in enumerate(transforms)]
    task_of = torch.as_tensor(list(task_of), dtype=torch.long)
    if len(task_of) != len(images):
        raise ValueError(f"{len(images)} images but {len(task_of)} task indices")
    out = images.clone()
    for t, (name, fn) in enumerate(zip(transforms, fns)):
        if name == "none":
            continue
        idx = (task_of == t).nonzero().flatten()
        for part in idx.split(chunk):
            x = images[part].float() / 255
            y = fn(x)
            if not isinstance(y, Tensor) or y.shape != x.shape:
                raise ConfigError(f"task transform of task {t + 1} returned {getattr(y, 'shape', type(y).__name__)}; "
                                  f"expected a tensor of shape {tuple(x.shape)}")
            out[part] = (y.clamp(0, 1) * 255).round().to(torch.uint8)
    return out
