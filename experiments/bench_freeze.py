"""LUMP vs LUMP + progressive task-correlated freezing, side by side in one process.

Both arms use the same configuration, data and seed; only the strategy differs.
Prints a table of totals and ratios (LUMP / LUMP+freeze) and ends with one
machine-readable line:

    backward_flops_ratio=X activation_bytes_ratio=Y time_ratio=Z knn_acc_delta=D forgetting_delta=F

Usage:
    python experiments/bench_freeze.py [--device cuda] [--config FILE] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avalanche_freeze.config import ConfigError, ExperimentConfig
from avalanche_freeze.experiment import ExperimentRun, run_or_reuse
from avalanche_freeze.results import format_table


def _arm(files, overrides, strategy, output: Path, reuse: bool) -> dict:
    cfg = ExperimentConfig.from_sources(files=files, overrides=list(overrides) + [f"strategy={strategy}"])
    # the same directory layout as compare_strategies.py, so grids can share finished arms
    arm_dir = output / strategy / f"seed{cfg.seed}"
    if reuse:
        return run_or_reuse(cfg, arm_dir)
    return ExperimentRun.build(cfg, arm_dir, verbose=False).run()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], type=Path, help="YAML config file (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default=None, help="cpu or cuda (same as --set device=...)")
    p.add_argument("--output", type=Path, default=Path("runs/bench_freeze"))
    p.add_argument("--reuse", action="store_true",
                   help="reuse finished arms in --output (e.g. from compare_strategies.py) instead of running "
                        "both side by side now; time ratios then compare runs made at different times")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    try:
        ExperimentConfig.from_sources(files=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"bench_freeze: error: {exc}", file=sys.stderr)
        return 2
    lump = _arm(args.config, overrides, "lump", args.output, args.reuse)
    freeze = _arm(args.config, overrides, "lump_freeze", args.output, args.reuse)

    def tot(r, k):
        return r["efficiency_total"][k]

    rows = [
        ("backward FLOPs (total)", tot(lump, "BwdFLOPs_Exp"), tot(freeze, "BwdFLOPs_Exp")),
        ("forward FLOPs (total)", tot(lump, "FwdFLOPs_Exp"), tot(freeze, "FwdFLOPs_Exp")),
        ("saved activations/iter (MiB, mean over tasks)", tot(lump, "SavedActBytes_Iter_mean") / 2**20,
         tot(freeze, "SavedActBytes_Iter_mean") / 2**20),
        ("training time (s)", tot(lump, "TrainTime_Exp"), tot(freeze, "TrainTime_Exp")),
        ("throughput (img/s, mean over tasks)",
         sum(e["Throughput_Exp"] for e in lump["efficiency"]) / len(lump["efficiency"]),
         sum(e["Throughput_Exp"] for e in freeze["efficiency"]) / len(freeze["efficiency"])),
    ]
    if "PeakGPUMem_max" in lump["efficiency_total"]:
        rows.append(("peak GPU memory (MiB)", tot(lump, "PeakGPUMem_max") / 2**20, tot(freeze, "PeakGPUMem_max") / 2**20))
    print()
    print(format_table(["metric", "LUMP", "LUMP+freeze", "ratio"],
                       [[name, f"{a:.4g}", f"{b:.4g}", f"{a / b:.3f}" if b else None] for name, a, b in rows]))
    accuracy_rows = []
    for key in lump["avg_acc"]:
        for label, field in (("final avg acc", "avg_acc"), ("forgetting (max)", "forgetting_max"),
                             ("forgetting (last)", "forgetting_last")):
            a, b = 100 * lump[field][key], 100 * freeze[field][key]
            accuracy_rows.append([f"{label} [{key}]", a, b, b - a])
    print()
    print(format_table(["accuracy (%)", "LUMP", "LUMP+freeze", "delta"], accuracy_rows))
    print("\nfrozen blocks per task (LUMP+freeze): " + ", ".join(str(e["frozen_blocks"]) for e in freeze["efficiency"]))
    ratio = lambda k: tot(lump, k) / tot(freeze, k)  # noqa: E731
    line = (
        f"backward_flops_ratio={ratio('BwdFLOPs_Exp'):.3f} "
        f"activation_bytes_ratio={ratio('SavedActBytes_Iter_mean'):.3f} "
        f"time_ratio={ratio('TrainTime_Exp'):.3f} "
        f"knn_acc_delta={100 * (freeze['avg_acc']['knn_ci'] - lump['avg_acc']['knn_ci']):.2f} "
        f"forgetting_delta={100 * (freeze['forgetting_max']['knn_ci'] - lump['forgetting_max']['knn_ci']):.2f}"
    )
    (args.output / "bench.json").write_text(json.dumps({"lump": lump, "lump_freeze": freeze, "line": line}, indent=2))
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
