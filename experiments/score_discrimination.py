"""Can the freezing rule's correlation score tell a new domain from a familiar one?

For each seed: train tasks 1 and 2 of Split Fashion-MNIST (LUMP + the configured SSL method, the
configuration's budget), let the configured measure learn them as the freezing plugin does at the
end of a task, then score every unit on task 3 presented plain and under each task transform
(``permute``, ``invert``, ``highpass``; :mod:`avalanche_freeze.task_transforms`). The ``gradient``
measure sums the SSL-loss gradients of ``--iterations`` minibatches of the presented task (no
optimizer step; the model is restored between presentations), as during a check of the rule;
``subspace`` scores the units' outputs on the task's fixed images.

Prints, per seed and presentation, each unit's raw ratio, chance level, same-task ceiling and
calibrated score, then one summary line. A seed *separates* when every unit of the stem and
layer1 scores at least ``tau`` on the plain task and below ``tau`` under ``permute``, on the
score ``tau`` is compared with (``freeze.score``)::

    separated_seeds=N/S measure=M score=raw|calibrated tau=T plain_min=A permute_max=B

(``plain_min``: the lowest stem/layer1 score of the plain task over all seeds; ``permute_max``: the
highest under ``permute``.)

Usage:
    python experiments/score_discrimination.py [--config FILE] [--set key=value ...] [--seeds 0 1 ...]
        [--score raw|calibrated] [--transforms permute invert highpass] [--iterations 16]
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy, make_benchmark
from avalanche_freeze.analysis.results import format_table
from avalanche_freeze.freezing import CorrelationFreezePlugin, TaskImages
from avalanche_freeze.plugins import LUMPPlugin
from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.seeding import seed_everything
from avalanche_freeze.task_transforms import TASK_TRANSFORMS, task_transform

#: The units whose scores decide whether a seed separates: the stem and layer1.
EARLY_UNITS = ("stem", "layer1.0", "layer1.1")
PARTS = ("raw", "chance", "ceiling")


def _images(dataset, idx: Sequence[int]) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in idx])


def _fixed_draw(n: int, count: int, seed: int) -> List[int]:
    """The indices of the freezing plugin's fixed images of a task (its generator and order), for
    the raw images a transform is applied to before normalisation."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:count].tolist()


