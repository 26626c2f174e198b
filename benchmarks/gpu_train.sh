#!/usr/bin/env bash
# EfficientNet-B3 training throughput on one GPU (AMP + channels-last, and the fp32 NCHW baseline in the
# same run). Needs the project's environment (make venv). Result: benchmarks/results/gpu_train.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" -m benchmarks.gpu_train --backbone efficientnet_b3 --batch-size "${BATCH_SIZE:-64}" \
    --steps "${STEPS:-50}" --baseline "$@"
