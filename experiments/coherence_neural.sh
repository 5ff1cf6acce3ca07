#!/usr/bin/env bash
# Neural coherence results (issue 8; docs/results/coherence.md, neural section). One CPU thread, ~6-10 minutes.
# Every number and figure of the neural section comes from this script:
#   bash experiments/coherence_neural.sh [OUT_DIR]      (default runs/coherence_neural)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/coherence_neural}
FIG=docs/results/figures
mkdir -p "$OUT" "$FIG"

neural() {  # `tether coherence neural ARGS`, or the same parse + run if the CLI is not wired yet
  if command -v tether >/dev/null 2>&1 && tether coherence neural --help >/dev/null 2>&1; then
    tether coherence neural "$@"
  else
    "$PY" -c 'import sys, torch; torch.set_num_threads(1)
from tether.core.config import parse_args
from tether.coherence.neural.cli import run_neural
from tether.coherence.neural.train import NeuralConfig
sys.exit(run_neural(parse_args(NeuralConfig, sys.argv[1:])))' "$@"
  fi
}

S="--seeds 3 --rollouts 4000"
neural --env mountain-race --rounds 16 $S --fold_rounds 5 --out "$OUT/mountain"
neural --env deep-mountain-race --depth 2 --rounds 12 $S --fold_rounds 5 --out "$OUT/deep2"
neural --env deep-mountain-race --depth 3 --rounds 14 $S --fold_rounds 5 --out "$OUT/deep3"
neural --env stochastic-counterexample --rounds 15 $S --accepted 1500 --out "$OUT/stochastic"
neural --env deep-mountain-race --depth 3 --rounds 14 $S --mode filtered_bc --rejection false --out "$OUT/deep3_fbc"
neural --env mountain-race --rounds 10 $S --prior skewed --skew 0.7 --out "$OUT/mountain_skewed"
neural --env deep-mountain-race --depth 2 --slip 0.1 --rounds 12 $S --out "$OUT/deep2_slip"

"$PY" - "$OUT" "$FIG" <<'PY'
"""Verdicts (printed) and the docs figures, from the runs above."""
import json, sys
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt
from tether.coherence.neural.cli import cost_axes, cost_curve, plot_neural

out, fig_dir = Path(sys.argv[1]), Path(sys.argv[2])
load = lambda name, f: [json.loads(l) for l in (out / name / f).read_text().splitlines()]
for name in ["mountain", "deep2", "deep3", "stochastic", "deep3_fbc", "mountain_skewed", "deep2_slip"]:
    rows, agg = load(name, "rows.jsonl"), load(name, "neural.jsonl")
    plot_neural(rows, fig_dir / f"coherence_neural_{name}.png", title=name)
    last = agg[-1]
    print(f"\n== {name}: K = {last['round']}, seeds = {last['n_seeds']}")
    print(f"final success {last['success']:.4f} ± {last['success_sd']:.4f}, exact {last['exact_success']:.4f}, "
          f"|gap| {abs(last['success'] - last['exact_success']):.4f}")
    print(f"max one-step fidelity TV (any seed, any round) {max(r['fidelity_tv'] for r in rows):.4f}; "
          f"mean {np.mean([r['fidelity_tv'] for r in rows]):.4f}")
    cross = lambda key, rs: next((r["round"] for r in rs if r[key][0] > 0.5), None)
    print(f"root crossing 0.5: neural mean {cross('root_policy', agg)}, exact {cross('exact_root_policy', agg)}, "
          f"per seed {[cross('root_policy', [r for r in rows if r['seed'] == s]) for s in sorted({r['seed'] for r in rows})]}")
    print("k: neural root / exact / tempered / rejection | kappa_1 n/e | kappa_1/k n/e | tv_to_tempered")
    for r in agg:
        rej = f"{r['rejection_root_policy'][0]:.3f}" if "rejection_root_policy" in r else "  -  "
        print(f"{r['round']:>2}: {r['root_policy'][0]:.3f} / {r['exact_root_policy'][0]:.3f} / "
              f"{r['tempered_root_policy'][0]:.3f} / {rej} | {r['kappa_1']:.4f} {r['exact_kappa_1']:.4f} | "
              f"{r['kappa_inv_k']:.4f} {r['exact_kappa_inv_k']:.4f} | {r['tv_to_tempered']:.4f}"
              + (f" | fold a={r['fold_alpha']} S={r['fold_success']:.4f} exact {r['fold_exact_success']:.4f} "
                 f"samples {r['fold_env_samples']:.0f}" if "fold_alpha" in r else ""))
    if "rejection_success" in last:
        print(f"final rejection success {last['rejection_success']:.4f}, tempered {last['tempered_success']:.4f}")
        for m in (4000, 40000):
            curves = cost_curve(agg, 4000, m)
            for level in (0.85, 0.9, 0.95):
                costs = {k: min((c for s, c in v if s >= level), default=None) for k, v in curves.items()}
                print(f"env samples to deliver {m} trajectories at S >= {level}: " +
                      ", ".join(f"{k} {'-' if c is None else f'{c:.0f}'}" for k, c in costs.items()))

fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for ax, name in zip(axes, ["mountain", "deep2", "deep3"]):
    cost_axes(ax, load(name, "neural.jsonl"), 4000)
    ax.set_title(name, fontsize=9)
fig.tight_layout()
fig.savefig(fig_dir / "coherence_neural_cost.png", dpi=72)
print("\nfigures:", sorted(p.name for p in fig_dir.glob("coherence_neural_*.png")))
PY
