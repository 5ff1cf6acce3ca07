#!/usr/bin/env bash
# Bases of the intrinsic grid that are not shipped with every install (issue 7, issue 20).
#   anti          the strong base's size and schedule (d=64, 2 layers, 1500 steps), but 20% of the corpus traces
#                 carry an arithmetic slip and every erroneous trace is *terse and confident* (intermediate steps
#                 dropped), so short, certain completions are the wrong ones. Shipped in tether/lm/model/assets/bases/anti.
#   medium-check  the medium recipe (600 steps, error rate 0.1, aligned) on the check-step corpus: each step of a
#                 correct trace is followed with probability 0.4 by a redundant check (`8+2=10;10-2=8`), and the
#                 completion cap is 36 tokens, which truncates 20 % of the corpus traces that carry a check and none
#                 of those without (measured on 20000 traces: 14.7 % at p=0.3, 20.1 % at p=0.4, 25.3 % at p=0.5).
#                 So a length penalty has something to cut that costs no accuracy. Built into runs/intrinsic/bases.
# Each is one heavy job (~1-4 minutes on one core), run under the machine-wide lock; eval.json holds the
# held-out/OOD accuracy.  usage: bash experiments/intrinsic_bases.sh [anti|medium-check ...]
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
for b in "${@:-medium-check}"; do
  case $b in
    anti) flock /tmp/tether-heavy.lock tether lm pretrain --task running_sum --steps 1500 --error-rate 0.2 \
            --alignment anti --eval-prompts 128 --out tether/lm/model/assets/bases/anti ;;
    medium-check) mkdir -p runs/intrinsic/bases
            flock /tmp/tether-heavy.lock tether lm pretrain --task running_sum --steps 600 --error-rate 0.1 \
              --alignment aligned --check-rate 0.4 --max-new-tokens 36 --eval-prompts 128 \
              --out runs/intrinsic/bases/medium-check ;;
    *) echo "unknown base '$b': expected anti or medium-check" >&2; exit 2 ;;
  esac
done
