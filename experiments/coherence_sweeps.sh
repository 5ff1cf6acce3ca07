#!/usr/bin/env bash
# The sweep tables quoted in docs/results/coherence.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY=${PYTHON:-.venv/bin/python}
$PY -m tether.cli coherence sweep --env mountain-race --rounds 6 --delta 1
$PY -m tether.cli coherence sweep --env deep-mountain-race --depth 3 --safe-payoff 0.75 --rounds 10 --delta 1
$PY -m tether.cli coherence sweep --env deep-mountain-race --depth 3 --safe-payoff 0.75 --slip 0.1 --rounds 10
$PY -m tether.cli coherence sweep --env stochastic-counterexample --rounds 4
$PY -m tether.cli coherence sweep --env success-vs-return --rounds 6
$PY -m tether.cli coherence sweep --env cliff-gridworld --slip 0.2 --rounds 6
$PY -m tether.cli coherence sweep --env random-tree --seed 0 --horizon 4 --stochastic --rounds 6
