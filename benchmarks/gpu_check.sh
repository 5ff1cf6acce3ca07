#!/usr/bin/env bash
# GPU check of tether.flow (docs/results/trqam.md, "Update cost and devices"); under 8 minutes on one H200.
#   benchmarks/gpu_check.sh [PEER_DIR]     PEER_DIR (or $PEER): a checkout of the official JAX code (yonghdong/trqam);
#                                          without it, or without a GPU-backed jax, the JAX timing is skipped (said so)
# Writes $OUT/gpu_check.json when OUT is set. Without CUDA it says so and exits 0 (after a CPU self-test of the script).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PEER=${1:-${PEER:-}}
if [ -n "$PEER" ] && [ ! -d "$PEER/agents" ]; then
  echo "gpu_check: $PEER has no agents/ folder (expected a checkout of yonghdong/trqam); JAX side skipped" >&2
  PEER=""
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible; running the CPU self-test of the script only" >&2
  PYTHONPATH=. "$PY" benchmarks/gpu_check.py --self-test
  exit 0
fi
export PEER
PYTHONPATH=. timeout 420 "$PY" benchmarks/gpu_check.py --peer "$PEER" --updates "${UPDATES:-20}"
# the device tests (CPU + CUDA parametrisations, the no-sync test), where pytest is installed
if "$PY" -c "import pytest" 2>/dev/null; then
  PYTHONPATH=. timeout 120 "$PY" -m pytest -q tests/flow/test_agent.py tests/flow/test_device.py -x \
    ${OUT:+--junitxml "$OUT/gpu_tests.xml"} || echo "gpu_check: device tests failed (see above)" >&2
fi
