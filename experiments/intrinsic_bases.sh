#!/usr/bin/env bash
# Builds the strong-but-anti-aligned running-sum base tether/lm/model/assets/bases/anti (issue 7, intrinsic.md §5.3):
# the strong base's size and schedule (d=64, 2 layers, 1500 steps), but 20% of the corpus traces carry an
# arithmetic slip and every erroneous trace is *terse and confident* (intermediate steps dropped), so short,
# certain completions are the wrong ones. ~4 minutes on one quiet core; eval.json holds held-out/OOD accuracy.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
out=${1:-tether/lm/model/assets/bases}
tether lm pretrain --task running_sum --steps 1500 --error-rate 0.2 --alignment anti --eval-prompts 128 --out "$out/anti"
