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

import contextlib
import hashlib
import io
import os
import pickle
import re
import signal
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from ..protocols import ModelExtension, StatefulPlugin

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CheckpointError", "atomic_write", "defer_signal", "load_checkpoint",
           "restore_strategy_state", "restore_training_state", "save_checkpoint", "signals_deferred", "strategy_state",
           "training_state"]

#: Sections of :func:`strategy_state`.
STRATEGY_SECTIONS = ("model", "optimizer", "optimizer_params", "clock", "probe_evaluator", "plugins")

CHECKPOINT_NAME = "checkpoint.pt"
#: Version of the checkpoint file format (1: 0.1's two files, checkpoint.pt + checkpoint.sha256;
#: 2: 0.2's single file, whose payload could hold pickled objects; 3: tensors and plain values only).
CHECKPOINT_FORMAT = 3
_MAGIC = b"avalanche-freeze checkpoint\n"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the run."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that, whenever the process dies, ``path`` holds either
    its previous complete content or the new one (temporary file, fsync, rename, fsync of the folder)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class _Deferral:
    depth = 0
    pending: Optional[int] = None


@contextlib.contextmanager
def signals_deferred():
    """Hold back SIGINT / SIGTERM while the block runs (a checkpoint being written): a signal
    handler that asks :func:`defer_signal` first is told to wait, and the signal is raised again
    once the outermost block ends, so the interruption takes effect with the checkpoint complete.

    Example:
        >>> with signals_deferred():
        ...     defer_signal(15)  # a handler asking during the block: wait
        ...     _Deferral.pending = None  # (this example then drops the signal)
        True
        >>> defer_signal(15)
        False
    """
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
        if _Deferral.depth == 0 and _Deferral.pending is not None:
            signum, _Deferral.pending = _Deferral.pending, None
            signal.raise_signal(signum)


def defer_signal(signum: int) -> bool:
    """For signal handlers: ``True`` (and the signal is kept for later) inside
    :func:`signals_deferred`, ``False`` outside it (act now)."""
    if _Deferral.depth == 0:
        return False
    _Deferral.pending = _Deferral.pending or signum
    return True


