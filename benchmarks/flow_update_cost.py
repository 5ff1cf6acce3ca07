"""Per-update cost of FQL, QAM and TRQAM at equal network sizes (the shapes of notes/anchor_flow_speed.md).

Synthetic batch: obs (256, 40), action chunk 5 x 5 = 25, K = 10 flow steps, 4 hidden layers, one thread.
Updates of the three agents are interleaved. Reports the median CPU time (time.process_time) and wall time per
`agent.update(batch)` after warm-up.
Usage: OMP_NUM_THREADS=1 python benchmarks/flow_update_cost.py --width 128 --num-qs 2 --updates 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tether.flow.agent import AgentConfig
from tether.flow.data import ChunkBatch
from tether.flow.fql import FQLAgent, FQLConfig
from tether.flow.qam import QAMAgent, QAMConfig
from tether.flow.trqam import TRQAMAgent, TRQAMConfig


def batches(n: int, b: int = 256, obs: int = 40, d: int = 25) -> list[ChunkBatch]:
    g = torch.Generator().manual_seed(0)
    return [ChunkBatch(torch.randn(b, obs, generator=g), torch.rand(b, d, generator=g) * 2 - 1,
                       torch.randn(b, generator=g), torch.ones(b), torch.ones(b), torch.randn(b, obs, generator=g))
            for _ in range(n)]


def time_agents(agents: dict, updates: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Interleaved timing: each round times one update of every agent (rotating order), so slow drifts of the
    machine load hit all agents alike. Medians over rounds."""
    data = batches(4)
    names = list(agents)
    for i in range(warmup):
        for n in names:
            agents[n].update(data[i % 4])
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    for i in range(updates):
        for n in names[i % len(names):] + names[: i % len(names)]:
            c0, w0 = time.process_time(), time.perf_counter()
            agents[n].update(data[i % 4])
            cpu[n].append(time.process_time() - c0)
            wall[n].append(time.perf_counter() - w0)
    out = {}
    for n, agent in agents.items():
        params = sum(p.numel() for k, p in agent.named_parameters() if p.requires_grad and "target" not in k)
        out[n] = {"cpu_ms_median": 1e3 * statistics.median(cpu[n]), "wall_ms_median": 1e3 * statistics.median(wall[n]),
                  "wall_ms_min": 1e3 * min(wall[n]), "trainable_params": params}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--num-qs", type=int, default=2)
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--agents", default="fql,qam,trqam")
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = AgentConfig(horizon=5, hidden=(a.width,) * 4, critic_hidden=(a.width,) * 4, num_qs=a.num_qs, flow_steps=10)
    build = {"fql": lambda: FQLAgent(FQLConfig(), 40, 5, agent=cfg),
             "qam": lambda: QAMAgent(QAMConfig(), 40, 5, agent=cfg),
             "trqam": lambda: TRQAMAgent(TRQAMConfig(), 40, 5, agent=cfg)}
    agents = {name: build[name]() for name in a.agents.split(",")}
    for name, row in time_agents(agents, a.updates).items():
        print(json.dumps({"agent": name, "width": a.width, "num_qs": a.num_qs, **row}), flush=True)


if __name__ == "__main__":
    main()
