#!/usr/bin/env bash
# The sweep benchmark on one GPU: model-only ceiling, local sweep, naive loop and the Ray Data sweep (one
# GPU actor), same model and tiles in one run. Needs the project's environment (make venv).
# Result: benchmarks/results/sweep_throughput_gpu.json (device name recorded under "machine").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" -m benchmarks.sweep_throughput --gpu --ray --tiles "${TILES:-4096}" --batch-size "${BATCH_SIZE:-128}" \
    --read-threads "${READ_THREADS:-8}" --actor-cpus "${ACTOR_CPUS:-4}" --read-cpus "${READ_CPUS:-1}" "$@"
