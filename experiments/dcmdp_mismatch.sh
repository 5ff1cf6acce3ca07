#!/usr/bin/env bash
# DCMDP experiment 1 (metric sanity, docs/results/dcmdp.md): train/inference mismatch of the same weights at
# every rollout-engine precision, for the shipped dense bases and a small MoE base (top-2 of 4 experts), and
# for RL-trained checkpoints of experiments/dcmdp_runs.sh (δ̄ after the policy sharpened).
# usage: experiments/dcmdp_mismatch.sh [bases|moe_base|trained]   -> runs/dcmdp_mismatch/<name>.jsonl
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
export PATH="$PWD/.venv/bin:$PATH"
what=${1:-bases}
out=runs/dcmdp_mismatch
mkdir -p "$out"
P="--precisions fp32,bf16,fp16,fp8,int8,int4 --n_prompts 64 --samples 4 --json"
if [[ $what == moe_base ]]; then
  # the MoE base: the medium base's recipe (600 steps, 10% aligned slips) with a top-2-of-4 MoE MLP (d_ff 96
  # per expert, so 2 active experts = the dense d_ff of 192); ~5 min on one core
  tether lm pretrain --steps 600 --error_rate 0.1 --alignment aligned --model.n_experts 4 --model.top_k 2 \
    --model.d_ff 96 --eval_prompts 128 --out runs/dcmdp_bases/moe
fi
if [[ $what == bases ]]; then
  for b in strong medium weak; do tether lm mismatch --checkpoint base:$b $P >"$out/base_$b.jsonl"; done
  tether lm mismatch --checkpoint runs/dcmdp_bases/moe $P >"$out/base_moe.jsonl"
fi
if [[ $what == trained ]]; then   # final checkpoints of the seed-0 no-correction runs (fp8 / int4 engines)
  for cell in fp8_none int4_none int4_dcmdp_fixed10; do
    ck=$(ls -d runs/dcmdp/$cell/s0/checkpoints/step_* | tail -1)
    tether lm mismatch --checkpoint "$ck" $P >"$out/trained_$cell.jsonl"
  done
fi
