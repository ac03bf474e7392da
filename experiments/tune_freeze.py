"""Choose the freezing rule's defaults on validation data, never on test accuracy.

Runs LUMP and LUMP + the freezing rule for each candidate setting on the *validation*
split (``data.eval_split=validation``: training images the runs do not train on) for
each of ``--seeds`` (default: the configured seed), and picks the candidate that freezes
the most backward compute while its validation kNN accuracy (both protocols), minus
LUMP's of the same seed and averaged over the seeds, stays within ``--tolerance`` points,
and its forgetting (max definition, both protocols) is on average at most LUMP's plus the
same tolerance. Prints a table (deltas: mean over seeds, and in how many seeds the
candidate was within tolerance) and ends with one line naming the choice (or, when no
candidate is within tolerance, ``chosen=none`` and the candidate whose largest loss is
smallest):

    chosen=freeze.stability=0.995 backward_flops_ratio=X knn_ci_delta=D knn_ti_delta=E

A run that fails (diverged training, an unreadable folder) is listed with its error and the
sweep goes on (exit 1): a seed whose LUMP run failed is left out, a candidate that failed in a
seed is not eligible.

Usage:
    python experiments/tune_freeze.py [--config FILE] [--set key=value ...]
        [--candidate "freeze.stability=0.99"] ... [--seeds 0 1 2] [--tolerance 0.3] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import mean
from typing import Dict, List, Optional

from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.run.experiment import RUN_FAILURES, run_or_reuse
from avalanche_freeze.analysis.results import KNN_PROTOCOLS as PROTOCOLS
from avalanche_freeze.analysis.results import format_table, paired_deltas

DEFAULT_CANDIDATES = ("freeze.stability=0.99", "freeze.stability=0.995", "freeze.stability=0.998")


def _run(files, overrides: List[str], label: str, output: Path, failed: List[str]) -> Optional[Dict]:
    """The run's results, or None when it fails (recorded in ``failed``; the sweep goes on)."""
    cfg = ExperimentConfig.from_sources(files=files, overrides=overrides)
    try:
        return run_or_reuse(cfg, output / label / f"seed{cfg.seed}")
    except RUN_FAILURES as exc:
        failed.append(f"{label} seed {cfg.seed}: {exc}")
        print(f"tune_freeze: {label} seed {cfg.seed} FAILED: {exc}", file=sys.stderr, flush=True)
        return None


def shortfall(acc: Dict[str, float], fgt: Dict[str, float]) -> float:
    """The largest accuracy loss or forgetting increase against LUMP, in points (<= 0: none)."""
    return max(max(-acc[k], fgt[k]) for k in PROTOCOLS)


def within_tolerance(acc: Dict[str, float], fgt: Dict[str, float], tolerance: float) -> bool:
    """Accuracy at least LUMP's minus ``tolerance`` and forgetting at most LUMP's plus it."""
    return shortfall(acc, fgt) <= tolerance


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], type=Path, help="YAML config file (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--candidate", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help=f"a setting of the rule to try (repeatable; default: {', '.join(DEFAULT_CANDIDATES)})")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds to average the deltas over (default: the configured seed)")
    p.add_argument("--tolerance", type=float, default=0.3, help="accuracy points a candidate may lose (0.3)")
    p.add_argument("--output", type=Path, default=Path("runs/tune_freeze"))
    args = p.parse_args(argv)
    base = list(args.overrides) + ["data.eval_split=validation"]
    candidates = args.candidate or list(DEFAULT_CANDIDATES)
    try:
        for c in candidates:
            ExperimentConfig.from_sources(files=args.config, overrides=base + c.split(",") + ["strategy=lump_freeze"])
        seeds = args.seeds or [ExperimentConfig.from_sources(files=args.config, overrides=base).seed]
    except ConfigError as exc:
        print(f"tune_freeze: error: {exc}", file=sys.stderr)
        return 2
    lumps, results, failed = {}, {}, []
    for seed in seeds:  # seed by seed, so that an interrupted sweep has compared every candidate
        lumps[seed] = _run(args.config, base + ["strategy=lump", f"seed={seed}"], "lump", args.output, failed)
        for c in candidates:
            results[c, seed] = _run(args.config, base + c.split(",") + ["strategy=lump_freeze", f"seed={seed}"],
                                    "rule_" + c.replace("=", "-"), args.output, failed)
    seeds = [seed for seed in seeds if lumps[seed] is not None]  # a seed without LUMP has nothing to compare with
    if not seeds:
        print("tune_freeze: no seed's LUMP run finished:\n" + "\n".join(failed), file=sys.stderr)
        return 1
    rows, eligible, closest = [], [], []
    for c in candidates:
        broken = [seed for seed in seeds if results[c, seed] is None]
        if broken:  # a candidate that fails in a seed is not eligible, whatever the others show
            rows.append([c, *["-"] * 6, f"FAILED (seed {broken[0]})", "no"])
            continue
        per_seed = [(paired_deltas(lumps[seed], results[c, seed]), results[c, seed]) for seed in seeds]
        ratio = mean(d[0] for d, _ in per_seed)
        acc = {k: mean(d[1][k] for d, _ in per_seed) for k in PROTOCOLS}
        fgt = {k: mean(d[2][k] for d, _ in per_seed) for k in PROTOCOLS}
        ok = within_tolerance(acc, fgt, args.tolerance)
        seeds_ok = sum(within_tolerance(d[1], d[2], args.tolerance) for d, _ in per_seed)
        frozen = " / ".join(",".join(str(e["frozen_blocks"]) for e in r["efficiency"]) for _, r in per_seed)
        rows.append([c, f"{ratio:.3f}", acc["knn_ci"], acc["knn_ti"], fgt["knn_ci"], fgt["knn_ti"],
                     frozen, f"{seeds_ok}/{len(per_seed)}", "yes" if ok else "no"])
        if ok:
            eligible.append((ratio, c, acc))
        closest.append((shortfall(acc, fgt), c))
    print(format_table(["candidate", "bwd FLOPs ratio", "d acc CI", "d acc TI", "d fgt CI", "d fgt TI",
                        "frozen blocks/task", "seeds within", "within tolerance"], rows))
    for failure in failed:
        print(f"FAILED: {failure}")
    if eligible:
        ratio, choice, acc = max(eligible)
        line = (f"chosen={choice} backward_flops_ratio={ratio:.3f} "
                f"knn_ci_delta={acc['knn_ci']:.2f} knn_ti_delta={acc['knn_ti']:.2f}")
    elif not closest:
        line = "chosen=none (every candidate failed in a seed)"
    else:
        worst, nearest = min(closest)
        line = (f"chosen=none (no candidate within tolerance of LUMP on the validation split; "
                f"closest={nearest}, {worst:.2f} points beyond LUMP)")
    (args.output / "tune.json").write_text(json.dumps({"seeds": seeds, "rows": rows, "line": line}, indent=2))
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
