#!/usr/bin/env bash
# Per-update cost of FQL / QAM / TRQAM (docs/results/trqam.md, sections 4 and 7). One thread, interleaved A B A B,
# pinned to one core, under the machine-wide heavy-job lock. Appends JSON lines to docs/results/data/flow_update_cost.jsonl.
#   PEER=/tmp/peer JAXPY=/tmp/jaxvenv/bin/python bash experiments/flow_cost.sh
# PEER: a checkout of the official JAX code (`git archive` of yonghdong/trqam @ 02599ce, outside this repository);
# JAXPY: a python with jax/flax/optax/distrax/ml_collections/tfp-nightly and torch + tether importable
# (e.g. a venv with a .pth file pointing at this project's .venv site-packages and the repository root).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results/data/flow_update_cost.jsonl
PY=${PY:-.venv/bin/python}
run() { flock /tmp/tether-heavy.lock taskset -c 0 "$@"; }
if [ -n "${PEER:-}" ]; then
  run "${JAXPY:?set JAXPY to a python with jax}" benchmarks/flow_update_cost.py --peer "$PEER" --sizes 128/2,128/10 \
    --updates 30 --out "$OUT"
  run "$JAXPY" benchmarks/flow_update_cost.py --peer "$PEER" --sizes 512/2,512/10 --updates 15 --out "$OUT"
fi
run "$PY" benchmarks/flow_update_cost.py --sizes 128/2,512/10 --updates 15 --out "$OUT"          # TRQAM / QAM
run "$PY" benchmarks/flow_update_cost.py --sizes 128/2 --variants fp32,bf16 --updates 10 --out "$OUT"  # bf16 here
