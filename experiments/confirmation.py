"""The pre-registered confirmation of the freezing rule (``experiments/preregistration.md``): run it, report it.

``run`` trains the arms of one stream with ``bench_freeze.py`` (LUMP, the rule at its shipped
defaults, ``fixed3`` at the rule's frozen compute, the rule with ``tau=0``), seed by seed and, within
a seed, SSL method by method, so that an interrupted confirmation has balanced pairs; finished runs
are reused, so it resumes where it stopped. ``report`` reads what has finished and prints, per
stream, every arm and every endpoint of the plan with its paired differences (pooled over seeds
and SSL methods: mean +- standard error, 95 % interval by Student's t), and whether each target
is met; it says how many of the planned pairs are in (an interim report says so).

Finished runs are copied (their ``results.json``, which is all a reuse needs) to
``experiments/results/confirmation/``, which is committed, and ``run`` copies them back into
``--output`` first: a confirmation continues on another machine where the last one stopped.
``report --output experiments/results/confirmation`` reads the committed copies.

Streams (``data.task_transforms``; :mod:`avalanche_freeze.task_transforms`):
``A``: task 3 pixel-permuted; ``B``: tasks 3 and 5 permuted; ``plain``: Split Fashion-MNIST.

Usage:
    python experiments/confirmation.py run --stream A [--seeds 1000 1001 ...] [--output runs/confirmation]
    python experiments/confirmation.py report [--output runs/confirmation] [--json FILE] [--plot FILE.png]
    python experiments/confirmation.py archive [--output runs/confirmation]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from avalanche_freeze.analysis.plots import plot_paired_differences
from avalanche_freeze.analysis.results import format_table
from avalanche_freeze.run.grid import copy_finished_runs
from avalanche_freeze.analysis.stats import format_spread, paired_interval

HERE = Path(__file__).resolve().parent
#: The plan's fixed settings (preregistration.md): none of them may change once results are in.
STREAMS = {"A": ["none", "none", "permute", "none", "none"],
           "B": ["none", "none", "permute", "none", "permute"],
           "plain": []}
SSL_METHODS = ("simsiam", "barlowtwins")
SEEDS = tuple(range(1000, 1008))
EPOCHS = 3
CONFIG = HERE / "configs" / "fmnist.yaml"
OVERRIDES = ("data.max_test_per_task=2000", "eval.probes=[knn,linear]", f"train.epochs={EPOCHS}")
#: Where finished runs' results.json are kept in the repository.
ARCHIVE = HERE / "results" / "confirmation"
#: Arm -> the directory bench_freeze.py writes it to.
ARMS = {"lump": "lump", "rule": "lump_freeze", "fixed3": "fixed3", "tau0": "tau0"}


def run_stream(stream: str, seeds: Sequence[int], output: Path, archive: Path = ARCHIVE) -> int:
    """Train (or reuse) every arm of ``stream`` for ``seeds``, seed by seed, method by method; finished
    runs are copied from ``archive`` first and to it after each (method, seed)."""
    transforms = "[" + ",".join(STREAMS[stream]) + "]"
    copy_finished_runs(archive / stream, output / stream)
    for seed in seeds:
        for ssl in SSL_METHODS:
            cmd = [sys.executable, str(HERE / "bench_freeze.py"), "--config", str(CONFIG),
                   *(a for o in (*OVERRIDES, f"data.task_transforms={transforms}") for a in ("--set", o)),
                   "--ssl", ssl, "--seeds", str(seed), "--controls-at", str(EPOCHS), "--controls", "fixed3",
                   "--ablations", "tau0", "--output", str(output / stream)]
            print(f"confirmation: stream {stream}, {ssl}, seed {seed}", flush=True)
            rc = subprocess.call(cmd, stdout=subprocess.DEVNULL)
            copy_finished_runs(output / stream, archive / stream)
            if rc:
                return rc
    return 0


def _load(output: Path, stream: str, ssl: str, arm: str, seed: int) -> Optional[Dict]:
    path = output / stream / ssl / f"e{EPOCHS}" / ARMS[arm] / f"seed{seed}" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def final_accuracy(result: Dict, task: int, protocol: str = "knn_ci") -> float:
    """Accuracy (%) on ``task`` after the last task, under ``protocol``."""
    return 100 * result["acc_matrix"][protocol][-1][task]


def shifted_tasks(stream: str) -> List[int]:
    """The tasks (0-based) a transform shifts in ``stream``."""
    return [t for t, name in enumerate(STREAMS[stream]) if name != "none"]


def stream_summary(output: Path, stream: str) -> Optional[Dict]:
    """Per (SSL method, seed) pair with every arm finished: the endpoint values of each arm."""
    pairs = []
    shifted = shifted_tasks(stream)
    for seed in SEEDS:
        for ssl in SSL_METHODS:
            runs = {arm: _load(output, stream, ssl, arm, seed) for arm in ARMS}
            if any(r is None for r in runs.values()):
                continue
            values = {}
            for arm, r in runs.items():
                n_tasks = len(r["acc_matrix"]["knn_ci"])
                plain = [t for t in range(n_tasks) if t not in shifted]
                values[arm] = {
                    "avg_knn_ci": 100 * r["avg_acc"]["knn_ci"],
                    "avg_linear_ci": 100 * r["avg_acc"]["linear_ci"] if "linear_ci" in r["avg_acc"] else None,
                    "shifted_knn_ci": statistics.mean(final_accuracy(r, t) for t in shifted) if shifted else None,
                    "shifted_linear_ci": (statistics.mean(final_accuracy(r, t, "linear_ci") for t in shifted)
                                          if shifted and "linear_ci" in r["acc_matrix"] else None),
                    "bwd_flops": r["efficiency_total"]["BwdFLOPs_Exp"],
                    "frozen_blocks": [e["frozen_blocks"] for e in r["efficiency"]],
                    "stopped_by": [e.get("freeze_stopped_by") for e in r["efficiency"]],
                    # per task, the share of the backward compute the run skipped, against LUMP's
                    "frozen_compute": [1 - e["BwdFLOPs_Exp"] / lump_e["BwdFLOPs_Exp"]
                                       for e, lump_e in zip(r["efficiency"], runs["lump"]["efficiency"])],
                    "plain_tasks": plain,
                }
            pairs.append({"ssl": ssl, "seed": seed, "arms": values})
    return {"stream": stream, "pairs": pairs, "planned": len(SEEDS) * len(SSL_METHODS)} if pairs else None


def _differences(pairs, key: str, arm: str, other: str) -> List[float]:
    """``arm`` minus ``other`` in ``key``, one value per pair where both have it."""
    return [p["arms"][arm][key] - p["arms"][other][key] for p in pairs
            if p["arms"][arm][key] is not None and p["arms"][other][key] is not None]


def _verdict(ok: Optional[bool]) -> str:
    """``MET`` / ``NOT MET`` for an endpoint with a target; a descriptive one (``ok="-"``) has none."""
    if ok == "-":
        return "- (no target)"
    return "n/a (too few pairs)" if ok is None else ("MET" if ok else "NOT MET")


def endpoints(summary: Dict) -> List[Dict]:
    """The plan's endpoints for one stream: name, the interval or value, the target, met or not; an
    accuracy endpoint also has its paired ``differences`` (points), a ``short`` name and the ``mark``
    its target sets on them (``None``: no target), for ``report --plot``."""
    pairs, stream, out = summary["pairs"], summary["stream"], []

    def add(name, value, target, ok, **plot):
        out.append({"endpoint": name, "value": value, "target": target, "verdict": _verdict(ok), **plot})

    def accuracy(name, short, key, arm, other, target, mark, test, bound=False):
        values = _differences(pairs, key, arm, other)
        d = paired_interval(values) if len(values) >= 2 else None
        value = "-" if d is None else (f"{d} bound {d.lower_bound:+.2f}" if bound else str(d))
        add(name, value, target, None if d is None else test(d), differences=values, short=short, mark=mark)

    if stream in ("A", "B"):
        accuracy("shifted-task final kNN CI acc, rule - fixed3", "shifted task kNN, rule - fixed3",
                 "shifted_knn_ci", "rule", "fixed3", "mean >= +2.0 and 95 % CI > 0", 2.0,
                 lambda d: d.mean >= 2.0 and d.low > 0)
        accuracy("average kNN CI acc, rule - fixed3 (one-sided 95 % lower bound)", "average kNN, rule - fixed3",
                 "avg_knn_ci", "rule", "fixed3", "lower bound >= -0.5", -0.5, lambda d: d.lower_bound >= -0.5,
                 bound=True)
        ratios = [p["arms"]["lump"]["bwd_flops"] / p["arms"]["rule"]["bwd_flops"] for p in pairs]
        add("backward FLOPs, LUMP / rule over the run", format_spread(ratios), ">= 1.2",
            statistics.mean(ratios) >= 1.2)
        accuracy("(secondary) shifted-task final linear-probe CI acc, rule - fixed3",
                 "shifted task linear, rule - fixed3", "shifted_linear_ci", "rule", "fixed3", "reported", None,
                 lambda d: "-")
        if stream == "B":
            shifted = shifted_tasks(stream)
            during = [statistics.mean(p["arms"]["rule"]["frozen_compute"][t] for t in shifted) -
                      statistics.mean(p["arms"]["rule"]["frozen_compute"][t] for t in p["arms"]["rule"]["plain_tasks"]
                                      if t >= 2) for p in pairs]
            iv = paired_interval(during) if len(during) >= 2 else None
            add("rule's frozen backward share, shifted tasks - plain tasks 3+", str(iv) if iv else "-", "< 0",
                None if iv is None else iv.high < 0)
    else:
        accuracy("average kNN CI acc, rule - fixed3 (one-sided 95 % lower bound)", "average kNN, rule - fixed3",
                 "avg_knn_ci", "rule", "fixed3", "lower bound >= -0.7", -0.7, lambda d: d.lower_bound >= -0.7,
                 bound=True)
        accuracy("average kNN CI acc, rule - LUMP", "average kNN, rule - LUMP", "avg_knn_ci", "rule", "lump",
                 "mean >= -0.5", -0.5, lambda d: d.mean >= -0.5)
    return out


def plot_endpoints(summaries: Sequence[Dict], path: Path) -> Path:
    """The accuracy endpoints of every stream as one forest plot (:func:`plot_paired_differences`):
    each pair's difference, the mean with its two-sided 95 % interval, the target as a red tick. (The
    targets on the average, -0.5 and -0.7, apply to the one-sided 95 % lower bound, which lies a little
    inside the bar's left end.)"""
    rows = [{"label": f"{s['stream']}: {e['short']} (n={len(e['differences'])})", "differences": e["differences"],
             "target": e["mark"]}
            for s in summaries for e in endpoints(s) if len(e.get("differences", ())) >= 2]
    if not rows:
        raise ValueError("no accuracy endpoint has two pairs yet; accepted: a report with at least two finished pairs")
    return plot_paired_differences(rows, path, xlabel="paired difference, accuracy points\n(dot: one method and "
                                                      "seed; diamond: mean; bar: 95 % CI; red: the plan's target)")


