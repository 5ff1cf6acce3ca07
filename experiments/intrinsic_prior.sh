#!/usr/bin/env bash
# Prior check of the four shipped bases (intrinsic.md §5.4): 128 held-out running-sum prompts x 8 samples at T=1,
# pass@1, maj@8, diversity and the global / within-group AUROC of every label-free reward for correctness.
# ~15 s per base on one core. Output: one JSON line per reward plus a summary line, in OUT/<base>.jsonl.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
out=${1:-runs/intrinsic/prior}
mkdir -p "$out"
for b in strong medium weak anti; do
  tether lm prior-check --model "base:$b" --task running_sum --samples 8 --n-prompts 128 --json > "$out/$b.jsonl"
done
