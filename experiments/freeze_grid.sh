#!/usr/bin/env bash
# The README's freezing grid on the embedded benchmark (Split Fashion-MNIST, CPU, about 3.5 hours
# on 2 cores): LUMP vs LUMP + the default freezing rule, SimSiam and BarlowTwins, 3 and 10 epochs
# per task, 3 seeds; the fixed-schedule controls at 10 epochs (both SSL methods; CONTROL_SEEDS,
# default "0 1 2"), and for SimSiam two fixed prefixes at about the 1.3x target (4 blocks from
# task 2 or task 3).
# Cells run in the order that gives the most useful partial results; finished runs are reused
# and interrupted ones resumed, so re-running continues where it stopped. SETS adds options to
# every arm, e.g. the previous default rule:
#   OUT=runs/freeze_grid_v1 PLOT=runs/freeze_grid_v1/acc_vs_flops.png SETS="--set freeze.stability=0.999
#   --set freeze.max_frozen_share=1.0 --set freeze.first_task=2" experiments/freeze_grid.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-runs/freeze_grid}"
PLOT="${PLOT:-docs/freeze_acc_vs_flops.png}"
CONTROL_SEEDS="${CONTROL_SEEDS:-0 1 2}"
read -r -a SET_ARGS <<< "${SETS:-}"
bench() { "$PY" experiments/bench_freeze.py --config experiments/configs/fmnist.yaml --seeds 0 1 2 --output "$OUT" \
  ${SET_ARGS[@]+"${SET_ARGS[@]}"} "$@"; }
bench --ssl simsiam --epochs 10
bench --ssl simsiam barlowtwins --epochs 3
bench --ssl barlowtwins --epochs 10
bench --ssl simsiam --epochs 10 --controls-at 10 --control-seeds $CONTROL_SEEDS --fixed-prefix 2:4 3:4
bench --ssl barlowtwins --epochs 10 --controls-at 10 --control-seeds $CONTROL_SEEDS
# the summary: runs nothing more (the fixed prefixes were run in SimSiam's cell only)
bench --ssl simsiam barlowtwins --epochs 3 10 --controls-at 10 --control-seeds $CONTROL_SEEDS \
  --fixed-prefix 2:4 3:4 --finished-only --plot "$PLOT"
