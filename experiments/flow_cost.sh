#!/usr/bin/env bash
# Per-update cost of FQL / QAM / TRQAM at equal sizes (docs/results/trqam.md, "Cost"). One thread, interleaved.
set -euo pipefail
for spec in "128 2" "128 10" "512 2"; do
  set -- $spec
  OMP_NUM_THREADS=1 python benchmarks/flow_update_cost.py --width "$1" --num-qs "$2" --updates 30
done
