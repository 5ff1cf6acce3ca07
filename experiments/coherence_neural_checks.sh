#!/usr/bin/env bash
# Side checks for docs/results/coherence.md, neural section (one CPU thread, ~3 minutes):
#  (1) six more seeds on the deep race d = 2 (is the 3-seed lag systematic?),
#  (2) the small causal transformer instead of the GRU (mountain race, 1 seed),
#  (3) speed of both architectures per full-batch Adam step.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/coherence_neural}
mkdir -p "$OUT"

"$PY" - "$OUT" <<'PY'
import sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from tether.coherence import envs, sample_trajectories, uniform_policy
from tether.coherence.neural.model import SequenceModel, encode, fit
from tether.coherence.neural.train import NeuralConfig, label, run

t0 = time.perf_counter()
rows, agg = run(NeuralConfig(env="deep-mountain-race", depth=2, rounds=12, seed=3, seeds=6, rejection=False))
print(f"(1) deep2, seeds 3..8 ({time.perf_counter() - t0:.0f} s): k, neural root mean ± sd, exact root")
for r in agg:
    sd = np.std([x["root_policy"][0] for x in rows if x["round"] == r["round"]])
    print(f"  {r['round']:>2} {r['root_policy'][0]:.3f} ± {sd:.3f}  {r['exact_root_policy'][0]:.3f}"
          f"   S {r['success']:.4f} exact {r['exact_success']:.4f}  fidelity max {r['fidelity_tv_max']:.4f}")

t0 = time.perf_counter()
rows, agg = run(NeuralConfig(env="mountain-race", rounds=6, seeds=1, arch="transformer", lr=3e-3, rejection=False))
print(f"(2) transformer (lr 3e-3), mountain race, 1 seed ({time.perf_counter() - t0:.0f} s): k, S, exact S, root, exact root, fidelity")
for r in agg:
    print(f"  {r['round']} {r['success']:.4f} {r['exact_success']:.4f} {r['root_policy'][0]:.3f} "
          f"{r['exact_root_policy'][0]:.3f} {r['fidelity_tv']:.4f}")

print("(3) ms per full-batch Adam step (median of 3 x 100 steps), N = 4000 rollouts de-duplicated")
for depth in (1, 3):
    m = envs.deep_mountain_race(depth)
    rng = np.random.default_rng(0)
    tr = sample_trajectories(m, uniform_policy(m), 4000, rng)
    data = encode(tr, label(tr, rng), with_null=True)
    res = {}
    for _ in range(3):
        for arch in ("gru", "transformer"):
            torch.manual_seed(0)
            model = SequenceModel(m.n_states, m.n_actions, 64, arch)
            t0 = time.perf_counter()
            fit(model, data, 100, 1e-2)
            res.setdefault(arch, []).append((time.perf_counter() - t0) * 10)
    print(f"  depth {depth} (T = {depth + 1}, {data.outcome.shape[0]} distinct rows): "
          + ", ".join(f"{a} {np.median(v):.1f} ms" for a, v in res.items()))
PY
