#!/usr/bin/env bash
# Scaling benchmark of the exact engine (one thread); prints one JSON line. Takes ~1-2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
${PYTHON:-.venv/bin/python} benchmarks/coherence_scale.py "$@"
