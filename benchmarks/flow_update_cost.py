"""Per-update cost of tether's FQL, QAM and TRQAM, against each other, against variants of themselves, and (with
`--peer DIR`) against the official JAX agents built as their `main.py` builds them, all in one process.

Shapes of the official setting: batch 256, obs 40, action 5 x H = 5 (chunk 25), K = 10 flow steps, 4 hidden layers
of `width`, `num_qs` critics. Synthetic batches (4 in rotation) with the keys and shapes the official
`Dataset.sample_sequence(256, 5)` returns. One thread on each side (torch.set_num_threads(1); XLA without its
Eigen thread pool). Every timed update is followed by a barrier (`jax.block_until_ready`, `torch.cuda.synchronize`).
Timing is interleaved, A B A B with the order flipped each round, so load drifts hit both sides alike; the
reported figure is the median CPU time (time.process_time) per update after warm-up (wall time alongside).

  python benchmarks/flow_update_cost.py --sizes 128/2                        # our three agents, interleaved
  python benchmarks/flow_update_cost.py --sizes 128/2 --variants fp32,bf16   # one agent's variants, interleaved
  python benchmarks/flow_update_cost.py --peer /tmp/peer --sizes 128/2,512/10  # ours vs the official JAX code

`--peer` needs jax, flax, optax, distrax, ml_collections (and tfp-nightly for the peer's imports) importable next to
torch; the project ships none of the peer's code. One JSON line per (agent, width, N_Q[, variant]).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace

XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _set_single_thread_env() -> None:
    """Before jax/torch import: one thread for XLA, OpenMP and MKL."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + XLA_ONE_THREAD).strip()


_set_single_thread_env()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import cpu_name  # noqa: E402

from tether.flow.agent import AgentConfig  # noqa: E402
from tether.flow.data import ChunkBatch  # noqa: E402
from tether.flow.fql import FQLAgent, FQLConfig  # noqa: E402
from tether.flow.qam import QAMAgent, QAMConfig  # noqa: E402
from tether.flow.trqam import TRQAMAgent, TRQAMConfig  # noqa: E402

B, OBS, ACT, H, K = 256, 40, 5, 5, 10
VARIANTS = {"fp32": {}, "bf16": {"bf16": True}, "compiled": {"compile": True}}
"""Named AgentConfig overrides that `--variants` times against each other."""


