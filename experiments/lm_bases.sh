#!/usr/bin/env bash
# Builds the three shipped running-sum bases in tether/lm/model/assets/bases/ (0.1M-parameter TinyLM, d=64, 2 layers).
# ~4 minutes on a quiet core (bit-identical weights on rerun); each writes model.safetensors, config.json and eval.json (held-out and
# OOD greedy accuracy, pass@8, maj@8 on 128 problems). Numbers: docs/results/lm-engine.md.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"   # the repo venv when not activated
out=${1:-tether/lm/model/assets/bases}
tether lm pretrain --task running_sum --steps 1500 --error-rate 0.0 --alignment neutral --eval-prompts 128 --out "$out/strong"
tether lm pretrain --task running_sum --steps 600 --error-rate 0.1 --alignment aligned --eval-prompts 128 --out "$out/medium"
tether lm pretrain --task running_sum --steps 200 --error-rate 0.3 --alignment aligned --eval-prompts 128 --out "$out/weak"
