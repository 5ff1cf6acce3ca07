"""Critic-error toy sweep for docs/results/trqam.md: every row is what `tether flow toy --json` prints with the
same flags (run in one process so the BC base of each seed is trained once). Usage:

    python benchmarks/flow_toy_sweep.py --worker 0 --workers 2 --out runs/flow_toy/results_w0.jsonl
"""

from __future__ import annotations

import argparse
import json

import torch

from tether.flow.cli import toy_summary
from tether.flow.methods import with_hparams
from tether.flow.toy.toy import ToyConfig, run_toy_dict

SEEDS = (0, 1, 2)


def jobs(steps: int, bc_steps: int, width: int) -> list[ToyConfig]:
    base = ToyConfig(steps=steps, bc_steps=bc_steps, width=width)
    grid = []
    for c, q, critic in ((2.0, 1.0, "misspecified"), (6.0, 1.0, "misspecified"), (2.0, 10.0, "misspecified"),
                         (2.0, 1.0, "learned")):
        b = with_hparams(base, critic_error=c, q_scale=q, critic=critic)
        grid.append(with_hparams(b, method="bc"))
        if critic == "learned":
            grid += [with_hparams(b, method="qam", beta=10.0), with_hparams(b, method="trqam", kl_budget=0.5)]
        elif (c, q) == (2.0, 1.0):
            grid += [with_hparams(b, method="qam", beta=x) for x in (1.0, 3.0, 10.0, 30.0)]
            grid += [with_hparams(b, method="trqam", kl_budget=x) for x in (0.1, 0.5, 2.0)]
            grid += [with_hparams(b, method="fql", alpha=x) for x in (10.0, 100.0)]
        elif c == 6.0:
            grid += [with_hparams(b, method="qam", beta=x) for x in (3.0, 10.0)]
            grid += [with_hparams(b, method="trqam", kl_budget=x) for x in (0.5, 2.0)]
        else:
            grid += [with_hparams(b, method="qam", beta=3.0), with_hparams(b, method="fql", alpha=10.0)]
            grid += [with_hparams(b, method="trqam", kl_budget=x) for x in (0.5, 2.0)]
    return [with_hparams(j, seed=s) for s in SEEDS for j in grid]


def log_dual_jobs(steps: int, bc_steps: int, width: int) -> list[ToyConfig]:
    """Ablation (not in the paper): TRQAM with the dual step on log(lambda)."""
    base = with_hparams(ToyConfig(), method="trqam", steps=steps, bc_steps=bc_steps, width=width, log_dual=True)
    grid = [with_hparams(base, kl_budget=e, q_scale=q) for q in (1.0, 10.0) for e in (0.1, 0.5, 2.0)]
    grid += [with_hparams(base, kl_budget=e, critic_error=6.0) for e in (0.5, 2.0)]
    return [with_hparams(j, seed=s) for s in SEEDS for j in grid]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--bc-steps", type=int, default=2000)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--log-dual", action="store_true", help="run the log-space dual ablation grid instead")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    grid = log_dual_jobs if a.log_dual else jobs
    mine = grid(a.steps, a.bc_steps, a.width)[a.worker::a.workers]
    with open(a.out, "a") as f:
        for cfg in mine:
            d = toy_summary(run_toy_dict(cfg))
            f.write(json.dumps(d) + "\n")
            f.flush()
            print(d["method"], d["critic_error"], d["q_scale"], d["critic"], d["seed"], flush=True)


if __name__ == "__main__":
    main()
