"""The GPU check behind benchmarks/gpu_check.sh: (1) one update on CUDA equals the CPU update, (2) per-update time of
our FQL/QAM/TRQAM at 512/10, batch 256, fp32 and bf16, against the official JAX agents on the same GPU.

(1) A CPU agent and a CUDA agent start from the same weights (initialised on the CPU from one seed) and draw the
same random numbers (their `noise`/`uniform` replaced by one CPU generator per agent, same seed, copied to the
device), then take one update on the same batch. Tolerances: every logged metric within rel 1e-4 (+ abs 1e-5),
every weight within 2 lr + 1e-6 (Adam's first step is lr * sign-like: a gradient within rounding of 0 may flip its
sign; nothing else may differ by more). TF32 is off, so matmuls are fp32 on both sides.
(2) flow_update_cost's interleaved timing (A B A B, synchronised after each update), wall ms medians.

Writes one JSON object to $OUT/gpu_check.json when OUT is set (and always to stdout).
`--self-test` runs (1) CPU against CPU, so the script's own logic is checked on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the GPU with torch

import flow_update_cost as fu  # noqa: E402
import torch  # noqa: E402

LR = 3e-4


def shared_draws(agent, seed: int) -> None:
    """Route every random draw of `agent` through one CPU generator (same stream on every device)."""
    g = torch.Generator().manual_seed(seed)
    dev = agent.device
    agent.noise = lambda n, *lead: torch.randn(*lead, n, agent.action_dim, generator=g).to(dev)
    agent.uniform = lambda n: torch.rand(n, 1, generator=g).to(dev)


def one_update(name: str, width: int, num_qs: int, device: str, bf16: bool = False):
    from dataclasses import replace

    from tether.flow.agent import AgentConfig
    from tether.flow.fql import FQLAgent, FQLConfig
    from tether.flow.qam import QAMAgent, QAMConfig
    from tether.flow.trqam import TRQAMAgent, TRQAMConfig

    cfg = replace(AgentConfig(horizon=fu.H, hidden=(width,) * 4, critic_hidden=(width,) * 4, num_qs=num_qs,
                              flow_steps=fu.K, lr=LR), bf16=bf16)
    cls = {"fql": (FQLAgent, FQLConfig()), "qam": (QAMAgent, QAMConfig(beta=3.0)),
           "trqam": (TRQAMAgent, TRQAMConfig())}[name]
    agent = cls[0](cls[1], fu.OBS, fu.ACT, agent=cfg, seed=0, device=device)
    shared_draws(agent, 1)
    batch = fu.torch_batch(fu.numpy_batches(1)[0], device)
    metrics = {k: float(v) for k, v in agent.update(batch).items()}
    return metrics, {k: v.detach().cpu() for k, v in agent.state_dict().items()}


def equivalence(device: str, width: int = 128, num_qs: int = 2) -> list[dict]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    for name in ("fql", "qam", "trqam"):
        m_cpu, w_cpu = one_update(name, width, num_qs, "cpu")
        m_dev, w_dev = one_update(name, width, num_qs, device)
        metric_err = {k: abs(m_cpu[k] - m_dev[k]) / (abs(m_cpu[k]) + 1e-5) for k in m_cpu}
        weight_err = max(float((w_cpu[k].float() - w_dev[k].float()).abs().max()) for k in w_cpu)
        ok = max(metric_err.values()) <= 1e-4 and weight_err <= 2 * LR + 1e-6
        rows.append({"agent": name, "width": width, "num_qs": num_qs, "device": device, "ok": ok,
                     "max_metric_rel_err": max(metric_err.values()),
                     "worst_metric": max(metric_err, key=metric_err.get), "max_weight_abs_err": weight_err,
                     "tolerance": "metrics rel 1e-4 (+abs 1e-5); weights abs 2 lr + 1e-6"})
    return rows


def timing(device: str, peer_dir: str, updates: int) -> list[dict]:
    rows = []
    have_jax = False
    if peer_dir:
        try:
            import jax

            have_jax = jax.default_backend() == "gpu"
            if not have_jax:
                rows.append({"note": f"jax backend is {jax.default_backend()!r}, not gpu: JAX side skipped"})
        except ImportError as e:
            rows.append({"note": f"jax not importable ({e}): JAX side skipped"})
    else:
        rows.append({"note": "no peer dir (PEER / first argument): the JAX side is skipped"})
    for name in ("fql", "qam", "trqam"):
        steps = {"fp32": fu.ours(name, 512, 10, device=device)[0],
                 "bf16": fu.ours(name, 512, 10, device=device, bf16=True)[0]}
        if have_jax:
            steps["jax"] = fu.peer(name, 512, 10, peer_dir)[0]
        r = fu.interleaved(steps, updates)
        row = {"agent": name, "width": 512, "num_qs": 10, "batch": fu.B,
               **{f"{k}_wall_ms": v["wall_ms"] for k, v in r.items()}}
        if have_jax:
            row["speedup_fp32"] = round(r["jax"]["wall_ms"] / r["fp32"]["wall_ms"], 3)
            row["speedup_bf16"] = round(r["jax"]["wall_ms"] / r["bf16"]["wall_ms"], 3)
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--peer", default=os.environ.get("PEER", ""))
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--self-test", action="store_true", help="CPU against CPU (checks this script without a GPU)")
    a = p.parse_args()
    start = time.perf_counter()
    out: dict = {"machine": fu.machine()}
    if a.self_test:
        out["equivalence"] = equivalence("cpu", width=32)
    elif not torch.cuda.is_available():
        out["note"] = "no CUDA device visible: nothing to check (run with --self-test to check the script on CPU)"
    else:
        out["equivalence"] = equivalence("cuda")
        out["timing"] = timing("cuda", a.peer, a.updates)
    out["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(out, indent=1)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / "gpu_check.json").write_text(text + "\n")
    eq = out.get("equivalence", [])
    return 0 if all(r["ok"] for r in eq) else 1


if __name__ == "__main__":
    sys.exit(main())
