#!/usr/bin/env bash
# The envelope lens over the intrinsic grid (Q3 of intrinsic.md §5.1). For each base: all its finished runs, with
#   (a) the label-free envelope (each run's own first 10 steps), and
#   (b) the envelope of that base's ground-truth-reward runs (a labelled choice of reference),
# then (c) every run of every base together (label-free) for the pooled early-warning AUROC and lead time.
# Output: OUT/<base>-{own,gt}/ and OUT/all/ (figures, lens.jsonl, lens.txt = the command's JSON lines).
set -euo pipefail
export OMP_NUM_THREADS=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
root=${1:-runs/intrinsic}
out=${2:-runs/intrinsic/lens}
finished() { for d in "$@"; do grep -qs '"step": 60' "$d/eval.jsonl" && echo "$d"; done; }
all=()
for b in medium anti weak strong; do
  mapfile -t runs < <(finished "$root/$b"/*/s[0-9])
  [[ ${#runs[@]} -ge 2 ]] || continue
  all+=("${runs[@]}")
  mkdir -p "$out"
  tether lm lens "${runs[@]}" --out "$out/$b-own" --json > "$out/$b-own.txt"
  mapfile -t gt < <(finished "$root/$b"/correct/s[0-9])
  if [[ ${#gt[@]} -ge 1 ]]; then
    ref=$(IFS=,; echo "${gt[*]}")
    tether lm lens "${runs[@]}" --reference "$ref" --out "$out/$b-gt" --json > "$out/$b-gt.txt"
  fi
done
tether lm lens "${all[@]}" --out "$out/all" --json > "$out/all.txt"
