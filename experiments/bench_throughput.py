"""Training throughput and peak memory: finetune, LUMP and LUMP + a fixed frozen prefix.

Trains the full-width CIFAR ResNet-18 (SimSiam, LUMP's heads: projector 2048, predictor 512)
at CIFAR size with the paper's batch (256 images, global over the processes) for a few
iterations of :class:`~avalanche_freeze.SelfSupervisedStrategy`'s real loop (data loading,
augmentation on the device, forward, backward, step) and reports training images per second
and peak memory (and the share of each iteration spent loading and augmenting the batch, the
rest being LUMP's mixup, forward, backward and step) for every combination of

* arm: ``finetune`` (no plugin), ``lump`` (LUMP's mixup; its buffer fills in the first
  iteration) and ``lump_freeze`` (LUMP with the first ``--frozen-units`` units frozen from the
  start: a fixed prefix, so the figure does not depend on the freezing decision),
* precision: ``32``, ``bf16`` (and ``16``),
* processes: 1 and N (``torchrun``, gloo on CPU, NCCL on CUDA),
* augmentation backend: ``kornia`` (default) and ``batched`` (``--augment-backends``;
  see :mod:`avalanche_freeze.augmentations`).

Every measurement runs in a fresh process (so peak memory is its own), the first
``--warmup`` iterations are not timed, the arms' order alternates from repeat to repeat,
and the table reports the median over ``--repeats``. Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the growth of the process's peak resident
memory during training on CPU. ``--synthetic`` feeds uniformly random CIFAR-shaped images
(throughput does not depend on pixel values); otherwise CIFAR-10 is read from ``--data-root``
(torchvision's layout).

Prints a table and one summary line:

    lump_over_finetune_time=A lump_over_lump_freeze_time=B bf16_speedup=C batched_speedup=D

(the time ratios at the first precision, first backend and 1 process; ``bf16_speedup``:
images/s at bf16 over 32 for LUMP, when both ran; ``batched_speedup``: LUMP's images/s with
the batched augmentation over kornia's, when both ran).

Usage:
    python experiments/bench_throughput.py --synthetic [--device cuda] [--precision 32 bf16]
        [--procs 1 2] [--arms finetune lump lump_freeze] [--batch-size 256] [--iters 5]
        [--warmup 2] [--repeats 3] [--frozen-units 5] [--width 1.0] [--channels-last]
        [--augment-backends kornia batched] [--data-on-device]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any, Dict, List

ARMS = ("finetune", "lump", "lump_freeze")
RESULT_TAG = "THROUGHPUT_RESULT "


# --------------------------------------------------------------------------- worker
def _measure(opts: Dict[str, Any]) -> Dict[str, Any]:
    """One measurement, in this process (one of N under torchrun)."""
    import psutil
    import torch
    from avalanche.core import SupervisedPlugin

    from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy
    from avalanche_freeze.benchmarks import ImageTensorDataset, benchmark_from_datasets, make_benchmark
    from avalanche_freeze.distributed import (init_distributed, is_main_process, launched_by_torchrun,
                                              per_process_batch, shutdown, world_size)
    from avalanche_freeze.plugins import LUMPPlugin
    from avalanche_freeze.backbones import unit_compute_shares
    from avalanche_freeze.efficiency import seconds_between, time_stamp

    device = opts["device"]
    if launched_by_torchrun():
        device = init_distributed(seed=0, device=device)
    torch.manual_seed(0)
    augment = {"backend": opts.get("augment", "kornia")}
    n_images = (opts["warmup"] + opts["iters"] + (2 + opts["iters"] if opts.get("proxies") else 0)) * opts["batch_size"]
    if opts["synthetic"]:
        images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8)
        data = ImageTensorDataset(images, [i % 2 for i in range(n_images)])
        bench = benchmark_from_datasets(data, data, name="synthetic-cifar", n_experiences=1, class_order=[0, 1],
                                        image_size=32, channels=3, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26),
                                        augmentation_options=augment)
    else:
        bench = make_benchmark("cifar10", data_root=opts["data_root"], n_experiences=1, max_train_per_task=n_images,
                               augmentation_options=augment)
    if len(bench.benchmark.train_stream[0].dataset) < n_images:
        raise SystemExit(f"the data holds fewer than the {n_images} training images needed")

    class Stamps(SupervisedPlugin, supports_distributed=True):
        """Time stamps after loading + augmentation and after each iteration: the host clock on CPU,
        CUDA events on CUDA (recorded without waiting, read once after training)."""

        def __init__(self):
            super().__init__()
            self.times: List[Any] = []
            self.loaded: List[Any] = []

        def seconds(self) -> None:
            """Turn the stamps into seconds since the first one (after training has finished)."""
            if self.times and not isinstance(self.times[0], float):
                torch.cuda.synchronize()
            origin = self.loaded[0]
            self.times = [seconds_between(origin, t) for t in self.times]
            self.loaded = [seconds_between(origin, t) for t in self.loaded]

        def before_training_iteration(self, strategy, **kwargs):  # the batch is loaded and augmented
            self.loaded.append(time_stamp(strategy.device))

        def after_training_iteration(self, strategy, **kwargs):
            self.times.append(time_stamp(strategy.device))

    class Proxies(SupervisedPlugin, supports_distributed=True):
        """Host-side proxies (``--proxies``): after the warm-up, ``iters`` iterations timed bare, then one
        counted with an op counter, one with a Python call counter, then ``iters`` under the profiler
        (the device's busy fraction); each window runs from the end of an iteration to the end of a
        later one, so it holds the loading and augmentation of its batches."""

        def __init__(self):
            super().__init__()
            self.done = 0
            self.active = None
            self.start = 0.0
            self.values: Dict[str, float] = {}

        def after_training_iteration(self, strategy, **kwargs):
            from avalanche_freeze.host_proxies import DeviceBusyProfiler, OpCounter, PythonCallCounter

            self.done += 1
            first, iters = opts["warmup"], opts["iters"]
            busy_ends = first + 2 * iters + 2  # the profiled window spans `iters` iterations
            if self.active is not None and (not isinstance(self.active, DeviceBusyProfiler) or self.done == busy_ends):
                self.active.__exit__(None, None, None)
                if isinstance(self.active, OpCounter):
                    self.values.update(device_ops=self.active.device_ops, host_syncs=self.active.host_syncs)
                elif isinstance(self.active, PythonCallCounter):
                    self.values["python_calls"] = self.active.count
                else:
                    self.values["device_busy"] = self.active.fraction
                self.active = None
            if self.done == first:
                self.start = time.perf_counter()
            elif self.done == first + iters:
                self.values["host_ms"] = 1000 * (time.perf_counter() - self.start) / iters
                self.active = OpCounter().__enter__()
            elif self.done == first + iters + 1:
                self.active = PythonCallCounter().__enter__()
            elif self.done == first + iters + 2:
                self.active = DeviceBusyProfiler(strategy.device).__enter__()

    backbone = CifarResNet18(width=opts["width"], in_channels=3)
    shares = unit_compute_shares(backbone, torch.zeros(1, 3, 32, 32))
    frozen = opts["frozen_units"] if opts["arm"] == "lump_freeze" else 0
    backbone.set_frozen_prefix(frozen)
    stamps = Proxies() if opts.get("proxies") else Stamps()
    plugins: list = [stamps] + ([LUMPPlugin(mem_size=256, seed=0)] if opts["arm"] != "finetune" else [])
    strategy = SelfSupervisedStrategy(
        model=backbone, augmentation=bench.augmentation, ssl="simsiam", ssl_options={"proj_dim": 2048, "pred_dim": 512},
        probe=None, train_mb_size=per_process_batch(opts["batch_size"]), train_epochs=1, lr=0.03, lr_schedule="none",
        device=device,
        plugins=plugins, evaluator=None, num_workers=opts["num_workers"], precision=opts["precision"],
        channels_last=opts["channels_last"], data_on_device=opts.get("data_on_device", False))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = psutil.Process().memory_info().rss
    strategy.train(bench.benchmark.train_stream[0])
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    if opts.get("proxies"):
        shutdown()
        print(RESULT_TAG + json.dumps({"arm": opts["arm"], "augment": augment["backend"],
                                       "batch_size": opts["batch_size"], **stamps.values}),
              flush=True)
        return stamps.values
    stamps.seconds()
    t, loaded = stamps.times, stamps.loaded
    # per timed iteration i: loading + augmentation = loaded[i] - times[i-1]; the rest (LUMP's mixup,
    # forward, backward, step) = times[i] - loaded[i]
    load_aug = [loaded[i] - t[i - 1] for i in range(opts["warmup"], len(t))]
    timed = t[-1] - t[opts["warmup"] - 1] if opts["warmup"] > 0 else None
    n_timed = len(t) - opts["warmup"]
    result = {**{k: opts[k] for k in ("arm", "precision", "batch_size")}, "augment": augment["backend"],
              "procs": world_size(),
              "images_per_s": n_timed * opts["batch_size"] / timed if timed else None,
              "seconds_per_iter": timed / n_timed if timed else None, "peak_bytes": peak,
              "load_augment_share": sum(load_aug) / timed if timed else None,
              "frozen_share": sum(shares[:frozen]),
              "device": torch.cuda.get_device_name() if cuda else "cpu"}
    main = is_main_process()
    shutdown()
    if main:
        print(RESULT_TAG + json.dumps(result), flush=True)
    return result


def _proxies(args) -> int:
    """``--proxies``: per arm, the host-side proxies of one iteration (median over repeats)."""
    from avalanche_freeze.analysis.results import format_table
    from avalanche_freeze.host_proxies import per_sample_calls

    width = args.width if args.width is not None else 0.125  # a tiny model: the host's work is what is left
    base = {"device": args.device, "synthetic": True, "data_root": "", "iters": args.iters, "warmup": args.warmup,
            "width": width, "frozen_units": args.frozen_units, "num_workers": args.num_workers,
            "channels_last": args.channels_last, "precision": args.precision[0], "proxies": True,
            "data_on_device": args.data_on_device}
    half = max(2, args.batch_size // 2)
    cells = list(product(args.augment_backends, args.arms))
    measured: Dict[tuple, List[Dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        for backend, arm in (cells if repeat % 2 == 0 else list(reversed(cells))):
            for batch in (args.batch_size, half):
                opts = {**base, "arm": arm, "augment": backend, "batch_size": batch}
                measured.setdefault((backend, arm, batch), []).append(_launch(opts, 1))
    median = lambda cell, batch, key: statistics.median(r[key] for r in measured[(*cell, batch)])  # noqa: E731
    rows, parts = [], []
    for cell in cells:
        values = {"device_ops_per_iter": median(cell, args.batch_size, "device_ops"),
                  "host_syncs_per_iter": median(cell, args.batch_size, "host_syncs"),
                  "per_sample_python_calls_per_iter": per_sample_calls(
                      {b: median(cell, b, "python_calls") for b in (half, args.batch_size)}, batch=args.batch_size),
                  "host_ms_per_iter": median(cell, args.batch_size, "host_ms"),
                  "device_busy_fraction": median(cell, args.batch_size, "device_busy")}
        digits = {"host_ms_per_iter": 1, "device_busy_fraction": 2}  # counts: none
        rows.append([*cell, *(f"{v:.{digits.get(k, 0)}f}" for k, v in values.items())])
        # the first backend's keys are the arm's name alone (as before the backends were added)
        name = cell[1] if cell[0] == args.augment_backends[0] else f"{cell[1]}@{cell[0]}"
        parts += [f"{name}.{k}={v:.2f}" if k == "device_busy_fraction" else f"{name}.{k}={v:.1f}"
                  for k, v in values.items()]
    print(f"host-side proxies: ResNet-18 width {width}, SimSiam, batch {args.batch_size} (per-sample calls from "
          f"batches {half} and {args.batch_size}), precision {args.precision[0]}, {args.device}, "
          f"{'data on the device' if args.data_on_device else 'Avalanche loader'}; median of "
          f"{args.repeats}")
    print(format_table(["augment", "arm", "device ops/iter", "host syncs/iter", "per-sample Python calls/iter",
                        "host ms/iter", "device busy"], rows))
    if args.json:
        args.json.write_text(json.dumps({"args": base, "raw": {"/".join(map(str, k)): rs for k, rs in measured.items()}},
                                        indent=2))
    print(" ".join(parts))
    return 0


# --------------------------------------------------------------------------- driver
def _launch(opts: Dict[str, Any], procs: int) -> Dict[str, Any]:
    script = [str(Path(__file__).resolve()), "--worker", json.dumps(opts)]
    if procs == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *script]
    env = dict(os.environ)
    if procs > 1 and opts["device"] == "cpu":  # share the cores, do not oversubscribe them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // procs))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if out.returncode != 0 or not lines:
        cell = f"{opts['arm']}/{opts.get('augment')}/{opts['precision']}/{procs} proc(s)"
        raise RuntimeError(f"measurement {cell} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def _summary(rows: List[Dict[str, Any]], precisions: List[str], backends: List[str]) -> str:
    def ips(arm, precision, procs=1, augment=backends[0]):
        return next((r["images_per_s"] for r in rows
                     if (r["arm"], r["precision"], r["procs"], r["augment"]) == (arm, precision, procs, augment)), None)

    def ratio(a, b):
        return f"{a / b:.3f}" if a and b else "nan"

    p0 = precisions[0]
    parts = [f"lump_over_finetune_time={ratio(ips('finetune', p0), ips('lump', p0))}",
             f"lump_over_lump_freeze_time={ratio(ips('lump_freeze', p0), ips('lump', p0))}",
             f"bf16_speedup={ratio(ips('lump', 'bf16'), ips('lump', '32'))}",
             f"batched_speedup={ratio(ips('lump', p0, augment='batched'), ips('lump', p0, augment='kornia'))}"]
    return " ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--synthetic", action="store_true", help="random CIFAR-shaped images (no dataset needed)")
    p.add_argument("--data-root", type=Path, help="CIFAR-10 in torchvision's layout (without --synthetic)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--precision", nargs="+", default=["32", "bf16"], choices=["32", "bf16", "16"])
    p.add_argument("--procs", nargs="+", type=int, default=[1], help="numbers of processes (torchrun)")
    p.add_argument("--batch-size", type=int, default=256, help="global batch (256)")
    p.add_argument("--iters", type=int, default=5, help="timed iterations (5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed first iterations (2)")
    p.add_argument("--repeats", type=int, default=3, help="repeats; the table reports the median (3)")
    p.add_argument("--frozen-units", type=int, default=5, help="prefix frozen in lump_freeze (5: stem, layer1, layer2)")
    p.add_argument("--width", type=float, default=None,
                   help="ResNet-18 width (default 1.0, full; 0.125 with --proxies)")
    p.add_argument("--num-workers", type=int, default=0, help="dataloader workers")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--augment-backends", nargs="+", default=["kornia"], choices=["kornia", "batched"],
                   help="augmentation backends to measure (kornia)")
    p.add_argument("--data-on-device", action="store_true",
                   help="hold the images on the device and draw the batches there (train.data_on_device)")
    p.add_argument("--json", type=Path, help="also write the measurements here")
    p.add_argument("--proxies", action="store_true",
                   help="instead of throughput: the host-side proxies per arm (device ops, host syncs, per-sample "
                        "Python calls, host ms per iteration, the device's busy fraction under torch.profiler; "
                        "default width 0.125 and synthetic data)")
    args = p.parse_args(argv)
    if args.worker:
        _measure(json.loads(args.worker))
        return 0
    if not args.synthetic and args.data_root is None and not args.proxies:
        p.error("give --synthetic or --data-root (CIFAR-10 in torchvision's layout)")
    if args.warmup < 1 or args.iters < 1:
        p.error("--warmup and --iters must be at least 1 (LUMP's buffer fills during the first iteration)")
    from avalanche_freeze.analysis.results import format_table

    if args.proxies:
        return _proxies(args)
    args.width = 1.0 if args.width is None else args.width
    base = {"device": args.device, "synthetic": args.synthetic, "data_root": str(args.data_root or ""),
            "batch_size": args.batch_size, "iters": args.iters, "warmup": args.warmup, "width": args.width,
            "frozen_units": args.frozen_units, "num_workers": args.num_workers, "channels_last": args.channels_last,
            "data_on_device": args.data_on_device}
    cells = list(product(args.procs, args.precision, args.augment_backends, args.arms))
    measured: Dict[tuple, List[Dict[str, Any]]] = {c: [] for c in cells}
    for repeat in range(args.repeats):
        order = cells if repeat % 2 == 0 else list(reversed(cells))
        for procs, precision, backend, arm in order:
            r = _launch({**base, "arm": arm, "precision": precision, "augment": backend}, procs)
            measured[(procs, precision, backend, arm)].append(r)
            print(f"[{repeat + 1}/{args.repeats}] {arm:11s} augment={backend:7s} precision={precision:4s} procs={procs}: "
                  f"{r['images_per_s']:.1f} images/s, peak {r['peak_bytes'] / 2**20:.0f} MiB", file=sys.stderr)
    rows = []
    for (procs, precision, backend, arm), rs in measured.items():
        rows.append({"arm": arm, "augment": backend, "precision": precision, "procs": procs, "device": rs[0]["device"],
                     "images_per_s": statistics.median(r["images_per_s"] for r in rs),
                     "seconds_per_iter": statistics.median(r["seconds_per_iter"] for r in rs),
                     "load_augment_share": statistics.median(r["load_augment_share"] for r in rs),
                     "peak_mib": statistics.median(r["peak_bytes"] for r in rs) / 2**20,
                     "frozen_share": rs[0]["frozen_share"]})
    header = ["arm", "augment", "precision", "procs", "images/s", "s/iter", "load+augment share", "peak MiB", "frozen fwd share",
              "device"]
    print(f"ResNet-18 width {args.width}, SimSiam, global batch {args.batch_size}, 32x32, "
          f"{'synthetic' if args.synthetic else 'CIFAR-10'} images; median of {args.repeats} "
          f"({args.iters} timed iterations after {args.warmup})")
    print(format_table(header, [[r["arm"], r["augment"], r["precision"], r["procs"], r["images_per_s"], f"{r['seconds_per_iter']:.3f}",
                                 f"{r['load_augment_share']:.2f}", r["peak_mib"], f"{r['frozen_share']:.2f}", r["device"]]
                                for r in rows]))
    if args.json:
        args.json.write_text(json.dumps({"args": base, "rows": rows, "raw": [r for rs in measured.values() for r in rs]},
                                        indent=2))
    print(_summary(rows, args.precision, args.augment_backends))
    return 0


if __name__ == "__main__":
    sys.exit(main())
