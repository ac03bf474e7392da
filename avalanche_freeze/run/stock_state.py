"""What Avalanche's stock supervised strategies learn across tasks, as tensors and plain values.

Avalanche's ``ReplayPlugin`` and ``DER`` keep their buffers as ``AvalancheDataset`` objects,
``EWCPlugin`` its importances as ``ParamData`` objects and ``LwFPlugin`` the previous model as a
module. None of them has a ``state_dict``. A checkpoint that pickled them whole could only be
read by unpickling arbitrary objects, which runs whatever code a crafted file holds.
These functions turn each into tensors, numbers, strings, lists and dicts, and put that state
back into the freshly built objects of a resumed run, so that it continues exactly as an
uninterrupted run would:

* a rehearsal buffer (``ExperienceBalancedBuffer``, DER's ``ClassBalancedBufferWithLogits``):
  per group, in order, its size, its reservoir weights and its items (images, labels, task
  labels, and DER's logits), rebuilt as a classification dataset with the same items in the same
  order. The items are read as the buffer's dataset returns them, so this assumes datasets
  without lazy transforms, as the package's benchmarks are (they hold image tensors);
* EWC: the saved parameters and importances per experience, as name -> tensor;
* LwF: the number of experiences seen, the previous model's ``state_dict`` (rebuilt as a copy of
  the current model with those weights) and the classes seen per task.

Example:
    >>> from avalanche.training.plugins import EWCPlugin
    >>> plugin = EWCPlugin(ewc_lambda=1.0)
    >>> plain = plugin_state(plugin)
    >>> plain
    {'kind': 'EWCPlugin', 'saved_params': [], 'importances': []}
    >>> load_plugin_state(EWCPlugin(ewc_lambda=1.0), plain, model=None)
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any, Dict, List, Optional

import torch
from avalanche.benchmarks.utils import make_avalanche_dataset
from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_classification_dataset
from avalanche.benchmarks.utils.data import AvalancheDataset
from avalanche.benchmarks.utils.data_attribute import TensorDataAttribute
from avalanche.benchmarks.utils.flat_data import FlatData
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.training.plugins import EWCPlugin, LwFPlugin, ReplayPlugin
from avalanche.training.storage_policy import BalancedExemplarsBuffer, ReservoirSamplingBuffer
from avalanche.training.utils import ParamData
from torch import Tensor, nn
from torch.utils.data import TensorDataset

__all__ = ["STOCK_PLUGINS", "buffer_state", "load_buffer_state", "load_plugin_state", "plugin_state"]

#: The stock plugins whose state is converted.
STOCK_PLUGINS = (ReplayPlugin, EWCPlugin, LwFPlugin)


# ---------------------------------------------------------------- buffers
def _dataset_items(dataset) -> Dict[str, Optional[Tensor]]:
    items = [dataset[i] for i in range(len(dataset))]
    if not items:
        return {"x": None, "y": None, "t": None, "logits": None}
    if len(items[0]) not in (3, 4):
        raise ValueError(f"a buffer item has {len(items[0])} fields; expected (x, y, task) or (x, y, task, logits)")
    stack = lambda k: torch.stack([torch.as_tensor(item[k]) for item in items])  # noqa: E731
    return {"x": stack(0), "y": stack(1).long(), "t": stack(2).long(), "logits": stack(3) if len(items[0]) == 4 else None}


def _dataset_from_items(items: Dict[str, Optional[Tensor]]) -> AvalancheDataset:
    if items["x"] is None:
        return concat_datasets([])
    dataset = _make_taskaware_classification_dataset(TensorDataset(items["x"], items["y"]), targets=items["y"],
                                                     task_labels=items["t"].tolist())
    if items["logits"] is not None:  # as DER's buffer adds them
        dataset = make_avalanche_dataset(dataset, data_attributes=[TensorDataAttribute(
            FlatData([items["logits"]], discard_elements_not_in_indices=True), name="logits", use_in_getitem=True)])
    return dataset


def buffer_state(policy: BalancedExemplarsBuffer) -> Dict[str, Any]:
    """A balanced rehearsal buffer (its groups of reservoir buffers) as plain state."""
    groups = []
    for key, group in policy.buffer_groups.items():
        if not isinstance(group, ReservoirSamplingBuffer):
            raise TypeError(f"buffer groups of type {type(group).__name__} are not accepted; accepted: "
                            "ReservoirSamplingBuffer")
        groups.append({"key": int(key), "max_size": int(group.max_size), "weights": group._buffer_weights.clone(),
                       **_dataset_items(group.buffer)})
    state = {"kind": type(policy).__name__, "max_size": int(policy.max_size), "groups": groups}
    if hasattr(policy, "_num_exps"):
        state["num_exps"] = int(policy._num_exps)
    if hasattr(policy, "seen_classes"):
        state["seen_classes"] = sorted(int(c) for c in policy.seen_classes)
    return state


def load_buffer_state(policy: BalancedExemplarsBuffer, state: Dict[str, Any]) -> None:
    """Put a :func:`buffer_state` back into ``policy`` (of the same type)."""
    if state["kind"] != type(policy).__name__:
        raise ValueError(f"the checkpoint's buffer is a {state['kind']}; this run's is a {type(policy).__name__}")
    policy.max_size = state["max_size"]
    policy.buffer_groups = {}
    for group in state["groups"]:
        buffer = ReservoirSamplingBuffer(group["max_size"])
        buffer.buffer = _dataset_from_items(group)
        buffer._buffer_weights = group["weights"]
        policy.buffer_groups[group["key"]] = buffer
    if "num_exps" in state:
        policy._num_exps = state["num_exps"]
    if "seen_classes" in state:
        policy.seen_classes = set(state["seen_classes"])


# ---------------------------------------------------------------- plugins
def _param_dicts(per_exp: Dict[int, Dict[str, ParamData]]) -> List[List[Any]]:
    return [[int(exp), {name: p.data.detach().cpu().clone() for name, p in params.items()}]
            for exp, params in per_exp.items()]


def _load_param_dicts(target: Dict[int, Dict[str, ParamData]], plain: List[List[Any]], device) -> None:
    target.clear()
    for exp, params in plain:
        target[exp] = {name: ParamData(name, init_tensor=tensor.to(device), device=device)
                       for name, tensor in params.items()}


def plugin_state(plugin) -> Dict[str, Any]:
    """A stock plugin's knowledge as plain state (:data:`STOCK_PLUGINS`)."""
    if isinstance(plugin, ReplayPlugin):
        return {"kind": "ReplayPlugin", "buffer": buffer_state(plugin.storage_policy)}
    if isinstance(plugin, EWCPlugin):
        return {"kind": "EWCPlugin", "saved_params": _param_dicts(plugin.saved_params),
                "importances": _param_dicts(plugin.importances)}
    if isinstance(plugin, LwFPlugin):
        lwf = plugin.lwf
        return {"kind": "LwFPlugin", "expcount": int(lwf.expcount),
                "prev_model": None if lwf.prev_model is None else
                {k: v.detach().cpu().clone() for k, v in lwf.prev_model.state_dict().items()},
                "prev_model_training": None if lwf.prev_model is None else bool(lwf.prev_model.training),
                "prev_classes_by_task": [[int(t), sorted(int(c) for c in cs)]
                                         for t, cs in lwf.prev_classes_by_task.items()]}
    raise TypeError(f"{type(plugin).__name__} is not accepted; accepted: "
                    + ", ".join(p.__name__ for p in STOCK_PLUGINS))