def score_presentations(cfg: ExperimentConfig, transforms: Sequence[str], iterations: int,
                        verbose: bool = False) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Per presentation of task 3 (``plain`` and each transform), per block-level unit: the score
    ``tau`` is compared with (``score``) and, for calibrated scores, its parts (``raw``, ``chance``,
    ``ceiling``)."""
    seed_everything(cfg.seed)
    data = cfg.data
    bench = make_benchmark(data.benchmark, data_root=data.root, n_experiences=data.n_experiences,
                           shuffle_classes=data.shuffle_classes, seed=cfg.seed,
                           max_train_per_task=data.max_train_per_task, max_test_per_task=data.max_test_per_task)
    if len(bench.benchmark.train_stream) < 3:
        raise ConfigError(f"data.n_experiences={len(bench.benchmark.train_stream)} is not accepted; accepted: "
                          "at least 3 (two tasks are learnt, the third is scored)", key="data.n_experiences")
    backbone = CifarResNet18(width=cfg.model.width, in_channels=bench.in_channels)
    train = cfg.train
    strategy = SelfSupervisedStrategy(
        model=backbone, augmentation=bench.augmentation, ssl=cfg.ssl.build(feature_dim=backbone.feature_dim,
                                                                           backbone=backbone),
        plugins=[LUMPPlugin(cfg.lump, seed=cfg.seed)], probe=None, evaluator=None, lr=train.lr,
        momentum=train.momentum, weight_decay=train.weight_decay, lr_schedule=train.lr_schedule,
        train_mb_size=train.batch_size, train_epochs=train.epochs)
    # the measure, fed at the end of each task as the plugin feeds it
    rule = CorrelationFreezePlugin(cfg.freeze, seed=cfg.seed)
    measure, n = rule.measure, cfg.freeze.n_samples
    everything = list(range(len(backbone.units)))
    for t in range(2):
        experience = bench.benchmark.train_stream[t]
        strategy.train(experience)
        # the images the plugin would learn the finished task from (its draw, held-out images and noise)
        measure.learn_task(backbone, rule.task_images(strategy, experience), open_units=everything)
        if verbose:
            print(f"  trained task {t + 1}", flush=True)
    task3 = bench.benchmark.train_stream[2].dataset.eval()
    fixed = _images(task3, _fixed_draw(len(task3), n, cfg.seed + 2))
    gen = torch.Generator().manual_seed(cfg.seed + 99)
    batches = [torch.randint(len(task3), (train.batch_size,), generator=gen).tolist() for _ in range(iterations)]
    names = backbone.unit_names(granularity="block")
    state = copy.deepcopy(strategy.model.state_dict())
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for presentation in ["plain", *transforms]:
        transform = task_transform("none" if presentation == "plain" else presentation, task=2, seed=cfg.seed)
        measure.restart_window()
        if measure.reads_gradients:
            strategy.model.train()
            for idx in batches:
                strategy.model.zero_grad(set_to_none=True)
                view1, view2 = bench.augmentation(transform(_images(task3, idx)))
                strategy.model(view1, view2).loss.backward()
                measure.observe_backward(backbone, open_units=everything)
            strategy.model.load_state_dict(state)  # BatchNorm statistics as before the presentation
        probe = bench.augmentation.normalize(transform(fixed))
        scores = measure.scores(backbone, TaskImages(samples=lambda p=probe: p, held_out=lambda: None,
                                                     noise_like=lambda x: torch.rand_like(x)))
        parts = measure.details()
        out[presentation] = {name: {"score": scores[i], **{k: parts[k][i] for k in parts}}
                             for i, name in enumerate(names)}
    strategy.model.zero_grad(set_to_none=True)
    return out


def separates(result: Dict[str, Dict[str, Dict[str, float]]], tau: float) -> bool:
    """Whether the stem and layer1 reach ``tau`` on the plain task and stay below it under ``permute``."""
    return all(result["plain"][u]["score"] >= tau and result["permute"][u]["score"] < tau for u in EARLY_UNITS)


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], type=Path, help="YAML config file (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--score", choices=("raw", "calibrated"), default="calibrated",
                   help="the score tau is compared with (freeze.score; default calibrated)")
    p.add_argument("--transforms", nargs="+", default=["permute", "invert", "highpass"],
                   help=f"presentations of task 3 besides plain (accepted: {', '.join(TASK_TRANSFORMS[1:])})")
    p.add_argument("--iterations", type=int, default=16, help="minibatches whose gradients a check sums (16)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    bad = [t for t in args.transforms if t not in TASK_TRANSFORMS[1:]]
    if bad or "permute" not in args.transforms:
        print(f"score_discrimination: error: --transforms {' '.join(args.transforms)} is not accepted; accepted: "
              f"{', '.join(TASK_TRANSFORMS[1:])}, permute among them", file=sys.stderr)
        return 2
    try:
        configs = [ExperimentConfig.from_sources(files=args.config, overrides=[
            *args.overrides, f"freeze.score={args.score}", f"seed={seed}"]) for seed in args.seeds]
    except ConfigError as exc:
        print(f"score_discrimination: error: {exc}", file=sys.stderr)
        return 2
    tau = configs[0].freeze.tau
    separated, plain_min, permute_max = 0, math.inf, -math.inf
    for cfg in configs:
        print(f"\nseed {cfg.seed}", flush=True)
        result = score_presentations(cfg, args.transforms, args.iterations, verbose=args.verbose)
        units = list(result["plain"])
        rows = [[presentation, part] + [_fmt(result[presentation][u].get(part)) for u in units]
                for presentation in result for part in (["score", *PARTS] if args.score == "calibrated" else ["score"])]
        print(format_table(["task 3", "value"] + units, rows))
        ok = separates(result, tau)
        separated += ok
        plain_min = min(plain_min, *(result["plain"][u]["score"] for u in EARLY_UNITS))
        permute_max = max(permute_max, *(result["permute"][u]["score"] for u in EARLY_UNITS))
        print(f"seed {cfg.seed}: {'separated' if ok else 'not separated'} (tau={tau})", flush=True)
    print(f"separated_seeds={separated}/{len(configs)} measure={configs[0].freeze.measure} score={args.score} "
          f"tau={tau} plain_min={plain_min:.3f} permute_max={permute_max:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
