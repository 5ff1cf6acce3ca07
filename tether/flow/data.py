"""Offline transitions, the replay buffer and action-chunk batches.

Owns the storage of flat transitions and the Q-chunking sampler (arXiv:2507.07969 "Reinforcement
Learning with Action Chunking"): a batch row is (s_t, a_{t:t+H}, sum_i gamma^i r_{t+i}, mask, valid,
s_{t+H}). Knows nothing about environments: the training loop appends what an env returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ChunkBatch:
    """One batch of chunked transitions. B rows, S = obs dim, D = act_dim * H."""

    obs: Tensor
    """(B, S) state at the chunk start."""
    actions: Tensor
    """(B, D) flattened action chunk; steps past an episode end repeat the last valid action."""
    rewards: Tensor
    """(B,) discounted reward sum over the valid steps of the chunk."""
    masks: Tensor
    """(B,) 0 if a terminal (not a time-out) occurs at any valid step of the chunk, else 1."""
    valid: Tensor
    """(B,) 1 if the whole chunk lies inside one episode (loss weight, as the code's valid[..., -1])."""
    next_obs: Tensor
    """(B, S) state after the last valid step of the chunk."""


class ReplayBuffer:
    """Flat transitions in growable tensors; starts as the offline dataset, then receives online data.

    `ends[i]` marks the last transition of an episode (terminal or time-out); `terminals[i]` only true ends.
    Sampling is uniform over all stored transitions, as in the official code (no balanced sampling).
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int):
        self.obs = torch.zeros(capacity, obs_dim)
        self.next_obs = torch.zeros(capacity, obs_dim)
        self.actions = torch.zeros(capacity, act_dim)
        self.rewards = torch.zeros(capacity)
        self.terminals = torch.zeros(capacity, dtype=torch.bool)
        self.ends = torch.zeros(capacity, dtype=torch.bool)
        self.size = 0

    def add(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminal: Tensor, end: Tensor) -> None:
        """Append n transitions (leading dim n); raises when full (the buffer never overwrites offline data)."""
        n = obs.shape[0]
        if self.size + n > self.obs.shape[0]:
            raise ValueError(f"replay buffer full: size {self.size} + {n} > capacity {self.obs.shape[0]}")
        sl = slice(self.size, self.size + n)
        self.obs[sl], self.actions[sl], self.rewards[sl] = obs, action, reward
        self.next_obs[sl], self.terminals[sl], self.ends[sl] = next_obs, terminal.bool(), end.bool()
        self.size += n

    def sample(self, batch_size: int, horizon: int, discount: float, generator: torch.Generator) -> ChunkBatch:
        """Uniform chunk starts over all stored transitions."""
        return self.chunks(torch.randint(0, self.size, (batch_size,), generator=generator), horizon, discount)

    def chunks(self, start: Tensor, horizon: int, discount: float) -> ChunkBatch:
        """Chunks beginning at `start` (B,); steps after an episode end are masked out of reward and validity."""
        batch_size = start.shape[0]
        offs = torch.arange(horizon)  # (H,)
        idx = (start[:, None] + offs).clamp(max=self.size - 1)  # (B, H)
        ends = self.ends[idx]  # (B, H)
        # step j is inside the episode iff no end occurred at steps < j
        ended_before = torch.cumsum(ends.int(), dim=1) - ends.int() > 0  # (B, H)
        inside = ~ended_before & (start[:, None] + offs < self.size)
        last = inside.int().sum(dim=1) - 1  # (B,) index of the last valid step
        idx_valid = torch.where(inside, idx, idx.gather(1, last[:, None]))
        acts = self.actions[idx_valid]  # (B, H, A)
        disc = discount ** offs.float()  # (H,)
        rewards = (self.rewards[idx] * disc * inside).sum(dim=1)
        last_idx = idx.gather(1, last[:, None]).squeeze(1)
        return ChunkBatch(
            obs=self.obs[start], actions=acts.reshape(batch_size, -1), rewards=rewards,
            # a terminal anywhere in the chunk stops bootstrapping (offline OGBench data continues past a success)
            masks=1.0 - (self.terminals[idx] & inside).any(dim=1).float(), valid=inside.all(dim=1).float(),
            next_obs=self.next_obs[last_idx],
        )
