#!/usr/bin/env bash
# The GPU checks behind the README's GPU rows (one CUDA machine, about 10 minutes):
#  1. the mixed-precision tests on CUDA (bf16 autocast, float16 with the gradient scaler);
#  2. one process under torchrun on CUDA (NCCL, DistributedDataParallel, SyncBatchNorm, bf16);
#  3. the device-bound loop: no synchronisation in one iteration of every SSL recipe
#     (set_sync_debug_mode("error")), and the batched augmentation's tests on CUDA;
#  4. bench_throughput.py at CIFAR size, full-width ResNet-18, batch 256: LUMP /
#     LUMP + fixed frozen prefix, fp32 vs bf16, kornia vs batched augmentation; then bf16 with the
#     batched augmentation and the data on the device (the whole device-bound loop);
#  5. the host-side proxies on CUDA at full width (device ops, host syncs, host ms per iteration and
#     the GPU's busy fraction under torch.profiler), default loop and device-bound loop.
# Usage: OUT=folder experiments/gpu_checks.sh   (PY: the Python to use, default python3)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
OUT="${OUT:-runs/gpu_checks}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
"$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/unit/test_precision.py 2>&1 | tail -4 | tee -a "$OUT/gpu.txt"
"$PY" -m torch.distributed.run --standalone --nproc_per_node=1 experiments/bench_throughput.py --worker \
  '{"device": "cuda", "synthetic": true, "data_root": "", "batch_size": 256, "iters": 5, "warmup": 2, "width": 1.0,
    "frozen_units": 5, "num_workers": 0, "channels_last": false, "arm": "lump_freeze", "precision": "bf16"}' \
  2>&1 | grep -E "THROUGHPUT_RESULT|Error|error" | tee -a "$OUT/gpu.txt"
"$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/e2e/test_device_loop.py tests/unit/test_batched_views.py \
  2>&1 | tail -4 | tee -a "$OUT/gpu.txt"
"$PY" experiments/bench_throughput.py --synthetic --device cuda --precision 32 bf16 --iters 10 --warmup 3 \
  --repeats 2 --arms lump lump_freeze --augment-backends kornia batched --json "$OUT/throughput_gpu.json" 2>&1 \
  | tee "$OUT/throughput_gpu.txt"
"$PY" experiments/bench_throughput.py --synthetic --device cuda --precision bf16 --augment-backends batched \
  --data-on-device --arms lump lump_freeze --iters 10 --warmup 3 --repeats 2 --json "$OUT/throughput_gpu_dod.json" \
  2>&1 | tee "$OUT/throughput_gpu_dod.txt"
"$PY" experiments/bench_throughput.py --proxies --device cuda --width 1.0 --precision bf16 --arms lump \
  --augment-backends kornia batched --iters 5 --warmup 3 --repeats 1 2>&1 | tee "$OUT/proxies_gpu.txt"
"$PY" experiments/bench_throughput.py --proxies --device cuda --width 1.0 --precision bf16 --arms lump \
  --augment-backends batched --data-on-device --iters 5 --warmup 3 --repeats 1 2>&1 | tee "$OUT/proxies_gpu_dod.txt"
