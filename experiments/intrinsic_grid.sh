#!/usr/bin/env bash
# Label-free RL grid of issue 7 (intrinsic.md §5.5): GRPO from a shipped base with one reward per run, 60 steps of
# 16 prompts x G=8 (the gsm-tiny recipe: lr 3e-5, clip-higher 0.28, no KL), held-out evaluation every 10 steps on
# 128 fixed problems (greedy accuracy, and sampled accuracy at T=1 with k=4). One run ~1-2 min on one core.
# Cells run in the order listed (priority order: what ran in the session is in docs/results/intrinsic.md).
# Several copies of this script may run side by side (one thread each): a cell is claimed by creating
# <run dir>.claim, finished cells (final eval logged) are skipped, so the grid can be resumed.
#   usage: bash experiments/intrinsic_grid.sh [OUT] [CELLS_FILE]   (a cell = "base reward seed" per line)
set -uo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
out=${1:-runs/intrinsic}
cells() {
  for s in 0 1; do for r in correct lp ent avg_ent cp majority random format; do echo "medium $r $s"; done; done
  for s in 0 1; do for b in anti weak; do for r in correct ent lp; do echo "$b $r $s"; done; done; done
  for r in correct lp ent avg_ent cp majority random format; do echo "medium $r 2"; done
  for s in 0 1; do for r in renyi self_certainty; do echo "medium $r $s"; done; done
  for b in anti weak; do for r in correct ent lp; do echo "$b $r 2"; done; done
  for s in 0 1; do for r in avg_ent cp majority random format; do echo "anti $r $s"; done; done
  for s in 0 1; do for r in avg_ent cp majority random format; do echo "weak $r $s"; done; done
  for s in 0 1 2; do for r in correct lp ent avg_ent cp majority random format; do echo "strong $r $s"; done; done
}
if [[ $# -ge 2 ]]; then list=$(cat "$2"); else list=$(cells); fi
while read -r base reward seed; do
  dir="$out/$base/$reward/s$seed"
  [[ -f "$dir/eval.jsonl" ]] && grep -q '"step": 60' "$dir/eval.jsonl" && continue
  mkdir -p "$(dirname "$dir")"
  mkdir "$dir.claim" 2>/dev/null || continue
  echo "$(date +%T) start $base $reward s$seed"
  tether lm train --preset gsm-tiny --steps 60 --model.path "base:$base" --algo.reward "$reward" \
    --eval.every 10 --eval.n_prompts 128 --eval.k 4 --eval.splits heldout --samples-every 0 \
    --run.dir "$dir" --run.seed "$seed" > "$dir.log" 2>&1 || echo "FAILED $base $reward s$seed (see $dir.log)"
  echo "$(date +%T) done  $base $reward s$seed"
done <<< "$list"
