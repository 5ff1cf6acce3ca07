#!/usr/bin/env bash
# The long-generation bases of the DCMDP testbed (docs/results/dcmdp.md): running sums at difficulty 12
# (3-14 numbers, completions of 61 tokens on average, up to ~120), context 176, 10 % aligned slips as the
# shipped medium base. `long` is dense; `long-moe` has a top-1 mixture of 4 experts in every block.
# `long4k` is `long` pretrained 4000 steps (sampled accuracy 0.64 instead of 0.06: a base GRPO can improve).
# Writes model.safetensors, config.json and eval.json into tether/lm/dcmdp/bases/<name>.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
out=${1:-tether/lm/dcmdp/bases}
COMMON="--task running_sum --difficulty 12 --steps 1000 --error-rate 0.1 --alignment aligned --eval-prompts 64
        --max-new-tokens 128 --model.max_seq_len 176"
tether lm pretrain $COMMON --out "$out/long"
tether lm pretrain $COMMON --model.n_experts 4 --model.top_k 1 --out "$out/long-moe"
tether lm pretrain ${COMMON/--steps 1000/--steps 4000} --out "$out/long4k"
