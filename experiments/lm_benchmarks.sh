#!/usr/bin/env bash
# Speed numbers of docs/results/lm-engine.md (one torch thread each; run on a machine as quiet as possible).
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"   # the repo venv when not activated
python benchmarks/lm_sampler.py                                           # model (a), fp32
python benchmarks/lm_sampler.py --dtype bf16                              # model (a), bf16
python benchmarks/lm_sampler.py --hidden 128 --layers 4 --ff 512          # model (b), fp32
python benchmarks/lm_sampler.py --hidden 128 --layers 4 --ff 512 --dtype bf16
python benchmarks/lm_grpo_step.py                                         # model (a) vs TRL GRPOTrainer
python benchmarks/lm_mfu.py                                               # model (b) forward+backward
