"""A reservoir-sampling buffer of (raw image, stored view) pairs, kept on the training device."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["ReservoirBuffer"]


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
        slots, sources = [], []
        for i in range(len(raw)):
            self.num_seen += 1
            if self._size < self.capacity:
                slots.append(self._size)
                self._size += 1
            else:
                j = int(torch.randint(self.num_seen, (1,), generator=self.generator))
                if j >= self.capacity:
                    continue
                slots.append(j)
            sources.append(i)
        if slots:
            # a later item may overwrite the slot of an earlier one in the same batch:
            # keep the last writer, as sequential insertion would
            last = {s: i for s, i in zip(slots, sources)}
            dst = torch.tensor(list(last.keys()), device=raw.device)
            src = torch.tensor(list(last.values()), device=raw.device)
            self.raw[dst] = raw[src].detach()
            self.views[dst] = views[src].detach()

    def sample(self, n: int) -> Tuple[Tensor, Tensor]:
        """``min(n, len(self))`` distinct items, uniformly without replacement."""
        if self._size == 0 or self.raw is None or self.views is None:
            raise RuntimeError("cannot sample from an empty buffer")
        k = min(n, self._size)
        idx = torch.randperm(self._size, generator=self.generator)[:k].to(self.raw.device)
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
