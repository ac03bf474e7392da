#!/usr/bin/env bash
# The README's freezing grid on the embedded benchmark (Split Fashion-MNIST, CPU, about 2 hours on
# 2 cores): LUMP vs LUMP + the default freezing rule, SimSiam and BarlowTwins, 3 and 10 epochs per
# task, 3 seeds; the fixed-schedule controls at 10 epochs (SimSiam). Cells run in the order that
# gives the most useful partial results; finished runs are reused, so re-running continues.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-runs/freeze_grid}"
bench() { "$PY" experiments/bench_freeze.py --config experiments/configs/fmnist.yaml --seeds 0 1 2 --output "$OUT" "$@"; }
bench --ssl simsiam --epochs 10
bench --ssl simsiam barlowtwins --epochs 3
bench --ssl barlowtwins --epochs 10
bench --ssl simsiam --epochs 10 --controls-at 10
bench --ssl simsiam barlowtwins --epochs 3 10 --controls-at simsiam:10 --plot docs/freeze_acc_vs_flops.png
