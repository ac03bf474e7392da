#!/usr/bin/env bash
# The paper's comparison (LUMP vs LUMP + freezing, with the SSCL baselines) at GPU scale, on
# Split CIFAR-10 / CIFAR-100 / Tiny-ImageNet from DATA_ROOT (torchvision layout), 3 seeds:
# each benchmark's grid (experiments/grids/), then the freezing benchmark with its controls.
# Every arm checkpoints after each task and is reused or resumed when this script is re-run.
#
#   DATA_ROOT=/data SSL=simsiam experiments/paper_grid.sh [extra --set section.key=value ...]
# (the grids run the SSL methods their files name; SSL selects the freezing benchmark's)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATA_ROOT:?set DATA_ROOT to the directory holding the datasets}"
SSL="${SSL:-simsiam}"
PY="${PY:-.venv/bin/python}"
for bench in cifar10 cifar100 tinyimagenet; do
  # the baselines, LUMP, the joint upper bound and Avalanche's supervised strategies, then the report
  "$(dirname "$PY")/avalanche-freeze" grid "experiments/grids/$bench.yaml" --set "data.root=$DATA_ROOT" "$@"
  # LUMP, LUMP + the freezing rule, and the fixed-schedule controls at equal frozen compute
  "$PY" experiments/bench_freeze.py \
    --config "experiments/configs/$bench.yaml" --set "data.root=$DATA_ROOT" --set "ssl.name=$SSL" "$@" \
    --seeds 0 1 2 --controls-at 200 --plot "runs/paper/$bench-$SSL/freeze_acc_vs_flops.png" \
    --output "runs/paper/$bench-$SSL/freeze"
done
