"""The official QAM code trained on tether's local scene dataset, at tether's scale: is the gap to the published
numbers in tether or in the budget? (docs/results/trqam.md §6.6)

    /path/to/jax/python experiments/ogbench_peer.py --peer /tmp/peer-qam --data data/ogbench --task 1 \\
        --updates 50000 --eval-every 10000 --episodes 50 --width 256 --num-qs 2 --seed 0

--peer is a checkout of ColinQiyangLi/qam (outside this repository; nothing of it is copied here): this script
imports its `agents`, `envs.env_utils`, `utils.datasets` and `evaluation` and runs the offline loop of its
`main.py` (the sparse-reward relabelling, `sample_sequence(batch, horizon, discount)`, `agent.update`,
`evaluate(...)` of full action chunks) with the flags of its `experiments/reproduce.py` for `scene-play-sparse`
(inv_temp 1, fql_alpha 0, edit_scale 0, rho 0.5, discount 0.99, horizon 5, action chunking) except width, N_Q and
the number of updates, which are tether's `--preset cpu-scene` values by default. The python needs jax, flax,
optax, distrax, ml_collections and ogbench (see the header of benchmarks/flow_update_cost.py for a venv that
shares this project's packages). Appends one JSON line per evaluation to --out with the keys of
docs/results/data/ogbench_scene.jsonl plus `impl` (the peer's commit) and `ms_per_update`.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", required=True, help="checkout of ColinQiyangLi/qam")
    p.add_argument("--data", default="data/ogbench", help="folder with scene-play-v0.npz and scene-play-v0-val.npz")
    p.add_argument("--task", type=int, default=1)
    p.add_argument("--updates", type=int, default=50_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--num-qs", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--inv-temp", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peer-rev", default=None, help="the peer's commit, recorded in each line (default: git rev-parse)")
    p.add_argument("--out", default="docs/results/data/ogbench_scene_peer.jsonl")
    a = p.parse_args()
    peer, data = Path(a.peer).resolve(), Path(a.data).resolve()
    if not (peer / "agents" / "qam.py").is_file():
        raise SystemExit(f"--peer {a.peer}: expected a checkout of ColinQiyangLi/qam (agents/qam.py not found)")
    for f in ("scene-play-v0.npz", "scene-play-v0-val.npz"):
        if not (data / f).is_file():
            raise SystemExit(f"--data {a.data}: {f} not found (tether flow data --env scene-play --episodes 1000)")
    for name, v in (("task", a.task), ("updates", a.updates), ("eval-every", a.eval_every),
                    ("episodes", a.episodes), ("width", a.width), ("num-qs", a.num_qs), ("batch", a.batch)):
        if v < 1:
            raise SystemExit(f"--{name} {v}: expected an integer >= 1")
    commit = a.peer_rev or subprocess.run(["git", "-C", str(peer), "rev-parse", "--short", "HEAD"],
                                          capture_output=True, text=True).stdout.strip() or "unknown"

    sys.path.insert(0, str(peer))
    import jax
    import numpy as np
    import ogbench

    # the peer's loader calls ogbench.make_env_and_datasets(name) with OGBench's default folder: point it at ours
    ogbench.make_env_and_datasets = functools.partial(ogbench.make_env_and_datasets, dataset_dir=str(data))
    from agents import agents
    from agents.qam import get_config
    from envs.env_utils import make_env_and_datasets
    from evaluation import evaluate
    from utils.datasets import Dataset

    env_name = f"scene-play-singletask-task{a.task}-v0"
    _, eval_env, train, _ = make_env_and_datasets(env_name)
    d = dict(train)
    d["rewards"] = (d["rewards"] != 0.0) * -1.0   # main.py --sparse=True (reproduce.py's scene-play-sparse)
    train = Dataset.create(**d)
    config = get_config()
    config.update(dict(horizon_length=5, action_chunking=True, inv_temp=a.inv_temp, fql_alpha=0.0, edit_scale=0.0,
                       num_qs=a.num_qs, rho=0.5, discount=0.99, batch_size=a.batch,
                       actor_hidden_dims=(a.width,) * 4, value_hidden_dims=(a.width,) * 4))
    np.random.seed(a.seed)
    ex = train.sample(())
    agent = agents[config["agent_name"]].create(a.seed, ex["observations"], ex["actions"], config)
    print(f"official QAM @ {commit}: {env_name}, 4x{a.width}, N_Q {a.num_qs}, batch {a.batch}, "
          f"inv_temp {a.inv_temp}, {a.updates} updates, jax {jax.__version__} on {jax.devices()[0].platform}",
          flush=True)

    base = dict(task=a.task, method="qam", param="beta", value=a.inv_temp, seed=a.seed, phase="offline",
                episodes=a.episodes, width=a.width, batch=a.batch, num_qs=a.num_qs, impl=f"ColinQiyangLi/qam@{commit}")

    def log_eval(step: int, ms: float | None) -> None:
        t = time.time()
        stats, _, _ = evaluate(agent=agent, env=eval_env, action_dim=ex["actions"].shape[-1],
                               num_eval_episodes=a.episodes, num_video_episodes=0)
        line = {**base, "updates": step, "success": float(stats["success"]), "ms_per_update": ms}
        with open(a.out, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"{time.strftime('%H:%M:%S')} updates {step}: success {line['success']:.2f} "
              f"(eval {time.time() - t:.0f} s, {ms or 0:.1f} ms/update)", flush=True)

    log_eval(0, None)
    t0, last = time.time(), 0
    for i in range(1, a.updates + 1):
        batch = train.sample_sequence(config["batch_size"], sequence_length=5, discount=config["discount"])
        agent, info = agent.update(batch)
        if i % 1000 == 0:
            jax.block_until_ready(agent.network.params)
            el = time.time() - t0
            q = info.get("critic/q_mean", float("nan"))
            print(f"  {i}/{a.updates} updates, q_mean {float(q):.2f}, "
                  f"ETA {el / (i - last) * (a.updates - i) / 60:.0f} min", flush=True)
        if i % a.eval_every == 0 or i == a.updates:
            jax.block_until_ready(agent.network.params)
            ms = (time.time() - t0) / (i - last) * 1e3
            log_eval(i, round(ms, 1))
            t0, last = time.time(), i


if __name__ == "__main__":
    main()
