"""A task's training images kept on the training device, its mini-batches drawn there.

Avalanche's loader builds every mini-batch image by image (``__getitem__`` through the
dataset's wrappers, a few dozen Python calls per image), at every epoch. For data that fits in
device memory (Fashion-MNIST, CIFAR), :class:`DeviceBatches` reads the experience's dataset once,
keeps its images (as ``uint8`` when they are 8-bit images, else as they are) and labels on the
device, and serves each epoch's mini-batches with one device ``randperm`` and one gather per
batch: no per-image work and no host read after the first epoch's set-up. Avalanche's dataset
and benchmark objects stay the interface; only the way the strategy iterates them changes.

The batches hold the same images and follow the same rules as the loader's (shuffled every
epoch, the last incomplete batch dropped when ``drop_last``), but the shuffle is drawn on the
device, so the order, and a run's numbers, differ from the loader's. A dataset whose items are
random (a random transform inside the dataset) is refused: held once, it would stop varying.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.rand(10, 1, 4, 4), torch.arange(10), torch.zeros(10, dtype=torch.long))
    >>> batches = DeviceBatches(data, batch_size=4, device="cpu", drop_last=True)
    >>> [tuple(x.shape) for x, y, t in batches]
    [(4, 1, 4, 4), (4, 1, 4, 4)]
"""

from __future__ import annotations

from typing import Iterator, List, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["DeviceBatches"]

#: Items read at a time while the dataset is copied to the device.
_READ_BATCH = 1024


class DeviceBatches:
    """Mini-batches ``[images, labels, task labels]`` of a dataset held on ``device``.

    Args:
        dataset: items ``(image, label[, task label])`` with images in ``[0, 1]``; read once.
        batch_size: images per mini-batch.
        device: where the images live and the batches are drawn.
        shuffle: a new random order every epoch (from ``device``'s default generator, which
            ``torch.manual_seed`` seeds and checkpoints save).
        drop_last: drop the last incomplete batch.
        generator: a generator on ``device`` for the order instead of the default one.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, device: torch.device | str, shuffle: bool = True,
                 drop_last: bool = False, generator: Optional[torch.Generator] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator
        first = (lambda: torch.as_tensor(dataset[0][0])) if len(dataset) else None  # type: ignore[arg-type]
        if first is not None and not torch.equal(first(), first()):
            raise ValueError("the dataset's items are random (a transform in the dataset?): held on the device they "
                             "would be drawn once; use Avalanche's loader (data_on_device=False) for such data")
        columns: List[List[Tensor]] = []
        for batch in DataLoader(dataset, batch_size=_READ_BATCH, shuffle=False, num_workers=0):
            if not columns:
                columns = [[] for _ in batch]
            for column, values in zip(columns, batch):
                column.append(torch.as_tensor(values))
        if not columns:
            raise ValueError("cannot hold an empty dataset on the device")
        images = torch.cat(columns[0])
        as_bytes = images * 255
        in_range = bool((images >= 0).all() and (images <= 1).all())
        self.eight_bit = in_range and bool(torch.equal(as_bytes, as_bytes.round()))
        self.images = (as_bytes.round().to(torch.uint8) if self.eight_bit else images).to(self.device)
        self.labels = [torch.cat(c).to(self.device) for c in columns[1:]]

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[List[Tensor]]:
        n = len(self.images)
        if self.shuffle:
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            images = self.images[index]
            images = images.float().div_(255.0) if self.eight_bit else images
            yield [images, *(labels[index] for labels in self.labels)]