def load_plugin_state(plugin, state: Dict[str, Any], *, model: Optional[nn.Module], device="cpu") -> None:
    """Put a :func:`plugin_state` back into ``plugin`` (of the same type); ``model``: the strategy's
    model, of which LwF's previous model is a copy."""
    if state["kind"] != type(plugin).__name__:
        raise ValueError(f"the checkpoint holds a {state['kind']}'s state; this run's plugin is a {type(plugin).__name__}")
    if isinstance(plugin, ReplayPlugin):
        load_buffer_state(plugin.storage_policy, state["buffer"])
    elif isinstance(plugin, EWCPlugin):
        _load_param_dicts(plugin.saved_params, state["saved_params"], device)
        _load_param_dicts(plugin.importances, state["importances"], device)
    elif isinstance(plugin, LwFPlugin):
        lwf = plugin.lwf
        lwf.expcount = state["expcount"]
        lwf.prev_model = None
        if state["prev_model"] is not None:
            if model is None:
                raise ValueError("LwF's previous model needs the strategy's model to be rebuilt")
            lwf.prev_model = copy.deepcopy(model)
            lwf.prev_model.load_state_dict(state["prev_model"])
            lwf.prev_model.train(state["prev_model_training"])
        lwf.prev_classes_by_task = defaultdict(set, {t: set(cs) for t, cs in state["prev_classes_by_task"]})
