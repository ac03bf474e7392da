"""A reservoir-sampling buffer of (raw image, stored view) pairs, kept on the training device."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["ReservoirBuffer", "to_device", "uniform_below"]


def uniform_below(bounds: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """One uniform integer in ``[0, bounds[i])`` per bound, from a CPU generator, in one call.

    The result equals drawing ``torch.randint(b, (1,), generator=generator)`` for each bound in
    turn, and leaves the generator in the same state: those draws are the generator's successive
    32-bit outputs modulo the bound, and one 64-bit draw over the whole int64 range is two of
    those outputs (the first in the high half). A test holds this equality, so the buffer keeps
    the contents the one-by-one algorithm gave while drawing a whole batch at once.

    Args:
        bounds: int64 array of bounds, each in ``[1, 2**32)``.
        generator: a CPU generator.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> one_by_one = [int(torch.randint(b, (1,), generator=g)) for b in (5, 6, 7)]
        >>> uniform_below(np.array([5, 6, 7]), torch.Generator().manual_seed(0)).tolist() == one_by_one
        True
    """
    bounds = np.asarray(bounds, dtype=np.int64)
    n = len(bounds)
    pairs = torch.randint(-2**63, 2**63 - 1, (n // 2,), generator=generator, dtype=torch.int64).numpy()
    raw = pairs.view(np.uint64) ^ np.uint64(1 << 63)  # the draw as an unsigned 64-bit number
    draws = np.stack([raw >> np.uint64(32), raw & np.uint64(0xFFFFFFFF)], axis=1).reshape(-1).astype(np.int64)
    out = draws % bounds[: 2 * (n // 2)]
    if n % 2:  # the odd one out: a single 32-bit draw, as one-by-one
        last = torch.randint(int(bounds[-1]), (1,), generator=generator).numpy()
        out = np.concatenate([out, last])
    return out


def to_device(indices: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on ``device`` without making the host wait (pinned, non-blocking on CUDA)."""
    if torch.device(device).type == "cuda":
        return indices.pin_memory().to(device, non_blocking=True)
    return indices.to(device)


class ReservoirBuffer:
    """Fixed-capacity buffer holding a uniform sample of every item offered to it.

    Item ``n`` (counting from 1) enters with probability ``capacity / n``,
    replacing a uniformly chosen slot (Vitter's algorithm R). Randomness comes
    from the buffer's own generator, so using it never perturbs the global RNG.

    Args:
        capacity: number of slots (0 disables the buffer).
        seed: seed of the buffer's generator (``None``: drawn from torch's global RNG).

    Example:
        >>> buf = ReservoirBuffer(capacity=2, seed=0)
        >>> buf.add(torch.arange(5.0).view(5, 1), torch.zeros(5, 1))
        >>> len(buf), buf.num_seen
        (2, 5)
    """

    def __init__(self, *, capacity: int, seed: Optional[int] = 0) -> None:
        if capacity < 0:
            raise ValueError(f"capacity={capacity} must be >= 0")
        if seed is None:  # drawn from torch's global RNG: reproducible under torch.manual_seed
            seed = int(torch.randint(2**31 - 1, (1,)))
        self.capacity = capacity
        #: The seed of the buffer's generator (also used by plugins for their own draws).
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.num_seen = 0
        self.raw: Optional[Tensor] = None
        self.views: Optional[Tensor] = None
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @torch.no_grad()
    def add(self, raw: Tensor, views: Tensor) -> None:
        """Offer a batch of items (``raw[i]`` with its stored view ``views[i]``)."""
        if len(raw) != len(views):
            raise ValueError(f"raw and views differ in length: {len(raw)} vs {len(views)}")
        if self.capacity == 0:
            self.num_seen += len(raw)
            return
        if self.raw is None:
            self.raw = torch.empty((self.capacity, *raw.shape[1:]), dtype=raw.dtype, device=raw.device)
            self.views = torch.empty((self.capacity, *views.shape[1:]), dtype=views.dtype, device=views.device)
        assert self.views is not None
        # the bookkeeping runs on host values (numpy), so the device is only touched to copy the items
        n, start = len(raw), self.num_seen
        self.num_seen += n
        filled = max(0, min(n, self.capacity - start))  # while the buffer fills, the k-th item takes slot k - 1
        slots = np.concatenate([np.arange(start, start + filled),
                                uniform_below(np.arange(start + filled + 1, start + n + 1), self.generator)])
        self._size += filled
        sources = np.flatnonzero(slots < self.capacity)
        if len(sources):
            # a later item may overwrite the slot of an earlier one in the same batch: keep the last
            # writer of each slot, as one-by-one insertion would
            unique, last_in_reversed = np.unique(slots[sources][::-1], return_index=True)
            src = sources[::-1][last_in_reversed]
            index = to_device(torch.from_numpy(np.stack([unique, src])), raw.device)
            self.raw[index[0]] = raw[index[1]].detach()
            self.views[index[0]] = views[index[1]].detach()

    def sample(self, n: int) -> Tuple[Tensor, Tensor]:
        """``min(n, len(self))`` distinct items, uniformly without replacement."""
        if self._size == 0 or self.raw is None or self.views is None:
            raise RuntimeError("cannot sample from an empty buffer")
        k = min(n, self._size)
        idx = to_device(torch.randperm(self._size, generator=self.generator)[:k], self.raw.device)
        return self.raw[idx], self.views[idx]

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "num_seen": self.num_seen,
            "size": self._size,
            "raw": None if self.raw is None else self.raw.cpu(),
            "views": None if self.views is None else self.views.cpu(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict, device: Optional[torch.device] = None) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {state['capacity']} != configured {self.capacity}")
        self.num_seen = state["num_seen"]
        self._size = state["size"]
        self.raw = None if state["raw"] is None else state["raw"].to(device or "cpu")
        self.views = None if state["views"] is None else state["views"].to(device or "cpu")
        self.generator.set_state(state["generator"])
