"""Distributed data-parallel training under ``torchrun``, through Avalanche's ``DistributedHelper``.

``torchrun --nproc_per_node=N -m avalanche_freeze run ...`` starts N processes (on one node, or
on several: ``--nnodes``, each process on the GPU of its local rank); each calls
:func:`init_distributed`, which initialises the process group with Avalanche 0.6's
:data:`~avalanche.distributed.DistributedHelper` (gloo on CPU, NCCL on CUDA; every process
seeded with the run's seed, so models, class orders and probes are built identically). Then:

* the training forward goes through ``DistributedDataParallel`` (``DistributedHelper.wrap_model``,
  which finds unused parameters, so a frozen prefix simply receives no gradient), optionally
  with synchronised BatchNorm (CUDA only: PyTorch's ``SyncBatchNorm`` has no CPU kernel);
* Avalanche's training loaders shard every experience with a ``DistributedSampler``; the
  configured ``train.batch_size`` is the *global* batch, ``batch_size / N`` images per process;
* the SSL losses that need the whole batch gather the projections of every process
  (:func:`~avalanche_freeze.ssl.gather_batch`), so they equal the single-process loss;
* evaluation is not sharded: every process evaluates the full test streams with banks of the
  full training data, so the accuracy matrix does not depend on N;
* logs, ``results.json``, checkpoints and W&B belong to process 0; the per-process parts of
  the state (RNG streams, LUMP's per-process buffer) are gathered into its checkpoint, and
  every process resumes from it;
* plugins declare ``supports_distributed``; a run with one that does not is refused.

Example:
    >>> world_size(), is_main_process()  # not launched by torchrun
    (1, True)
    >>> per_process_batch(256)
    256
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Iterable, List, TypeVar

import torch
from avalanche.distributed import DistributedHelper
from torch import nn

__all__ = [
    "barrier",
    "broadcast_from_main",
    "check_distributed_plugins",
    "gather_from_all",
    "init_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "local_device",
    "per_process_batch",
    "rank",
    "shutdown",
    "world_size",
    "wrap_for_training",
]

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (which sets ``LOCAL_RANK``)."""
    return "LOCAL_RANK" in os.environ


def local_device(helper=DistributedHelper, *, set_cuda_device: bool = False) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when the helper uses CUDA (the GPU of its rank
    *on its node*), else the CPU. Avalanche 0.6's helper would take ``cuda:RANK``, which exists
    only on the first node of a multi-node launch; :func:`init_distributed` makes the helper use this.

    Example:
        >>> local_device()  # the helper does not use CUDA here
        device(type='cpu')
    """
    if not helper.use_cuda:
        return torch.device("cpu")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    if set_cuda_device:
        torch.cuda.set_device(device)
    return device


def init_distributed(*, seed: int, device: str) -> str:
    """Initialise the process group from torchrun's environment; returns this process's device.

    On any number of nodes: each process takes the GPU of its *local* rank (``cuda:LOCAL_RANK``):
    the helper's device choice is replaced by :func:`local_device` before the group starts;
    everything else stays Avalanche's ``DistributedHelper``.

    Args:
        seed: the run's seed (every process starts from it).
        device: the configured device, ``cpu`` or ``cuda``/``cuda:N`` (each process then takes
            the GPU of its local rank).

    Raises:
        ValueError: CUDA asked but absent.
    """
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; accepted: cpu")
    if not DistributedHelper.is_distributed:
        helper = DistributedHelper
        # instance attributes shadow the helper's methods: init_distributed and wrap_model call these
        helper.make_device = lambda set_cuda_device=False: local_device(helper, set_cuda_device=set_cuda_device)
        helper.get_device_id = lambda: int(os.environ.get("LOCAL_RANK", 0)) if helper.use_cuda else -1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            helper.init_distributed(random_seed=seed, backend="nccl" if cuda else "gloo", use_cuda=cuda)
    return str(DistributedHelper.make_device()) if cuda else "cpu"


def shutdown() -> None:
    """Leave the process group (a no-op when not distributed)."""
    if DistributedHelper.is_distributed:
        torch.distributed.destroy_process_group()


def world_size() -> int:
    """The number of processes (1 when not distributed)."""
    return DistributedHelper.world_size


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return DistributedHelper.rank


def is_main_process() -> bool:
    """Whether this process logs, checkpoints and writes results (rank 0, or not distributed)."""
    return DistributedHelper.is_main_process


def barrier() -> None:
    """Wait for every process (a no-op when not distributed)."""
    if DistributedHelper.is_distributed:
        DistributedHelper.barrier()


def broadcast_from_main(obj: T) -> T:
    """Process 0's ``obj`` on every process (``obj`` itself when not distributed)."""
    if not DistributedHelper.is_distributed:
        return obj
    return DistributedHelper.broadcast_object(obj)


def gather_from_all(obj: T) -> List[T]:
    """``obj`` of every process, in rank order (``[obj]`` when not distributed)."""
    if not DistributedHelper.is_distributed:
        return [obj]
    return DistributedHelper.gather_all_objects(obj)


def per_process_batch(batch_size: int) -> int:
    """The minibatch of one process for a global ``batch_size``.

    Raises:
        ValueError: ``batch_size`` is not a multiple of the number of processes.
    """
    n = world_size()
    if batch_size % n:
        raise ValueError(f"train.batch_size={batch_size} is the global batch and must split evenly over the "
                         f"{n} processes; accepted: a multiple of {n}")
    return batch_size // n


def check_distributed_plugins(plugins: Iterable[Any]) -> None:
    """Refuse plugins that do not declare ``supports_distributed`` when training distributed.

    Raises:
        ValueError: naming the plugins that do not support it.
    """
    if not DistributedHelper.is_distributed:
        return
    unsupported = sorted({type(p).__name__ for p in plugins if not getattr(p, "supports_distributed", False)})
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)} do not support distributed training; accepted under torchrun: "
                         "plugins and SSL methods with supports_distributed (LUMP, the freezing plugin, the health "
                         "check; the SSL methods of this package)")


def wrap_for_training(model: nn.Module, *, sync_batchnorm: bool) -> nn.Module:
    """The module the training forward goes through: ``model`` itself, or, when distributed, its
    ``DistributedDataParallel`` wrapper (``model`` must already be on its device; its BatchNorm
    layers become ``SyncBatchNorm`` first when ``sync_batchnorm`` and on CUDA). Parameters are
    shared with ``model``, so its ``state_dict`` and optimizer stay as they are."""
    if not DistributedHelper.is_distributed:
        return model
    if sync_batchnorm and next(model.parameters()).is_cuda:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the children in place, same Parameters
    return DistributedHelper.wrap_model(model)
