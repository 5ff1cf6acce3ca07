"""TRQAM dual traces on the critic-error toy: path KL, its EMA and lambda_eff per update, Q x 1 vs Q x 10.

Writes docs/results/figures/trqam_toy_dual_trace.png and prints one JSON row per run (final metrics).
Usage: OMP_NUM_THREADS=1 python benchmarks/flow_toy_traces.py --seed 0
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from tether.flow.methods import with_hparams  # noqa: E402
from tether.flow.toy.toy import ToyConfig, run_toy_dict  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--variant", choices=["toy", "paper", "log"], default="toy",
                   help="toy: eta 0.05, lam_scale 1; paper: eta 0.01, lam_scale 3; "
                        "log: toy + log-space dual (ablation)")
    p.add_argument("--q-scales", default="1,10")
    p.add_argument("--out", default="docs/results/figures/trqam_toy_dual_trace.png")
    a = p.parse_args()
    torch.set_num_threads(1)
    runs = [(eps, float(q)) for eps in (0.5, 2.0) for q in a.q_scales.split(",")]
    dual = {"toy": {}, "paper": {"eta": 0.01, "lam_scale": 3.0}, "log": {"log_dual": True}}[a.variant]
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.8))
    for eps, q in runs:
        cfg = with_hparams(ToyConfig(), method="trqam", kl_budget=eps, critic_error=2.0, q_scale=q, steps=a.steps,
                           bc_steps=2000, width=64, seed=a.seed, **dual)
        d = {"variant": a.variant, **run_toy_dict(cfg)}
        tr = d.pop("trace")
        d.pop("samples")
        print(json.dumps(d), flush=True)
        steps = [r["step"] for r in tr]
        style = "-" if q == 1.0 else "--"
        axes[0].plot(steps, [r["kl/path_ema"] for r in tr], style, label=f"eps={eps:g}, Q x {q:g}")
        axes[0].axhline(eps, color="k", lw=0.5, ls=":")
        axes[1].plot(steps, [r["dual/trqam/lambda"] for r in tr], style, label=f"eps={eps:g}, Q x {q:g}")
    axes[0].set(xlabel="update", ylabel="kl/path_ema (clipped at 2 eps)", yscale="log")
    axes[1].set(xlabel="update", ylabel="lambda_eff", yscale="log")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"TRQAM dual on the toy (c = 2), variant: {a.variant}", fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)
    print(a.out)


if __name__ == "__main__":
    main()