def print_report(summary: Dict) -> None:
    pairs, stream = summary["pairs"], summary["stream"]
    label = "" if len(pairs) == summary["planned"] else " -- INTERIM: not every planned pair has finished"
    print(f"\nstream {stream} (task transforms {STREAMS[stream] or 'none'}): {len(pairs)} of {summary['planned']} "
          f"planned (method, seed) pairs{label}")
    rows = []
    for arm in ARMS:
        values = [p["arms"][arm] for p in pairs]
        blocks = statistics.multimode(tuple(v["frozen_blocks"]) for v in values)[0]
        stops = statistics.multimode(tuple(v["stopped_by"]) for v in values)[0]
        rows.append([arm, format_spread([v["avg_knn_ci"] for v in values]),
                     format_spread([v["shifted_knn_ci"] for v in values]) if shifted_tasks(stream) else "-",
                     format_spread([v["avg_linear_ci"] for v in values]),
                     f"{statistics.mean(pairs[i]['arms']['lump']['bwd_flops'] / v['bwd_flops'] for i, v in enumerate(values)):.3f}",
                     ",".join(map(str, blocks)), ",".join(s or "-" for s in stops)])
    print(format_table(["arm", "avg kNN CI", "shifted-task kNN CI", "avg linear CI", "bwd FLOPs LUMP/arm",
                        "frozen blocks/task (mode)", "stopped by/task (mode)"], rows))
    print(format_table(["endpoint", "value (mean +- SE)", "target", "verdict"],
                       [[e["endpoint"], e["value"], e["target"], e["verdict"]] for e in endpoints(summary)]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the arms of one stream (resumes)")
    r.add_argument("--stream", required=True, choices=sorted(STREAMS))
    r.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), choices=SEEDS, metavar="SEED",
                   help=f"a subset of the plan's seeds ({SEEDS[0]}-{SEEDS[-1]})")
    r.add_argument("--output", type=Path, default=Path("runs/confirmation"))
    rep = sub.add_parser("report", help="print every arm and endpoint of the finished pairs")
    rep.add_argument("--output", type=Path, default=Path("runs/confirmation"))
    rep.add_argument("--json", type=Path, default=None, help="also write the summaries and endpoints here")
    rep.add_argument("--plot", type=Path, default=None,
                     help="also draw the accuracy endpoints' paired differences, every stream, in this PNG")
    arc = sub.add_parser("archive", help=f"copy finished runs' results.json to {ARCHIVE.relative_to(HERE.parent)}")
    arc.add_argument("--output", type=Path, default=Path("runs/confirmation"))
    args = p.parse_args(argv)
    if args.command == "run":
        return run_stream(args.stream, args.seeds, args.output)
    if args.command == "archive":
        print(f"confirmation: {copy_finished_runs(args.output, ARCHIVE)} results copied to {ARCHIVE}")
        return 0
    summaries = [s for s in (stream_summary(args.output, stream) for stream in STREAMS) if s]
    if not summaries:
        print(f"confirmation: error: no finished pair in {args.output}", file=sys.stderr)
        return 2
    for summary in summaries:
        print_report(summary)
    if args.json:
        args.json.write_text(json.dumps([{**s, "endpoints": endpoints(s)} for s in summaries], indent=2))
    if args.plot:
        try:
            print(f"confirmation: endpoints drawn in {plot_endpoints(summaries, args.plot)}")
        except ValueError as exc:
            print(f"confirmation: error: --plot {args.plot}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
