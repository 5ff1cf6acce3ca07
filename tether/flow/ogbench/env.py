"""OGBench single-task environments: task names, datasets into a replay buffer, online env, parallel evaluation.

Protocol (OGBench's; docs/results/trqam.md section 6.2): task `<domain>-play-singletask-task{1..5}-v0` reuses
the dataset `<domain>-play-v0` with rewards relabelled for the fixed task by OGBench's own `relabel_dataset`
(via `ogbench.make_env_and_datasets(..., dataset_path=...)`, so downloaded files load the same way).
Manipulation reward = #satisfied subtasks - #subtasks; the "sparse" variant QAM uses is -1[r != 0].
A success gives mask 0 (terminal); the dataset's episode ends are time-outs. Evaluation: 50 episodes,
success at the last step, action chunks executed open-loop, the env copies stepped in worker processes
while the policy runs once per chunk on the batch of all unfinished episodes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from tether.core.config import ConfigError
from tether.core.signals import sigint_blocked, worker_init
from tether.flow.data import ReplayBuffer
from tether.flow.ogbench.data import quiet_mujoco

Reward = Literal["dense", "sparse"]
TASK_RE = re.compile(r"^(?P<domain>[a-z0-9x-]+)-(?P<kind>play|noisy|navigate|stitch|explore)"
                     r"-singletask-task(?P<n>[1-5])-v0$")


@dataclass(frozen=True)
class Task:
    """A parsed task name, e.g. scene-play-singletask-task2-v0."""

    name: str
    domain: str
    dataset: str
    env_id: str

    @classmethod
    def parse(cls, name: str) -> Task:
        m = TASK_RE.match(name)
        if m is None:
            raise ValueError(f"task {name!r}: expected '<domain>-<dataset>-singletask-task<1..5>-v0', "
                             "e.g. 'scene-play-singletask-task2-v0'")
        d = m["domain"]
        return cls(name, d, f"{d}-{m['kind']}", f"{d}-singletask-task{m['n']}-v0")

    def dataset_file(self, data_dir: str | Path) -> Path:
        path = Path(data_dir) / f"{self.dataset}-v0.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: generate it with `tether flow data --env {self.dataset} "
                                    f"--out {data_dir}` (or copy OGBench's downloaded {path.name} and -val.npz there)")
        return path


ACTION_BOUND = 1 - 1e-5
"""Dataset actions are clipped to [-ACTION_BOUND, ACTION_BOUND] on loading (the official value)."""


def make_env(task: Task, max_steps: int = 0):
    """The gymnasium single-task env (terminates at the goal); max_steps 0 = OGBench's eval time limit."""
    quiet_mujoco()
    import gymnasium
    import ogbench.manipspace  # noqa: F401  (registers the envs)

    return gymnasium.make(task.env_id, **({"max_episode_steps": max_steps} if max_steps else {}))


def sparse_reward(r: np.ndarray | float) -> np.ndarray | float:
    """QAM's sparse variant: 0 at success, -1 otherwise."""
    return -1.0 * (np.asarray(r) != 0) if isinstance(r, np.ndarray) else -float(r != 0)


def load_buffer(task: Task, data_dir: str | Path, *, reward: Reward, extra_capacity: int = 0,
                split: Literal["train", "val"] = "train", device: torch.device | str = "cpu") -> ReplayBuffer:
    """The relabelled dataset as a replay buffer on `device` with room for `extra_capacity` online transitions."""
    quiet_mujoco()
    import ogbench

    path = task.dataset_file(data_dir)
    try:
        _, train, val = ogbench.make_env_and_datasets(task.name, dataset_path=str(path))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # a damaged or truncated .npz
        raise ConfigError(f"dataset {path} cannot be read ({type(e).__name__}: {e}); regenerate it with `tether flow "
                          f"data --env {task.dataset} --out {data_dir}` (it resumes from intact shards)") from None
    d = train if split == "train" else val
    rewards = sparse_reward(d["rewards"]) if reward == "sparse" else d["rewards"]
    # as the official code (FQL/QAM/TRQAM data loading): dataset actions strictly inside the bounds, where the
    # oracles' clipped actions often sit exactly
    actions = np.clip(d["actions"], -ACTION_BOUND, ACTION_BOUND)
    n, t = len(d["observations"]), torch.from_numpy
    buf = ReplayBuffer(d["observations"].shape[1], d["actions"].shape[1], n + extra_capacity, device=device)
    buf.add(t(d["observations"]), t(actions), t(np.asarray(rewards, np.float32)), t(d["next_observations"]),
            terminal=t(d["masks"] == 0), end=t(d["terminals"] > 0))
    return buf


class OGBenchEnv:
    """Torch-in/torch-out adapter of one single-task env (the online phase's `Env` protocol)."""

    def __init__(self, task: Task, reward: Reward, max_steps: int = 0):
        self.env, self.reward = make_env(task, max_steps), reward

    def reset(self, *, seed: int | None = None) -> tuple[Tensor, dict]:
        obs, info = self.env.reset(seed=seed)
        return torch.as_tensor(obs, dtype=torch.float32), info

    def step(self, action: Tensor) -> tuple[Tensor, float, bool, bool, dict]:
        obs, r, term, trunc, info = self.env.step(action.clamp(-1, 1).numpy())
        r = sparse_reward(r) if self.reward == "sparse" else float(r)
        return torch.as_tensor(obs, dtype=torch.float32), r, bool(term), bool(trunc), info


