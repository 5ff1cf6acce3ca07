#!/usr/bin/env bash
# GRPO demonstration behind docs/results/lm-engine.md: the gsm-tiny recipe (GT reward, shipped medium base,
# 100 steps of 16 prompts x G=8) for seeds 0 1 2, two processes at a time; prints one JSON summary line.
# Each seed equals: tether lm train --preset gsm-tiny --run.seed S --run.dir runs/lm_demo/seedS
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"   # the repo venv when not activated
python benchmarks/lm_grpo_demo.py --seeds 0 1 2 --out "${1:-runs/lm_demo}"
