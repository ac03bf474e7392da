"""Re-decide finished freezing-rule runs under other thresholds, from their recorded checks.

Every check of the freezing rule records each unit's correlation score and stability value
(``results.json``'s ``freeze_history``). This script feeds them back through the rule's own
choice (:func:`avalanche_freeze.freezing.decision.choose_prefix`) under the run's thresholds or
under ``--tau``, ``--stability`` and a smaller ``--max-frozen-share``, and prints per run:

* whether every check is decided as the run decided it (then the run *is* what those thresholds
  would have made, with no need to train again), or the first check where the choice differs
  (from there on training would have differed, so the replay stops);
* what ended the prefix at each replayed check (``checks``: recorded, ``replayed``: up to and
  including a divergence): a unit below ``tau`` (``tau``), below the
  stability gate (``gate``), below both (``both``), the compute cap (``cap``), or every unit
  frozen (``end``).

Arguments are run folders, or folders searched for them (runs of fixed schedules and runs
without the rule are skipped). Replaying a run under its own thresholds reproduces every
recorded decision. Ends with one machine-readable line:

    runs=N identical_runs=K checks=C tau=T gate=G both=B cap=P end=E

(``checks``: the replayed checks, over which the reasons are counted).

Usage:
    python experiments/replay_freeze.py RUN_OR_FOLDER [...] [--tau T] [--stability S] [--max-frozen-share C]

Example (the README's claim that ``tau=0.8`` decides as 0.9 did at every SimSiam check):
    python experiments/replay_freeze.py runs/freeze_grid_tau09/simsiam --tau 0.8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.freezing.decision import STOP_REASONS, Replay, backbone_layout, replay_decisions
from avalanche_freeze.analysis.results import format_table


def rule_runs(paths: Sequence[Path]) -> Dict[Path, dict]:
    """The run folders under ``paths`` (each a run folder or a folder holding them) whose
    ``results.json`` records decisions of the rule (checks with scores), sorted, with their results."""
    found = {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; accepted: a run folder (holding results.json) or a "
                                    "folder of run folders")
        candidates = [path / "results.json"] if (path / "results.json").is_file() else sorted(path.rglob("results.json"))
        for file in candidates:
            results = json.loads(file.read_text())
            history = results.get("freeze_history") or []
            if history and all(h.get("scores") for h in history):
                found[file.parent] = results
    return dict(sorted(found.items()))


def replay_run(run: Path, results: Optional[dict] = None, *, tau: Optional[float] = None,
               stability: Optional[float] = None, max_frozen_share: Optional[float] = None) -> Replay:
    """Replay one run's checks under the given thresholds (``None``: the run's own); ``results``:
    its ``results.json`` when already read."""
    if results is None:
        results = json.loads((run / "results.json").read_text())
    cfg = ExperimentConfig.from_dict(results["config"], source=str(run / "results.json"))
    layout = backbone_layout(benchmark=cfg.data.benchmark, width=cfg.model.width, granularity=cfg.freeze.granularity)
    own = cfg.freeze
    return replay_decisions(results["freeze_history"], ends=layout.ends, shares=layout.shares,
                            tau=own.tau if tau is None else tau,
                            stability=own.stability if stability is None else stability,
                            max_frozen_share=own.max_frozen_share if max_frozen_share is None else max_frozen_share,
                            recorded_stability=own.stability, recorded_max_frozen_share=own.max_frozen_share)


HEADER = ("run", "checks", "replayed", "same decisions", *STOP_REASONS)


def _row(name: str, replay: Replay) -> list:
    if replay.identical:
        same = "yes"
    else:
        task, iteration = replay.diverged_at
        same = (f"no: task {task + 1} it. {iteration}, {replay.recorded_blocks[-1]} -> "
                f"{replay.choices[-1].blocks} blocks")
    counts = replay.stop_counts()
    return [name, replay.recorded_checks, replay.checks, same, *(counts[reason] for reason in STOP_REASONS)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, or folders searched for them")
    parser.add_argument("--tau", type=float, default=None, help="replay under this tau (default: each run's own)")
    parser.add_argument("--stability", type=float, default=None, help="replay under this gate threshold")
    parser.add_argument("--max-frozen-share", type=float, default=None,
                        help="replay under this cap (at most the run's own: units past it were never scored)")
    args = parser.parse_args(argv)
    try:
        runs = rule_runs(args.runs)
        if not runs:
            raise FileNotFoundError(f"no run of the freezing rule under {', '.join(map(str, args.runs))}; accepted: "
                                    "folders holding results.json of runs whose rule decided (not fixed schedules)")
        replays = {run: replay_run(run, results, tau=args.tau, stability=args.stability,
                                   max_frozen_share=args.max_frozen_share) for run, results in runs.items()}
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = next(iter(runs)).parent if len(runs) == 1 else Path(os.path.commonpath(list(runs)))
    rows = [_row(str(run.relative_to(root)), replay) for run, replay in replays.items()]
    totals = {reason: sum(r.stop_counts()[reason] for r in replays.values()) for reason in STOP_REASONS}
    identical = sum(r.identical for r in replays.values())
    checks = sum(r.checks for r in replays.values())
    rows.append(["total", sum(r.recorded_checks for r in replays.values()), checks, f"{identical}/{len(replays)} runs",
                 *(totals[reason] for reason in STOP_REASONS)])
    thresholds = ", ".join(f"{k}={v}" for k, v in (("tau", args.tau), ("stability", args.stability),
                                                   ("max_frozen_share", args.max_frozen_share)) if v is not None)
    under = thresholds or "each run's own thresholds"
    print(f"# replayed under {under}; what ended the prefix, per replayed check:")
    print(format_table(HEADER, rows))
    print(f"runs={len(replays)} identical_runs={identical} checks={checks} "
          + " ".join(f"{reason}={totals[reason]}" for reason in STOP_REASONS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