def save_checkpoint(state: Dict[str, Any], directory: Path) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically: one file holding a header (format
    version and the payload's SHA-256) and the payload (``torch.save`` of tensors and plain values:
    :func:`load_checkpoint` reads it with ``weights_only=True``), replacing the previous
    checkpoint only once complete."""
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    header = _MAGIC + f"format {CHECKPOINT_FORMAT}\nsha256 {hashlib.sha256(data).hexdigest()}\n".encode()
    path = directory / CHECKPOINT_NAME
    with signals_deferred():  # Ctrl-C / SIGTERM take effect once the new checkpoint is complete
        atomic_write(path, header + data)
    return path


def load_checkpoint(directory: Path, *, required: Sequence[str] = ()) -> Dict[str, Any]:
    """Read and verify ``directory/checkpoint.pt``; ``required``: top-level keys it must hold.

    Raises:
        CheckpointError: missing, written by another format, corrupt, unreadable or incomplete.
    """
    path = directory / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    raw = path.read_bytes()
    if not raw.startswith(_MAGIC):
        old = " (format 1, written by avalanche-freeze 0.1)" if path.with_suffix(".sha256").is_file() else ""
        raise CheckpointError(f"{path} is not a checkpoint of this version{old}; refusing to load it "
                              "(start over with --overwrite)")
    lines = raw[len(_MAGIC):].split(b"\n", 2)
    found = lines[0].decode(errors="replace")
    if found != f"format {CHECKPOINT_FORMAT}":
        older = " (written by avalanche-freeze 0.2, whose checkpoints could hold code: not read)" \
            if found == "format 2" else ""
        raise CheckpointError(f"checkpoint {path} is in {found or 'no format'!r}{older}; this version reads "
                              f"'format {CHECKPOINT_FORMAT}' only (start over with --overwrite)")
    if len(lines) != 3 or not lines[1].startswith(b"sha256 "):
        raise CheckpointError(f"checkpoint {path} is truncated after its header; refusing to load it")
    data = lines[2]
    if hashlib.sha256(data).hexdigest().encode() != lines[1][len(b"sha256 "):]:
        raise CheckpointError(f"checkpoint {path} is corrupt (SHA-256 mismatch); refusing to load it")
    try:
        # tensors and plain values only: a crafted file (a valid header and digest are easy to
        # forge) can hold no code that runs here
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global| Please|$)", str(exc), re.M)
        reason = found.group(1).strip() if found else str(exc).strip().splitlines()[-1]
        raise CheckpointError(f"checkpoint {path} holds more than tensors and plain values; refusing to load it "
                              f"(nothing in it was run): {reason[:300]}") from exc
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: it lacks {', '.join(missing)}")
    return state


# ------------------------------------------------------------- strategy state
def training_state(strategy) -> Dict[str, Any]:
    """The model, the optimizer (its parameters by name) and the clock of any Avalanche strategy."""
    names = {id(p): n for n, p in strategy.model.named_parameters()}
    return {
        "model": strategy.model.state_dict(),
        "optimizer": strategy.optimizer.state_dict(),
        "optimizer_params": [[names[id(p)] for p in group["params"]] for group in strategy.optimizer.param_groups],
        "clock": {k: v for k, v in vars(strategy.clock).items() if isinstance(v, int)},
    }


def restore_training_state(strategy, state: Dict[str, Any]) -> None:
    """Put a :func:`training_state` back (the model's modules must already exist)."""
    strategy.model.load_state_dict(state["model"])
    # the optimizer holds exactly the parameters it held when saved (Avalanche's first
    # make_optimizer adds every parameter; plugins may have taken some out since)
    named = dict(strategy.model.named_parameters())
    for group, param_names in zip(strategy.optimizer.param_groups, state["optimizer_params"]):
        group["params"] = [named[n] for n in param_names]
    strategy.optimizer.load_state_dict(state["optimizer"])
    strategy.optimized_param_id = named
    for key, value in state["clock"].items():
        setattr(strategy.clock, key, value)


def strategy_state(strategy, plugins: Mapping[str, Any]) -> Dict[str, Any]:
    """The resumable state of ``strategy`` and of its named ``plugins`` (CPU tensors)."""
    return {
        **training_state(strategy),
        "probe_evaluator": strategy.probe_evaluator.state_dict(),
        "grad_scaler": None if strategy.grad_scaler is None else strategy.grad_scaler.state_dict(),
        "plugins": {name: p.state_dict() for name, p in plugins.items() if isinstance(p, StatefulPlugin)},
    }


def restore_strategy_state(strategy, plugins: Mapping[str, Any], state: Dict[str, Any]) -> None:
    """Put a :func:`strategy_state` back into a freshly built ``strategy`` with the same plugins."""
    missing = [k for k in STRATEGY_SECTIONS if k not in state]
    if missing:
        raise CheckpointError(f"the checkpoint's strategy state is incomplete: it lacks {', '.join(missing)}")
    missing = sorted(set(state["plugins"]) - set(plugins))
    if missing:
        raise CheckpointError(f"the checkpoint holds state of plugin(s) {', '.join(missing)} that this run does not have")
    try:
        _restore(strategy, plugins, state)
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint does not fit this run ({type(exc).__name__}: {exc})") from exc


def _restore(strategy, plugins: Mapping[str, Any], state: Dict[str, Any]) -> None:
    for plugin in plugins.values():  # modules plugins add to the model must exist before its weights load
        if isinstance(plugin, ModelExtension):
            plugin.attach(strategy)
    strategy.model.load_state_dict(state["model"])
    for name, plugin_state in state["plugins"].items():
        plugins[name].load_state_dict(plugin_state, device=strategy.device, backbone=strategy.backbone)
    restore_training_state(strategy, state)
    strategy.probe_evaluator.load_state_dict(state["probe_evaluator"])
    if strategy.grad_scaler is not None and state.get("grad_scaler") is not None:
        strategy.grad_scaler.load_state_dict(state["grad_scaler"])
