"""A tiny point-navigation task with a scripted behaviour dataset, for end-to-end tests of the training loop.

Owns the env (gymnasium-style reset/step on torch tensors, no gym dependency) and the dataset builder.
OGBench environments are a later issue; the training loop only needs this reset/step protocol.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tether.flow.data import ReplayBuffer


class PointNav:
    """2-D point p in [-1, 1]^2; an action a in [-1, 1]^2 moves it by 0.1 a. Goal g = (0.5, 0.5).

    Reward -1 per step until ||p - g|| < 0.1 (then 0, terminated, info['success'] = True); 40-step time limit.
    The start is uniform in [-1, -0.5]^2, so the task needs ~10 good steps (OGBench-style sparse reward).
    """

    obs_dim, act_dim, max_steps = 2, 2, 40
    goal = torch.tensor([0.5, 0.5])

    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)
        self.pos, self.t = torch.zeros(2), 0

    def reset(self, *, seed: int | None = None) -> tuple[Tensor, dict]:
        if seed is not None:
            self.gen.manual_seed(seed)
        self.pos, self.t = -1 + 0.5 * torch.rand(2, generator=self.gen), 0
        return self.pos.clone(), {}

    def step(self, action: Tensor) -> tuple[Tensor, float, bool, bool, dict]:
        self.pos = (self.pos + 0.1 * action.clamp(-1, 1)).clamp(-1, 1)
        self.t += 1
        success = bool((self.pos - self.goal).norm() < 0.1)
        reward = 0.0 if success else -1.0
        return self.pos.clone(), reward, success, self.t >= self.max_steps and not success, {"success": success}


def scripted_action(pos: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    """Noisy go-to-goal controller: unit direction to the goal plus Gaussian noise, clipped."""
    direction = (PointNav.goal - pos) / (PointNav.goal - pos).norm().clamp_min(1e-6)
    return (direction + noise * torch.randn(2, generator=generator)).clamp(-1, 1)


def point_nav_dataset(episodes: int, *, noise: float = 0.6, seed: int = 0, extra_capacity: int = 0) -> ReplayBuffer:
    """Roll the scripted controller for `episodes` episodes into a buffer (room for `extra_capacity` more)."""
    env, gen = PointNav(seed), torch.Generator().manual_seed(seed + 1)
    rows: list[tuple] = []
    for _ in range(episodes):
        obs, _ = env.reset()
        done = False
        while not done:
            a = scripted_action(obs, noise, gen)
            nxt, r, term, trunc, _ = env.step(a)
            done = term or trunc
            rows.append((obs, a, r, nxt, term, done))
            obs = nxt
    buf = ReplayBuffer(PointNav.obs_dim, PointNav.act_dim, len(rows) + extra_capacity)
    o, a, r, n, term, end = zip(*rows, strict=True)
    buf.add(torch.stack(o), torch.stack(a), torch.tensor(r), torch.stack(n), torch.tensor(term), torch.tensor(end))
    return buf
