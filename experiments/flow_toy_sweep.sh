#!/usr/bin/env bash
# Critic-error toy sweep behind docs/results/trqam.md (3 seeds, 64x3 nets, 2000 BC + 1000 fine-tuning steps).
# Run from the repo root with the venv active. Each JSONL row equals `tether flow toy --json` with the same flags, e.g.
#   tether flow toy --method trqam --kl-budget 0.5 --critic-error 2 --q-scale 10 --steps 1000 --bc-steps 2000 --width 64 --seed 0 --json
set -euo pipefail
out=runs/flow_toy
mkdir -p "$out"
rm -f "$out"/results_w*.jsonl "$out"/results_log.jsonl
for w in 0 1; do
  OMP_NUM_THREADS=1 python benchmarks/flow_toy_sweep.py --worker $w --workers 2 --out "$out/results_w$w.jsonl" &
done
# ablation (not in the paper): TRQAM with the dual step on log(lambda)
OMP_NUM_THREADS=1 python benchmarks/flow_toy_sweep.py --log-dual --out "$out/results_log.jsonl" &
wait
cat "$out"/results_w*.jsonl "$out"/results_log.jsonl > "$out/results.jsonl"
python benchmarks/flow_toy_table.py "$out/results.jsonl"
common="--results $out/results.jsonl --beta 10 --kl-budget 0.5 --alpha 10 --steps 1000 --bc-steps 2000 --width 64 --out docs/results/figures"
OMP_NUM_THREADS=1 tether flow toy-plot $common --critic-error 2 --q-scale 1
OMP_NUM_THREADS=1 tether flow toy-plot $common --critic-error 2 --q-scale 10 --beta 3
OMP_NUM_THREADS=1 tether flow toy-plot $common --critic-error 2 --q-scale 10 --beta 3 --log-dual