def _worker(conn, task: Task, n_envs: int, max_steps: int, parent_pid: int) -> None:
    """Holds n_envs env copies; answers ("reset", seeds) and ("step", {slot: action}) until ("close", None)."""
    worker_init(parent_pid)  # Ctrl-C is the parent's to handle; die with the parent, even on kill -9
    envs = [make_env(task, max_steps) for _ in range(n_envs)]
    while True:
        cmd, arg = conn.recv()
        if cmd == "reset":
            conn.send({i: envs[i].reset(seed=s)[0] for i, s in arg.items()})
        elif cmd == "step":
            out = {}
            for i, a in arg.items():
                obs, _, term, trunc, info = envs[i].step(a)
                out[i] = (obs, bool(term or trunc), bool(info.get("success", False)))
            conn.send(out)
        else:
            conn.close()
            return


class ParallelEvaluator:
    """Episodes spread over `workers` processes holding `envs_per_worker` env copies each (a scene env holds
    ~175 MB, so 50 copies at once would need ~9 GB; the default is 2 per worker); episodes run in waves of
    workers * envs_per_worker, and the policy acts once per chunk on the batch of a wave's unfinished episodes.
    Create it early (before a large dataset is loaded): the workers fork from the process as it is then.
    Workers die with the parent, even on `kill -9` (core.signals.worker_init).

    Use as a context manager (or call `close`); `__call__(act, horizon, act_dim, seed=...)` returns eval metrics.
    Episode e is reset with seed + e whatever the wave layout.
    """

    def __init__(self, task: Task, *, episodes: int, workers: int = 2, max_steps: int = 0, envs_per_worker: int = 2):
        self.episodes = episodes
        self.workers = max(1, min(workers, episodes))
        self.slots = min(episodes, self.workers * max(1, envs_per_worker))  # env copies in all
        per = [len(range(w, self.slots, self.workers)) for w in range(self.workers)]
        # fork: the workers only run numpy/MuJoCo (never torch), and spawn would re-import OGBench (~5 s each)
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.conns, self.procs = [], []
        with sigint_blocked(ctx):
            for w in range(self.workers):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(child, task, per[w], max_steps, os.getpid()), daemon=True)
                p.start()
                self.conns.append(parent)
                self.procs.append(p)

    @torch.no_grad()
    def __call__(self, act, horizon: int, act_dim: int, *, seed: int) -> dict[str, float]:
        """act: obs (B, S) -> chunks (B, H * A). Runs every episode to its end; success at the last step.
        Also reports the wall seconds of the evaluation, scaled to 50 episodes (`eval/seconds_per_50`)."""
        start = time.perf_counter()
        success, steps = {}, {}
        for first in range(0, self.episodes, self.slots):
            wave = range(first, min(first + self.slots, self.episodes))
            ok, n = self._wave(act, horizon, act_dim, {j: seed + e for j, e in enumerate(wave)})
            success.update({first + j: v for j, v in ok.items()})
            steps.update({first + j: v for j, v in n.items()})
        seconds = time.perf_counter() - start
        return {"eval/success": float(np.mean([success[e] for e in range(self.episodes)])),
                "eval/episode_length": float(np.mean([steps[e] for e in range(self.episodes)])),
                "eval/seconds_per_50": seconds * 50 / max(self.episodes, 1)}

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _wave(self, act, horizon: int, act_dim: int, seeds: dict[int, int]) -> tuple[dict, dict]:
        """Run one episode per slot j (reset with seeds[j]) to its end; (success, steps) keyed by slot."""
        obs = self._broadcast("reset", seeds)
        success, steps = {}, dict.fromkeys(seeds, 0)
        while obs:
            live = sorted(obs)
            chunks = act(torch.as_tensor(np.stack([obs[j] for j in live]), dtype=torch.float32))
            chunks = chunks.view(len(live), horizon, act_dim).clamp(-1, 1).cpu().numpy()  # (B, H, A), one copy
            for h in range(horizon):
                running = {j: chunks[i, h] for i, j in enumerate(live) if j in obs}
                if not running:
                    break
                for j, (o, done, ok) in self._broadcast("step", running).items():
                    steps[j] += 1
                    if done:
                        success[j] = ok
                        del obs[j]
                    else:
                        obs[j] = o
        return success, steps

    def _broadcast(self, cmd: str, per_slot: dict[int, object]) -> dict[int, object]:
        """Send each worker its slots' part (slot j lives in worker j % W as its env j // W); gather by slot."""
        parts: list[dict[int, object]] = [{} for _ in range(self.workers)]
        for j, v in per_slot.items():
            parts[j % self.workers][j // self.workers] = v
        for w, part in enumerate(parts):
            self.conns[w].send((cmd, part))
        out = {}
        for w in range(self.workers):
            for k, v in self.conns[w].recv().items():
                out[k * self.workers + w] = v
        return out

    def close(self) -> None:
        for c, p in zip(self.conns, self.procs, strict=True):
            try:
                c.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()

    def __enter__(self) -> ParallelEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
