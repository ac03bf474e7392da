"""What the freezing rule keeps in memory and in checkpoints at GPU scale.

Builds the full-width CIFAR ResNet-18 (3 x 32 x 32 inputs, CIFAR-100's setting) and runs the
freezing plugin's own bookkeeping for ``--tasks`` tasks without training: after each task
the input-patch bases of every open unit (``gradient`` measure), the stability gate's
reference (one centred ``n x n`` Gram matrix per unit) and the gradient sums (one per conv
weight). Images are smooth random images (8 x 8 noise upsampled), a stand-in for natural
images: their patch spectra decay, so bases stay well below full rank. Prints the bytes of
each part after every task, the checkpoint size of the plugin's state, and the time spent
building the bases.

Usage:
    python experiments/freeze_memory.py [--tasks 20] [--n-samples 256] [--max-frozen-share 0.5]
        [--device cuda]

``--n-samples`` and ``--max-frozen-share`` default to the rule's defaults (256 and 0.5; 1.0
lets every unit be frozen, so every unit keeps bases).
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import torch
import torch.nn.functional as F

from avalanche_freeze.backbones import CifarResNet18
from avalanche_freeze.plugins import CorrelationFreezePlugin
from avalanche_freeze.backbones import unit_compute_shares
from avalanche_freeze.freezing.config import FreezeConfig
from avalanche_freeze.analysis.results import format_table


def smooth_images(n: int, seed: int, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=gen)
    return F.interpolate(low, size=32, mode="bilinear", align_corners=False).to(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--n-samples", type=int, default=FreezeConfig.n_samples)
    p.add_argument("--max-frozen-share", type=float, default=FreezeConfig.max_frozen_share)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    net = CifarResNet18(width=1.0, in_channels=3).to(args.device)
    plugin = CorrelationFreezePlugin(n_samples=args.n_samples, max_frozen_share=args.max_frozen_share)
    plugin.compute_shares = unit_compute_shares(net, torch.zeros(1, 3, 32, 32, device=args.device))
    rows = []
    for task in range(args.tasks):
        x = smooth_images(args.n_samples, task, args.device)
        start = time.perf_counter()
        plugin.measure.add_task_bases(net, x, open_units=plugin.open_units(net))
        seconds = time.perf_counter() - start
        plugin.start_window(net, x)
        net.zero_grad()
        net(x[:32]).pow(2).mean().backward()
        plugin.measure.observe_backward(net, open_units=plugin.open_units(net))
        held = plugin.memory_bytes()
        bases, grams, sums = held["bases"], held["gate"], held["gradient_sums"]
        buffer = io.BytesIO()
        torch.save(plugin.state_dict(), buffer)
        rows.append([task + 1, f"{bases / 2**20:.1f}", f"{grams / 2**20:.1f}", f"{sums / 2**20:.1f}",
                     f"{buffer.tell() / 2**20:.1f}", f"{seconds:.1f}"])
        print(format_table(["tasks", "bases MiB", "gate Grams MiB", "gradient sums MiB", "checkpoint MiB",
                            "bases s"], rows[-1:]), flush=True)
    print()
    print(format_table(["tasks", "bases MiB", "gate Grams MiB", "gradient sums MiB", "checkpoint MiB", "bases s"],
                       rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
