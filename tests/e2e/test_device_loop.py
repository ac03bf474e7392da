"""A training iteration of every self-supervised recipe makes the host wait for the device nowhere.

With ``augment.backend=batched``, one iteration in the middle of the second task (buffers full,
a frozen prefix in place, no decision of the rule at that iteration) reads no device value: on
CPU counted with the op counter (the reads ``.item()``, ``bool()``, ``nonzero`` dispatch), on
CUDA under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronisation.
"""

import pytest
import torch
from avalanche.core import SupervisedPlugin

from avalanche_freeze.host_proxies import OpCounter
from avalanche_freeze.run.config import ExperimentConfig
from avalanche_freeze.run.experiment import ExperimentRun

from ..conftest import TINY_SET, write_fmnist

RECIPES = {
    "finetune": [],
    "lump": [],
    "lump_freeze": ["freeze.decide_every=3"],  # decisions at iterations 3, 6, ...: iteration 1 is between two
    "freeze": ["freeze.schedule=[[1,0,3]]"],  # a fixed prefix of 3 units from the start of the second task
    "cassle": [],
    "der": [],
    "si": [],
    "pfr": [],
    "lump + data on device": ["train.data_on_device=true"],
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class _WatchOneIteration(SupervisedPlugin, supports_distributed=True):
    """Watches iteration 1 of the second task, from the end of iteration 0 to the end of iteration 1
    (so it covers loading, augmentation, the plugins, forward, backward and step)."""

    def __init__(self, device):
        super().__init__()
        self.device = device
        self.ops = None
        self.watched = False
        self.frozen = None

    def after_training_iteration(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        it = strategy.clock.train_epoch_iterations  # already advanced past the iteration that just ended
        if exp == 1 and it == 1 and self.ops is None:
            if self.device == "cuda":
                torch.cuda.set_sync_debug_mode("error")
            self.ops = OpCounter().__enter__()
            self.frozen = strategy.backbone.num_frozen_units
        elif self.ops is not None and not self.watched:
            if self.device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
            self.ops.__exit__(None, None, None)
            self.watched = True


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_one_training_iteration_reads_no_device_value(tmp_path, recipe, device):
    # random images in Fashion-MNIST's files: runs wherever the test runs (a GPU machine without the data)
    root = write_fmnist(tmp_path / "data", labels=[c % 10 for c in range(10 * 140)])
    overrides = TINY_SET + [f"strategy={recipe.split(' ')[0]}", "data.n_experiences=2", "augment.backend=batched", f"data.root={root}",
                            f"device={device}", "metrics.flops_every=1000", *RECIPES[recipe]]
    run = ExperimentRun.build(ExperimentConfig.from_sources(overrides=overrides), tmp_path / "run", verbose=False)
    watch = _WatchOneIteration(device)
    run.strategy.plugins.append(watch)
    try:
        run.run()
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert watch.watched
    assert watch.ops.host_syncs == 0, watch.ops.by_op
    assert watch.ops.device_ops > 100  # the iteration really ran inside the window
    if recipe == "freeze":
        assert watch.frozen == 3  # with a frozen prefix
