#!/usr/bin/env bash
# Speed numbers of docs/results/lm-engine.md (one torch thread each; run on a machine as quiet as possible).
# Each benchmark's JSON line is appended to $OUT (default runs/lm_speed.jsonl), then plotted next to it.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"   # the repo venv when not activated
OUT=${OUT:-runs/lm_speed.jsonl}
mkdir -p "$(dirname "$OUT")"
run() { python "$@" | tail -n 1 | tee -a "$OUT"; }                          # the JSON line is the last one
B=(--hidden 128 --layers 4 --ff 512)                                      # model (b); the default is model (a)
run benchmarks/lm_sampler.py                                              # model (a), fp32
run benchmarks/lm_sampler.py --dtype bf16                                 # model (a), bf16
run benchmarks/lm_sampler.py "${B[@]}"                                    # model (b), fp32
run benchmarks/lm_sampler.py "${B[@]}" --dtype bf16                       # model (b), bf16
run benchmarks/lm_grpo_step.py --ablate-shared                           # model (a) vs TRL GRPOTrainer, fp32
run benchmarks/lm_grpo_step.py "${B[@]}" --ablate-shared                  # model (b), fp32
run benchmarks/lm_grpo_step.py --bf16                                     # model (a), bf16 on both sides
run benchmarks/lm_grpo_step.py "${B[@]}" --bf16                           # model (b), bf16 on both sides
run benchmarks/lm_mfu.py                                                  # model (b) forward+backward
run benchmarks/lm_mfu.py --compile                                        # the same with optim.compile's blocks
python experiments/lm_speed_plot.py "$OUT" "${OUT%.jsonl}.png"
