#!/usr/bin/env bash
# The README's freezing grid on the embedded benchmark (Split Fashion-MNIST, CPU, about 4 hours
# on 2 cores, then 2.5 more for the extra seeds): LUMP vs LUMP + the default freezing rule, SimSiam
# and BarlowTwins, 3 and 10 epochs per task, seeds 0-2; the fixed-schedule controls at 10 epochs
# (both SSL methods; CONTROL_SEEDS, default "0 1 2") and for BarlowTwins at 3 epochs too (the
# cell where the rule misses its accuracy target), and for SimSiam two fixed prefixes at about
# the 1.3x target (4 blocks from task 2 or task 3); the PNG from seeds 0-2 (every arm on the same
# seeds). Then LUMP and the rule on EXTRA_SEEDS (default "3 4 5 6 7"; empty: none) in every cell,
# and the summary over all seeds (bench.json).
# Cells run in the order that gives the most useful partial results; finished runs are reused
# and interrupted ones resumed, so re-running continues where it stopped. SETS adds options to
# every arm, e.g. the earlier defaults of the rule:
#   OUT=runs/freeze_grid_tau09 PLOT=runs/freeze_grid_tau09/acc_vs_flops.png SETS="--set freeze.tau=0.9"
#   OUT=runs/freeze_grid_v1 PLOT=runs/freeze_grid_v1/acc_vs_flops.png SETS="--set freeze.tau=0.9
#   --set freeze.stability=0.999 --set freeze.max_frozen_share=1.0 --set freeze.first_task=2" experiments/freeze_grid.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-runs/freeze_grid}"
PLOT="${PLOT:-docs/images/freeze_acc_vs_flops.png}"
CONTROL_SEEDS="${CONTROL_SEEDS:-0 1 2}"
EXTRA_SEEDS="${EXTRA_SEEDS-3 4 5 6 7}"
read -r -a SET_ARGS <<< "${SETS:-}"
bench() { "$PY" experiments/bench_freeze.py --config experiments/configs/fmnist.yaml --seeds 0 1 2 --output "$OUT" \
  ${SET_ARGS[@]+"${SET_ARGS[@]}"} "$@"; }
bench --ssl simsiam --epochs 10
bench --ssl simsiam barlowtwins --epochs 3
bench --ssl barlowtwins --epochs 10
bench --ssl simsiam --epochs 10 --controls-at 10 --control-seeds $CONTROL_SEEDS --fixed-prefix 2:4 3:4
bench --ssl barlowtwins --epochs 10 --controls-at 10 --control-seeds $CONTROL_SEEDS
bench --ssl barlowtwins --epochs 3 --controls-at barlowtwins:3 --control-seeds $CONTROL_SEEDS
# summaries run nothing more (the fixed prefixes were run in SimSiam's cell only)
summary() { bench --ssl simsiam barlowtwins --epochs 3 10 --controls-at 10 barlowtwins:3 --control-seeds $CONTROL_SEEDS \
  --fixed-prefix 2:4 3:4 --finished-only "$@"; }
summary --plot "$PLOT"
if [ -n "$EXTRA_SEEDS" ]; then
  bench --seeds $EXTRA_SEEDS --ssl simsiam barlowtwins --epochs 10 3
  summary --seeds 0 1 2 $EXTRA_SEEDS
fi
