#!/usr/bin/env bash
# Figures of docs/results/coherence.md (exact computation, a few seconds per environment).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MPLBACKEND=Agg
PY=${PYTHON:-.venv/bin/python}
OUT=docs/results/figures
$PY -m tether.cli coherence plot --env mountain-race --rounds 12 --out $OUT
$PY -m tether.cli coherence plot --env deep-mountain-race --depth 3 --safe-payoff 0.75 --rounds 16 --out $OUT
$PY -m tether.cli coherence plot --env success-vs-return --rounds 12 --out $OUT
$PY -m tether.cli coherence plot --env stochastic-counterexample --rounds 12 --out $OUT
