"""LUMP vs LUMP + the freezing rule, side by side, with fixed-schedule controls at equal frozen compute.

Every cell of the grid (SSL method x epochs per task) runs, for each seed, LUMP and LUMP +
the freezing rule with the same configuration, data and seed; only the strategy differs.
With ``--controls-at E`` (or ``SSL:E``), cells of E epochs per task (of that SSL method) also run four controls that freeze
as much compute as the rule did in the same seed, without looking at the data (see
:mod:`avalanche_freeze.freezing.schedules`): the same amount as one prefix fixed from task 2
(``fixed2``) or from task 3 (``fixed3``), a FreezeOut-style schedule (``freezeout``) and
random prefix lengths (``random``). ``--fixed-prefix T:B`` adds, in the same cells and
seeds, an arm that freezes the first B blocks from the start of task T (``fixedT_Bb``),
whatever the rule froze: a fixed schedule at a chosen saving (e.g. the 1.3x target). ``T=1``
freezes the blocks at their initialisation, before any training (``fixed1_Bb``): the
untrained-features control, which bounds what freezing those blocks can cost on the benchmark.
``--controls fixed3 ...`` runs only the named controls (``--controls`` alone: none of them).

``--ablations`` adds, in the same cells and seeds, the rule with one of its terms taken away, so
that the report says which term decides (the ablation ladder): ``tau0`` (``freeze.tau=0``: no
correlation term, the gate and the cap decide), ``no_gate`` (``freeze.stability=0``: the
correlation and the cap decide) and ``task_start`` (``freeze.decide_every=0``: one decision at the
start of each task, no gate; measures that score before training only, ``subspace``). Each arm's
row says how often each term ended the prefix over its checks (``stopped by``), and ``fixed3``
is the control at the rule's frozen compute.

Timing is kept honest: FLOPs and saved bytes are counted on sampled iterations
(``metrics.flops_every``) whose time is kept out of the training time; the two arms
alternate in order from seed to seed (even seeds: LUMP first), and the time ratio reported
is the median over seeds. The rule's own cost (bases, gradient sums, scores, gate) is part
of its training time and is reported separately.

Prints one table per cell (mean +- std over seeds), the rule's differences from LUMP and
from each other arm, paired by seed (the seed-to-seed spread the arms share cancels; mean +-
standard error), each other arm's difference from LUMP (what that control, fixed prefix or
ablation costs against training every unit) and, for the rule against LUMP, what the seeds can
resolve (the per-seed spread of the paired differences and the seeds a 0.3-point bound would
need); writes ``bench.json`` and, with ``--plot``, a PNG of accuracy vs backward FLOPs per arm.
Finished runs are reused, so an interrupted grid continues where it stopped. A run that fails
(diverged training, an unreadable folder) is named on stderr and under its cell's table and left
out; a failed LUMP or rule run leaves out its seed from the cell (nothing else of that seed is
compared), and the exit code is 1.
Ends with one machine-readable line (the mean over cells when there are several):

    backward_flops_ratio=X activation_bytes_ratio=Y time_ratio=Z knn_acc_delta=D forgetting_delta=F

Usage:
    python experiments/bench_freeze.py [--config FILE] [--set key=value ...] [--device cuda]
        [--ssl simsiam barlowtwins] [--epochs 3 10] [--seeds 0 1 2] [--controls-at [SSL:]EPOCHS ...]
        [--controls fixed3 ...] [--ablations [tau0 no_gate task_start]] [--fixed-prefix TASK:BLOCKS ...]
        [--plot FILE] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.run.experiment import RUN_FAILURES, run_or_reuse
from avalanche_freeze.freezing.decision import backbone_layout
from avalanche_freeze.freezing.schedules import fixed_schedule, freezeout_schedule, frozen_compute, random_schedule
from avalanche_freeze.analysis import stats
from avalanche_freeze.analysis.plots import plot_cells_accuracy_vs_flops
from avalanche_freeze.analysis.results import KNN_PROTOCOLS as PROTOCOLS
from avalanche_freeze.analysis.results import format_table
from avalanche_freeze.analysis.stats import Z_ONE_SIDED_95, efficiency_ratio, format_spread

CONTROLS = ("fixed2", "fixed3", "freezeout", "random")
#: The ablation ladder: the rule with one term taken away (overrides of the rule's configuration).
ABLATIONS = {"tau0": ["freeze.tau=0"], "no_gate": ["freeze.stability=0"],
             "task_start": ["freeze.decide_every=0", "freeze.stability=0"]}
MARGIN = 0.3  # points: the accuracy targets' margin (rule >= LUMP - 0.3)


def _config(files, overrides: List[str]) -> ExperimentConfig:
    return ExperimentConfig.from_sources(files=files, overrides=overrides)


def _control_schedule(arm: str, rule: Dict, shares: List[float], seed: int) -> List[List[int]]:
    iterations = [int(e["Iterations_Exp"]) for e in rule["efficiency"]]
    history = rule.get("freeze_history", [])
    target = frozen_compute(history, iterations, shares)
    if arm == "fixed2":
        return fixed_schedule(target, iterations, shares, from_task=1)
    if arm == "fixed3":
        return fixed_schedule(target, iterations, shares, from_task=2)
    if arm == "freezeout":
        return freezeout_schedule(target, iterations, shares, blocks=max((h["frozen_blocks"] for h in history),
                                                                          default=0))
    return random_schedule(target, iterations, shares, seed=seed)


def fixed_prefix_arm(spec: str, n_blocks: int) -> tuple:
    """``(arm name, freeze.schedule)`` of ``--fixed-prefix TASK:BLOCKS`` (TASK counted from 1; 1 freezes the
    blocks at initialisation, before any training; 1 <= BLOCKS <= the backbone's ``n_blocks``)."""
    try:
        task, blocks = (int(v) for v in spec.split(":"))
    except ValueError:
        raise ValueError(f"--fixed-prefix {spec!r} is not accepted; accepted: TASK:BLOCKS, e.g. 2:4") from None
    if task < 1 or not 1 <= blocks <= n_blocks:
        raise ValueError(f"--fixed-prefix {spec!r} is not accepted; accepted: TASK >= 1 (1: frozen at "
                         f"initialisation) and 1 <= BLOCKS <= {n_blocks}")
    return f"fixed{task}_{blocks}b", [[task - 1, 0, blocks]]


def _cell(files, overrides, ssl: Optional[str], epochs: Optional[int], seeds: List[int], control_seeds: List[int],
          output: Path, finished_only: bool = False, fixed_prefixes: Sequence[str] = (),
          controls: Sequence[str] = CONTROLS, ablations: Sequence[str] = ()) -> Dict:
    """Run (or reuse) one cell: every seed's LUMP and rule, then, in ``control_seeds``, the ``controls``,
    the ``fixed_prefixes`` arms (``TASK:BLOCKS``) and the ``ablations``; returns its summary.
    ``finished_only``: run nothing, summarise the seeds whose LUMP and rule runs are finished and, in
    them, each control over the seeds where it finished."""
    extra = ([f"ssl.name={ssl}"] if ssl else []) + ([f"train.epochs={epochs}"] if epochs else [])
    base = _config(files, overrides + extra)
    cell_dir = output / base.ssl.name / f"e{base.train.epochs}"
    shares = backbone_layout(benchmark=base.data.benchmark, width=base.model.width, granularity=base.freeze.granularity).shares
    fixed = dict(fixed_prefix_arm(spec, len(shares)) for spec in fixed_prefixes) if control_seeds else {}
    runs: Dict[str, Dict[int, Dict]] = {}
    finished = lambda arm, seed: (cell_dir / arm / f"seed{seed}" / "results.json").is_file()  # noqa: E731
    if finished_only:
        seeds = [seed for seed in seeds if finished("lump", seed) and finished("lump_freeze", seed)]
        if not seeds:
            raise SystemExit(f"bench_freeze: no finished seed in {cell_dir}")
    failed: List[str] = []

    def attempt(cfg, arm: str, seed: int) -> Optional[Dict]:
        """The run's results, or None when it fails (diverged, unreadable folder): recorded, the bench goes on."""
        try:
            return run_or_reuse(cfg, cell_dir / arm / f"seed{seed}")
        except RUN_FAILURES as exc:
            failed.append(f"{arm} seed {seed}: {exc}")
            print(f"bench_freeze: {base.ssl.name} e{base.train.epochs} {arm} seed {seed} FAILED: {exc}",
                  file=sys.stderr)
            return None

    completed = []
    for i, seed in enumerate(seeds):
        common = overrides + extra + [f"seed={seed}"]
        order = ("lump", "lump_freeze") if i % 2 == 0 else ("lump_freeze", "lump")  # alternate for timing
        done = {}
        for strategy in order:
            done[strategy] = attempt(_config(files, common + [f"strategy={strategy}"]), strategy, seed)
        if done["lump"] is None or done["lump_freeze"] is None:
            continue  # the seed's pair is incomplete: no arm of it is compared
        completed.append(seed)
        runs.setdefault("lump", {})[seed] = done["lump"]
        runs.setdefault("rule", {})[seed] = done["lump_freeze"]
        if seed in control_seeds:
            schedules = {arm: _control_schedule(arm, done["lump_freeze"], shares, seed) for arm in controls}
            for arm, schedule in {**schedules, **fixed}.items():
                if finished_only and not finished(arm, seed):
                    continue
                cfg = _config(files, common + ["strategy=lump_freeze", f"freeze.schedule={json.dumps(schedule)}"])
                result = attempt(cfg, arm, seed)
                if result is not None:
                    result["schedule"] = schedule
                    runs.setdefault(arm, {})[seed] = result
            for arm in ablations:
                if finished_only and not finished(arm, seed):
                    continue
                result = attempt(_config(files, common + ["strategy=lump_freeze"] + ABLATIONS[arm]), arm, seed)
                if result is not None:
                    runs.setdefault(arm, {})[seed] = result
    if not completed:
        raise SystemExit(f"bench_freeze: no seed of {cell_dir} finished both LUMP and the rule ({'; '.join(failed)})")
    return {"ssl": base.ssl.name, "epochs": base.train.epochs, "seeds": completed, "shares": shares, "failed": failed,
            "arms": {arm: _arm_summary(arm, rs, runs["lump"], shares) for arm, rs in runs.items()}}


def _arm_summary(arm: str, by_seed: Dict[int, Dict], lump_by_seed: Dict[int, Dict], shares: List[float]) -> Dict:
    """Per-seed values of one arm; ratios against LUMP of the same seed."""
    tot = lambda r, k: r["efficiency_total"][k]  # noqa: E731
    results = [by_seed[s] for s in sorted(by_seed)]
    lump = [lump_by_seed[s] for s in sorted(by_seed)]
    out: Dict = {"n": len(results), "seeds": sorted(by_seed)}
    for key in PROTOCOLS:
        out[f"acc_{key}"] = [100 * r["avg_acc"][key] for r in results]
        out[f"forgetting_{key}"] = [100 * r["forgetting_max"][key] for r in results]
    out["bwd_flops"] = [tot(r, "BwdFLOPs_Exp") for r in results]
    for name, key in (("bwd_ratio", "BwdFLOPs_Exp"), ("act_ratio", "SavedActBytes_Iter_mean"),
                      ("time_ratio", "TrainTime_Exp")):
        out[name] = [efficiency_ratio(lr, r, key) for r, lr in zip(results, lump)]
    out["decision_s"] = [tot(r, "FreezeDecisionTime_Exp") if "FreezeDecisionTime_Exp" in r["efficiency_total"]
                         else 0.0 for r in results]
    out["train_s"] = [tot(r, "TrainTime_Exp") for r in results]
    out["frozen_compute"] = [frozen_compute(r.get("freeze_history", []),
                                            [int(e["Iterations_Exp"]) for e in r["efficiency"]], shares)
                             for r in results]
    out["frozen_blocks"] = [[e["frozen_blocks"] for e in r["efficiency"]] for r in results]
    out["stopped_by"] = stop_counts(results)
    if all("schedule" in r for r in results):  # a control or a fixed prefix
        out["schedules"] = [r["schedule"] for r in results]
    return out


def stop_counts(results: Sequence[Dict]) -> Dict[str, int]:
    """How often each term ended the prefix over the checks of ``results`` (the rule's decisions; a
    fixed schedule's records have none)."""
    counts = Counter(h["stopped_by"] for r in results for h in r.get("freeze_history", []) if h.get("stopped_by"))
    return dict(sorted(counts.items()))


def _print_cell(cell: Dict) -> None:
    rows = []
    for arm, s in cell["arms"].items():
        rows.append([arm, ",".join(map(str, s["seeds"])), format_spread(s["acc_knn_ci"]), format_spread(s["acc_knn_ti"]),
                     format_spread(s["forgetting_knn_ci"]), format_spread(s["forgetting_knn_ti"]),
                     f"{statistics.mean(s['bwd_ratio']):.3f}", f"{statistics.mean(s['act_ratio']):.3f}",
                     f"{statistics.median(s['time_ratio']):.3f}", f"{statistics.mean(s['decision_s']):.1f}",
                     " / ".join(",".join(map(str, b)) for b in s["frozen_blocks"]),
                     " ".join(f"{k} {v}" for k, v in s.get("stopped_by", {}).items()) or "-"])
    print(f"\n{cell['ssl']}, {cell['epochs']} epochs per task, seeds {cell['seeds']} (accuracy and forgetting in %, "
          "mean +- std over seeds; ratios LUMP / arm: mean, time: median)")
    print(format_table(["arm", "seeds", "kNN acc CI", "kNN acc TI", "forgetting CI", "forgetting TI",
                        "bwd FLOPs ratio", "saved act. ratio", "time ratio", "decision s", "frozen blocks per task",
                        "stopped by"],
                       rows))
    for failure in cell.get("failed", []):
        print(f"FAILED (left out of the table; a failed LUMP or rule run leaves out its seed): {failure}")


METRICS = (("acc_knn_ci", "kNN acc CI"), ("acc_knn_ti", "kNN acc TI"), ("forgetting_knn_ci", "forgetting CI"),
           ("forgetting_knn_ti", "forgetting TI"))


def paired_differences(cell: Dict, arm: str, *, first: str = "rule") -> Dict[str, List[float]]:
    """Per metric, the ``first`` arm's value (the rule's by default) minus ``arm``'s in each seed both ran
    (seed-to-seed variation, shared by the two arms of a seed, cancels in these differences)."""
    minuend, other = cell["arms"][first], cell["arms"][arm]
    common = [s for s in minuend["seeds"] if s in other["seeds"]]
    at = lambda summary, key, seed: summary[key][summary["seeds"].index(seed)]  # noqa: E731
    return {key: [at(minuend, key, s) - at(other, key, s) for s in common] for key, _ in METRICS}


def seeds_for_margin(sd: float, margin: float = MARGIN, z: float = Z_ONE_SIDED_95) -> int:
    """:func:`avalanche_freeze.analysis.stats.seeds_for_margin` at the accuracy targets' margin (0.3 points)."""
    return stats.seeds_for_margin(sd, margin, z)


def _paired_rows(differences: Dict[str, Dict[str, List[float]]]) -> List[List[str]]:
    return [[arm] + [f"{format_spread(d, spread='se')} ({sum(v > 0 for v in d)}/{len(d)})" for d in diffs.values()]
            for arm, diffs in differences.items()]


def _print_paired(cell: Dict) -> None:
    by_arm = {arm: paired_differences(cell, arm) for arm in cell["arms"] if arm != "rule"}
    print("rule minus arm, paired by seed (mean +- standard error over seeds; in parentheses: seeds where the "
          "rule's value is higher; for forgetting, higher is worse)")
    print(format_table(["arm"] + [label for _, label in METRICS], _paired_rows(by_arm)))
    others = {arm: paired_differences(cell, "lump", first=arm) for arm in cell["arms"] if arm not in ("rule", "lump")}
    if others:  # what each control, fixed prefix or ablation costs against training every unit
        print("arm minus LUMP, paired by seed (in parentheses: seeds where the arm's value is higher)")
        print(format_table(["arm"] + [label for _, label in METRICS], _paired_rows(others)))
    diffs = by_arm["lump"]
    if min(len(d) for d in diffs.values()) < 2:
        return
    sds = [statistics.stdev(d) for d in diffs.values()]
    print(f"what the seeds can resolve (rule minus LUMP): per-seed std of the difference, and seeds needed for a "
          f"one-sided 95 % bound within {MARGIN} points (the accuracy targets' margin; the forgetting targets, "
          "rule <= LUMP, have none)")
    print(format_table(["", *(label for _, label in METRICS)],
                       [["std per seed", *(f"{sd:.2f}" for sd in sds)],
                        [f"seeds for {MARGIN}", *(str(seeds_for_margin(sd)) for sd in sds)]]))


def _line(cells: List[Dict]) -> str:
    def mean_over(fn):
        return statistics.mean(fn(c) for c in cells)

    rule = lambda c: c["arms"]["rule"]  # noqa: E731
    lump = lambda c: c["arms"]["lump"]  # noqa: E731
    return (
        f"backward_flops_ratio={mean_over(lambda c: statistics.mean(rule(c)['bwd_ratio'])):.3f} "
        f"activation_bytes_ratio={mean_over(lambda c: statistics.mean(rule(c)['act_ratio'])):.3f} "
        f"time_ratio={mean_over(lambda c: statistics.median(rule(c)['time_ratio'])):.3f} "
        f"knn_acc_delta={mean_over(lambda c: statistics.mean(rule(c)['acc_knn_ci']) - statistics.mean(lump(c)['acc_knn_ci'])):.2f} "  # noqa: E501
        f"forgetting_delta={mean_over(lambda c: statistics.mean(rule(c)['forgetting_knn_ci']) - statistics.mean(lump(c)['forgetting_knn_ci'])):.2f}"  # noqa: E501
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], type=Path, help="YAML config file (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default=None, help="cpu or cuda (same as --set device=...)")
    p.add_argument("--ssl", nargs="+", default=[None], help="SSL methods (default: the configured one)")
    p.add_argument("--epochs", nargs="+", type=int, default=[None], help="epochs per task (default: configured)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the configured seed)")
    p.add_argument("--controls-at", nargs="*", default=[], metavar="[SSL:]EPOCHS",
                   help="run the fixed-schedule controls in the cells with these epochs per task "
                        "(optionally of one SSL method only, e.g. simsiam:10)")
    p.add_argument("--control-seeds", nargs="+", type=int, default=None,
                   help="seeds of the controls (default: all of --seeds)")
    p.add_argument("--controls", nargs="*", default=list(CONTROLS), choices=CONTROLS,
                   help="which controls --controls-at runs (default: all; no names: none, e.g. to run only "
                        "--fixed-prefix or --ablations arms)")
    p.add_argument("--ablations", nargs="*", default=None, choices=sorted(ABLATIONS),
                   help="in the cells and seeds of the controls, also run the rule without one of its terms "
                        "(no names: all of tau0, no_gate, task_start)")
    p.add_argument("--fixed-prefix", nargs="+", default=[], metavar="TASK:BLOCKS",
                   help="in the cells and seeds of the controls, also freeze the first BLOCKS blocks from "
                        "task TASK on (e.g. 2:4), whatever the rule froze; TASK 1: frozen at initialisation, "
                        "never trained")
    p.add_argument("--finished-only", action="store_true",
                   help="run nothing: summarise (and plot) the seeds whose runs are finished in --output")
    p.add_argument("--plot", type=Path, default=None, help="write the accuracy-vs-backward-FLOPs PNG here")
    p.add_argument("--output", type=Path, default=Path("runs/bench_freeze"))
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    try:
        base = _config(args.config, overrides)
        for ssl in args.ssl:
            if ssl:
                _config(args.config, overrides + [f"ssl.name={ssl}"])
        if args.fixed_prefix:
            n_blocks = len(backbone_layout(benchmark=base.data.benchmark, width=base.model.width, granularity=base.freeze.granularity).shares)
            for spec in args.fixed_prefix:
                fixed_prefix_arm(spec, n_blocks)
        ablations = sorted(ABLATIONS) if args.ablations == [] else list(args.ablations or [])
        for arm in ablations:
            try:
                _config(args.config, overrides + ["strategy=lump_freeze"] + ABLATIONS[arm])
            except ConfigError as exc:
                raise ConfigError(f"--ablations {arm} cannot run with this configuration: {exc}") from None
    except (ConfigError, ValueError) as exc:
        print(f"bench_freeze: error: {exc}", file=sys.stderr)
        return 2
    seeds = args.seeds if args.seeds is not None else [base.seed]
    cells = []
    for ssl in args.ssl:
        for epochs in args.epochs:
            n_epochs, method = epochs or base.train.epochs, ssl or base.ssl.name
            controls = str(n_epochs) in args.controls_at or f"{method}:{n_epochs}" in args.controls_at
            control_seeds = (seeds if args.control_seeds is None else args.control_seeds) if controls else []
            cell = _cell(args.config, overrides, ssl, epochs, seeds, control_seeds, args.output, args.finished_only,
                         args.fixed_prefix, args.controls, ablations)
            _print_cell(cell)
            _print_paired(cell)
            cells.append(cell)
            if len(args.ssl) * len(args.epochs) > 1:
                print(f"{cell['ssl']} e{cell['epochs']}: {_line([cell])}")
    args.output.mkdir(parents=True, exist_ok=True)
    line = _line(cells)
    (args.output / "bench.json").write_text(json.dumps({"cells": cells, "line": line}, indent=2))
    if args.plot:
        plot_cells_accuracy_vs_flops(cells, args.plot)
        print(f"\nplot written to {args.plot}")
    print(line)
    return 1 if any(cell.get("failed") for cell in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