def machine() -> dict:
    """Where a figure comes from: CPU name and torch's SIMD capability (AVX2 vs AVX512 decide bf16 speed)."""
    out = {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def numpy_batches(n: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The official `sample_sequence(256, 5)` keys and shapes, float32."""
    rng = np.random.default_rng(seed)
    f = np.float32
    return [{"observations": rng.standard_normal((B, OBS)).astype(f),
             "actions": rng.uniform(-1, 1, (B, H, ACT)).astype(f),
             "rewards": rng.standard_normal((B, H)).astype(f), "masks": np.ones((B, H), f),
             "terminals": np.zeros((B, H), f), "valid": np.ones((B, H), f),
             "next_observations": rng.standard_normal((B, H, OBS)).astype(f)} for _ in range(n)]


def torch_batch(b: dict[str, np.ndarray], device: str) -> ChunkBatch:
    t = lambda x: torch.as_tensor(x, device=device)  # noqa: E731
    disc = 0.99 ** np.arange(H, dtype=np.float32)
    return ChunkBatch(t(b["observations"]), t(b["actions"].reshape(B, H * ACT)), t((b["rewards"] * disc).sum(1)),
                      t(b["masks"][:, -1]), t(b["valid"][:, -1]), t(b["next_observations"][:, -1]))


def ours(name: str, width: int, num_qs: int, *, device: str = "cpu", **overrides):
    cfg = replace(AgentConfig(horizon=H, hidden=(width,) * 4, critic_hidden=(width,) * 4, num_qs=num_qs,
                              flow_steps=K), **overrides)
    build = {"fql": lambda: FQLAgent(FQLConfig(), OBS, ACT, agent=cfg, device=device),
             "qam": lambda: QAMAgent(QAMConfig(beta=3.0), OBS, ACT, agent=cfg, device=device),
             "trqam": lambda: TRQAMAgent(TRQAMConfig(), OBS, ACT, agent=cfg, device=device)}
    agent = build[name]()
    data = [torch_batch(b, device) for b in numpy_batches()]
    sync = torch.cuda.synchronize if agent.device.type == "cuda" else (lambda: None)

    def step(i: int) -> None:
        agent.update(data[i % len(data)])
        sync()

    params = sum(p.numel() for p in agent.params)
    return step, params


def peer(name: str, width: int, num_qs: int, peer_dir: str):
    """The official agent built as its main.py does: get_config(), action chunking with H = 5, the sizes, and for
    QAM the README's reproduce flags (inv_temp 3, fql_alpha 0, edit_scale 0); `Agent.create(seed, ex_obs (40,),
    ex_act (5,), config)`."""
    if peer_dir not in sys.path:
        sys.path.insert(0, peer_dir)
    import importlib

    import jax

    module = importlib.import_module(f"agents.{name}")
    config = module.get_config()
    config["action_chunking"], config["horizon_length"], config["bc_only"] = True, H, False
    config["actor_hidden_dims"] = config["value_hidden_dims"] = (width,) * 4
    config["num_qs"], config["batch_size"], config["flow_steps"] = num_qs, B, K
    if name == "qam":
        config["inv_temp"], config["fql_alpha"], config["edit_scale"] = 3.0, 0.0, 0.0
    cls = {"fql": "FQLAgent", "qam": "QAMAgent", "trqam": "TRQAMAgent"}[name]
    holder = [getattr(module, cls).create(0, np.zeros(OBS, np.float32), np.zeros(ACT, np.float32), config)]
    data = numpy_batches()

    def step(i: int) -> None:
        holder[0], info = holder[0].update(data[i % len(data)])
        jax.block_until_ready((holder[0], info))

    params = sum(x.size for k, x in holder[0].network.params.items() if "target" not in k
                 for x in jax.tree_util.tree_leaves(x))
    return step, params


def interleaved(steps: dict, updates: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Each round times one update of every side, the order rotated each round; medians over rounds."""
    names = list(steps)
    first = {}
    for n in names:  # first call: trace/compile on the JAX side
        w0 = time.perf_counter()
        steps[n](0)
        first[n] = time.perf_counter() - w0
    for i in range(warmup):
        for n in names:
            steps[n](i + 1)
    cpu = {n: [] for n in names}
    wall = {n: [] for n in names}
    for i in range(updates):
        r = i % len(names)
        for n in names[r:] + names[:r]:
            c0, w0 = time.process_time(), time.perf_counter()
            steps[n](i)
            cpu[n].append(time.process_time() - c0)
            wall[n].append(time.perf_counter() - w0)
    return {n: {"cpu_ms": round(1e3 * statistics.median(cpu[n]), 2),
                "wall_ms": round(1e3 * statistics.median(wall[n]), 2), "first_call_s": round(first[n], 2)}
            for n in names}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="128/2", help="width/num_qs pairs, comma-separated, e.g. 128/2,512/10")
    p.add_argument("--agents", default="fql,qam,trqam")
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--peer", default="", help="checkout of the official JAX code (yonghdong/trqam): time it too")
    p.add_argument("--variants", default="", help=f"time these of ours against each other: {','.join(VARIANTS)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="our side under bf16 autocast (with --peer)")
    p.add_argument("--out", default="", help="also append the JSON lines to this file")
    a = p.parse_args()
    torch.set_num_threads(1)
    info = machine()
    lines = []
    for size in a.sizes.split(","):
        width, num_qs = map(int, size.split("/"))
        names = a.agents.split(",")
        if a.peer:
            import jax

            info["jax"], info["jax_backend"] = jax.__version__, jax.default_backend()
            for name in names:
                steps = {"ours": ours(name, width, num_qs, device=a.device, bf16=a.bf16)[0],
                         "jax": peer(name, width, num_qs, a.peer)[0]}
                r = interleaved(steps, a.updates)
                lines.append({"agent": name, "width": width, "num_qs": num_qs, "batch": B,
                              "ours": "bf16" if a.bf16 else "fp32", "device": a.device,
                              "ours_cpu_ms": r["ours"]["cpu_ms"], "jax_cpu_ms": r["jax"]["cpu_ms"],
                              "ours_wall_ms": r["ours"]["wall_ms"], "jax_wall_ms": r["jax"]["wall_ms"],
                              "speedup": round(r["jax"]["cpu_ms"] / r["ours"]["cpu_ms"], 3),
                              "speedup_wall": round(r["jax"]["wall_ms"] / r["ours"]["wall_ms"], 3),
                              "jax_first_call_s": r["jax"]["first_call_s"], "updates": a.updates, **info})
        elif a.variants:
            for name in names:
                steps = {v: ours(name, width, num_qs, device=a.device, **VARIANTS[v])[0] for v in a.variants.split(",")}
                for v, row in interleaved(steps, a.updates).items():
                    lines.append({"agent": name, "width": width, "num_qs": num_qs, "variant": v, **row, **info})
        else:
            steps = {n: ours(n, width, num_qs, device=a.device, bf16=a.bf16)[0] for n in names}
            r = interleaved(steps, a.updates)
            for n in names:
                lines.append({"agent": n, "width": width, "num_qs": num_qs, **r[n], **info})
            if "qam" in r and "trqam" in r:
                lines.append({"ratio": "trqam/qam", "width": width, "num_qs": num_qs,
                              "value": round(r["trqam"]["cpu_ms"] / r["qam"]["cpu_ms"], 3)})
        for line in lines:
            print(json.dumps(line), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(line) + "\n")
        lines = []


if __name__ == "__main__":
    main()
