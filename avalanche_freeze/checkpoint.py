"""Checkpoints of a run: what a strategy's state is, and atomic, checksummed files.

:func:`strategy_state` captures everything a resumed run needs to continue exactly as an
uninterrupted one would: the model's weights, the optimizer (by parameter *name*, so the
exact set of optimized parameters comes back, whatever plugins removed or added), the
training clock, the probe evaluator and every stateful plugin through the one declared
protocol :class:`~avalanche_freeze.protocols.StatefulPlugin`; a plugin restores its own
effects (the freezing plugin re-freezes its prefix). :func:`restore_strategy_state`
puts it back into a freshly built strategy.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = save_checkpoint({"next_task": 2}, folder)
    >>> load_checkpoint(folder)["next_task"]
    2
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Dict, Mapping

import torch

from .protocols import ModelExtension, StatefulPlugin

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "load_checkpoint", "restore_strategy_state", "save_checkpoint",
           "strategy_state"]

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


# ------------------------------------------------------------- strategy state
def strategy_state(strategy, plugins: Mapping[str, Any]) -> Dict[str, Any]:
    """The resumable state of ``strategy`` and of its named ``plugins`` (CPU tensors)."""
    names = {id(p): n for n, p in strategy.model.named_parameters()}
    return {
        "model": strategy.model.state_dict(),
        "optimizer": strategy.optimizer.state_dict(),
        "optimizer_params": [[names[id(p)] for p in group["params"]] for group in strategy.optimizer.param_groups],
        "clock": {k: v for k, v in vars(strategy.clock).items() if isinstance(v, int)},
        "probe_evaluator": strategy.probe_evaluator.state_dict(),
        "plugins": {name: p.state_dict() for name, p in plugins.items() if isinstance(p, StatefulPlugin)},
    }


def restore_strategy_state(strategy, plugins: Mapping[str, Any], state: Dict[str, Any]) -> None:
    """Put a :func:`strategy_state` back into a freshly built ``strategy`` with the same plugins."""
    for plugin in plugins.values():  # modules plugins add to the model must exist before its weights load
        if isinstance(plugin, ModelExtension):
            plugin.attach(strategy)
    strategy.model.load_state_dict(state["model"])
    missing = sorted(set(state["plugins"]) - set(plugins))
    if missing:
        raise CheckpointError(f"the checkpoint holds state of plugin(s) {', '.join(missing)} that this run does not have")
    for name, plugin_state in state["plugins"].items():
        plugins[name].load_state_dict(plugin_state, device=strategy.device, backbone=strategy.backbone)
    # the optimizer holds exactly the parameters it held when saved (Avalanche's first
    # make_optimizer adds every parameter; plugins may have taken some out since)
    named = dict(strategy.model.named_parameters())
    for group, param_names in zip(strategy.optimizer.param_groups, state["optimizer_params"]):
        group["params"] = [named[n] for n in param_names]
    strategy.optimizer.load_state_dict(state["optimizer"])
    strategy.optimized_param_id = named
    for key, value in state["clock"].items():
        setattr(strategy.clock, key, value)
    strategy.probe_evaluator.load_state_dict(state["probe_evaluator"])
