"""Seeding and the state of the global random number generators (Python, NumPy, torch).

Example:
    >>> seed_everything(3)
    >>> state = rng_state()
    >>> a = torch.rand(1)
    >>> set_rng_state(state)
    >>> b = np.random.rand(), random.random()
    >>> set_rng_state(state)
    >>> torch.equal(a, torch.rand(1)) and b == (np.random.rand(), random.random())
    True
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["rng_state", "seed_everything", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The state of the global generators (for checkpoints), as tensors and plain values only,
    so that ``torch.load(..., weights_only=True)`` reads it: torch's CPU generator, NumPy's,
    Python's and, once CUDA is in use, every CUDA device's (device-side random draws, e.g. the
    batched augmentation's, resume where they stopped)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() and torch.cuda.is_initialized() else {}
    return {**cuda, "torch": torch.get_rng_state(),
            "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "python": [int(version), list(internal), gauss_next]}


def set_rng_state(state: dict) -> None:
    """Restore a state from :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
