#!/usr/bin/env bash
# The small-scale OGBench tier of docs/results/trqam.md (issue #9): scene task2, BC / FQL / QAM(beta 1, 10) /
# TRQAM(eps 1), 2 seeds, `--preset cpu-small`, on a 2-core CPU. Wall times are in the results doc.
set -euo pipefail
export OMP_NUM_THREADS=1 MUJOCO_GL=disable
command -v tether >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
tether flow data --env scene-play --episodes 500 --workers 2 --out data/ogbench     # 22.7 min on 2 busy cores
tether sweep experiments/sweeps/scene_task2.toml                                     # 10 runs as Ray tasks
tether sweep experiments/sweeps/scene_task2_eps.toml                                 # TRQAM eps 0.1 and 3, seed 0
python experiments/ogbench_table.py runs/sweep/scene_task2
python experiments/ogbench_table.py runs/sweep/scene_task2_eps
tether report runs/sweep/scene_task2/method*/ --out runs/sweep/scene_task2/report \
  --keys kl/path,dual/trqam/lambda,q/mean,loss/critic
