"""Has the critic found the reward? Mean Q of each checkpoint of a `tether flow train` run on three kinds of dataset
chunks (the diagnosis docs/results/trqam.md §6 uses when a method stays near 0 % success).

    python experiments/ogbench_q_probe.py runs/ogbench_scene/task1/qam-beta1-s0 [--chunks 4096]

Kinds, among the chunk starts the sampler can draw ([0, size - H + 1), dataset actions):
  success  a step of the chunk solves the task (mask 0: the sparse reward is 0 there);
  before   the next success comes 1..25 steps after the chunk ends;
  other    every other chunk.
Under the sparse reward (-1 per step until success) a critic that has found the reward rates `success` and `before`
chunks well above `other`, which sit near the never-succeed value -1 / (1 - gamma). One JSON line per checkpoint
(step, the three mean Qs and counts, that reference value) on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tether.core.checkpoint import load_checkpoint
from tether.core.config import from_dict
from tether.flow.methods import build_agent
from tether.flow.ogbench.env import Task, load_buffer
from tether.flow.ogbench.train import OGBenchConfig

BEFORE = 25
"""Steps after a chunk within which the next success makes it a `before` chunk."""


def kinds(buffer, horizon: int, discount: float, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Up to n chunk starts of each kind (B,), drawn uniformly within the kind."""
    starts = torch.arange(buffer.size - horizon + 1)
    b = buffer.chunks(starts, horizon, discount)
    success_at = torch.nonzero(buffer.terminals[: buffer.size]).squeeze(1)  # (S,) steps where the task is solved
    nxt = torch.searchsorted(success_at, starts + horizon)  # index of the first success at or after the chunk end
    gap = torch.where(nxt < len(success_at), success_at[nxt.clamp(max=len(success_at) - 1)] - (starts + horizon - 1),
                      torch.full_like(starts, 10**9))
    success = (b.masks == 0) & (b.valid > 0)
    before = ~success & (b.valid > 0) & (gap >= 1) & (gap <= BEFORE)
    other = ~success & ~before & (b.valid > 0)
    pick = lambda m: starts[m][torch.randperm(int(m.sum()), generator=gen)[:n]]  # noqa: E731
    return {"success": pick(success), "before": pick(before), "other": pick(other)}


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--chunks", type=int, default=4096, help="chunks per kind")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = from_dict(OGBenchConfig, json.loads((a.run / "config.json").read_text()))
    task = Task.parse(cfg.task)
    buffer = load_buffer(task, cfg.data_dir, reward=cfg.reward)
    agent = build_agent(cfg.method, cfg, cfg.agent, buffer.obs.shape[1], buffer.actions.shape[1], seed=cfg.run.seed)
    gamma, h = agent.cfg.discount, agent.cfg.horizon
    picked = kinds(buffer, h, gamma, a.chunks, torch.Generator().manual_seed(0))
    for ckpt in sorted((a.run / "checkpoints").glob("step_*")):
        agent.load_training_state(load_checkpoint(ckpt)["agent"])
        row = {"step": int(ckpt.name.split("_")[1])}
        for name, st in picked.items():
            b = buffer.chunks(st, h, gamma)
            q = agent.q_values(b.obs, b.actions, target=False).mean(dim=0) if len(st) else torch.zeros(0)  # (B,)
            row[f"q_{name}"] = round(float(q.mean()), 3) if len(st) else None
            row[f"n_{name}"] = len(st)
        row["q_never_succeed"] = round(-1 / (1 - gamma), 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
