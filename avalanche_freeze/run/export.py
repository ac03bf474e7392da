"""Take the trained backbone out of a run folder (``avalanche-freeze export``).

A run's ``checkpoint.pt`` is this package's own resumable format (a header, a checksum, then the
whole training state: optimizer, plugins, RNG; see :mod:`~avalanche_freeze.run.checkpoint`), so
``torch.load`` does not read it, by design: a truncated or foreign file is refused before
anything is unpickled. It keeps its name so that runs of earlier versions still resume. What a
user takes away is the backbone alone, written by :func:`export_run` as a plain state dict and a
JSON description (:mod:`~avalanche_freeze.backbone_files`).

Example:
    >>> path = export_run(Path("runs/demo"))               # doctest: +SKIP
    >>> backbone = load_backbone(path)                     # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from ..backbone_files import KEY_LAYOUTS, save_backbone
from ..backbones import CifarResNet18
from ..benchmarks import BENCHMARKS
from ..validation import check_choice
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint

__all__ = ["export_run"]

_STEM_KEY = "units.0.0.weight"


def backbone_state(model_state: Dict[str, Any]) -> Dict[str, Any]:
    """The backbone's entries of a checkpointed model state, without their prefix (``backbone.`` for the
    self-supervised model; whatever holds the backbone in a supervised one)."""
    stems = [k for k in model_state if k.endswith(_STEM_KEY)]
    if len(stems) != 1:
        raise CheckpointError(f"the checkpoint's model holds {len(stems)} CifarResNet18 backbones; accepted: one")
    prefix = stems[0][: -len(_STEM_KEY)]
    return {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix) and "units." in k
            or k == prefix + "frozen_units"}


def export_run(run_dir: Path, output: Optional[Path] = None, *, layout: str = "state_dict") -> Path:
    """Write the backbone of the run in ``run_dir`` (its last checkpoint: the end of the last task it
    finished) to ``output`` (default ``RUN_DIR/backbone.pt``) and its JSON description beside it, with
    the run's configuration, the tasks it trained and, when the run finished, its final accuracies.

    Args:
        run_dir: a run folder (``avalanche-freeze run --output``).
        output: the state dict's path (``.pt``; the description is the same path with ``.json``).
        layout: ``state_dict`` or ``torchvision`` keys (:mod:`~avalanche_freeze.backbone_files`).

    Raises:
        CheckpointError: ``run_dir`` holds no readable checkpoint, or its model has no backbone.
    """
    check_choice("layout", layout, KEY_LAYOUTS)
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        raise CheckpointError(f"{run_dir} holds no run checkpoint ({run_dir / CHECKPOINT_NAME} does not exist); "
                              "accepted: a folder written by avalanche-freeze run")
    checkpoint = load_checkpoint(run_dir, required=("config", "strategy", "next_task"))
    config = checkpoint["config"]
    spec = BENCHMARKS[config["data"]["benchmark"]]
    backbone = CifarResNet18(width=config["model"]["width"], in_channels=spec.channels)
    state = backbone_state(checkpoint["strategy"]["model"])
    backbone.load_state_dict(state)
    backbone.set_frozen_prefix(0)
    extra: Dict[str, Any] = {"source_run": str(run_dir), "tasks_trained": checkpoint["next_task"], "config": config}
    results = run_dir / "results.json"
    if results.is_file():
        finished = json.loads(results.read_text())
        extra["final_accuracy"] = finished.get("avg_acc")
        extra["accuracy_matrix_last_row"] = {k: m[-1] for k, m in finished.get("acc_matrix", {}).items() if m}
    output = Path(output) if output is not None else run_dir / "backbone.pt"
    return save_backbone(backbone.eval(), output, image_size=spec.image_size, mean=spec.mean, std=spec.std,
                         layout=layout, extra=extra)
