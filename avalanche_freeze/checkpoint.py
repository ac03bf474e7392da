"""Atomic, checksummed checkpoints of a run (one per completed task)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Dict

import torch

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the run."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(state: Dict[str, Any], directory: Path) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically, with a SHA-256 sidecar."""
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    path = directory / CHECKPOINT_NAME
    for target, payload in ((path, data), (path.with_suffix(".sha256"), _digest(data).encode())):
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    return path


def load_checkpoint(directory: Path) -> Dict[str, Any]:
    """Read and verify ``directory/checkpoint.pt`` (raises :class:`CheckpointError`)."""
    path = directory / CHECKPOINT_NAME
    sidecar = path.with_suffix(".sha256")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    if not sidecar.is_file():
        raise CheckpointError(f"checkpoint {path} has no checksum file {sidecar.name}; refusing to load it")
    data = path.read_bytes()
    if _digest(data) != sidecar.read_text().strip():
        raise CheckpointError(f"checkpoint {path} is corrupt (SHA-256 mismatch); refusing to load it")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
