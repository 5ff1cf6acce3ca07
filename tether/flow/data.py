"""Offline transitions, the replay buffer and action-chunk batches.

Owns the storage of flat transitions and the Q-chunking sampler (arXiv:2507.07969 "Reinforcement
Learning with Action Chunking"): a batch row is (s_t, a_{t:t+H}, sum_i gamma^i r_{t+i}, mask, valid,
s_{t+H}). Knows nothing about environments: the training loop appends what an env returns.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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

    def to(self, device: torch.device | str) -> ChunkBatch:
        """This batch on `device` (itself when already there: no copy)."""
        if all(getattr(self, f.name).device == torch.device(device) for f in fields(self)):
            return self
        async_copy = torch.device(device).type == "cuda"  # host -> GPU may overlap; GPU -> host must not
        return ChunkBatch(*(getattr(self, f.name).to(device, non_blocking=async_copy) for f in fields(self)))


class ReplayBuffer:
    """Flat transitions in growable tensors; starts as the offline dataset, then receives online data.

    `ends[i]` marks the last transition of an episode (terminal or time-out); `terminals[i]` only true ends.
    Sampling is uniform over all stored transitions, as in the official code (no balanced sampling).
    The storage lives on `device` (the agent's): batches are gathered there, with no host round trip. The start
    indices come from the caller's CPU generator, so a run samples the same chunks on every device.
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, *, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.actions = torch.zeros(capacity, act_dim, device=self.device)
        self.rewards = torch.zeros(capacity, device=self.device)
        self.terminals = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.ends = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.size = 0

    def add(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminal: Tensor, end: Tensor) -> None:
        """Append n transitions (leading dim n); raises when full (the buffer never overwrites offline data)."""
        n = obs.shape[0]
        if self.size + n > self.obs.shape[0]:
            raise ValueError(f"replay buffer full: size {self.size} + {n} > capacity {self.obs.shape[0]}")
        sl = slice(self.size, self.size + n)
        dev = self.device
        self.obs[sl], self.actions[sl], self.rewards[sl] = obs.to(dev), action.to(dev), reward.to(dev)
        self.next_obs[sl], self.terminals[sl], self.ends[sl] = next_obs.to(dev), terminal.to(dev).bool(), end.to(
            dev).bool()
        self.size += n

    def sample(self, batch_size: int, horizon: int, discount: float, generator: torch.Generator) -> ChunkBatch:
        """Uniform chunk starts in [0, size - H + 1), as the official code draws them (the last H - 1 transitions
        start no chunk), by the CPU `generator`."""
        if self.size < horizon:
            raise ValueError(f"replay buffer holds {self.size} transitions, fewer than the chunk horizon {horizon}")
        start = torch.randint(0, self.size - horizon + 1, (batch_size,), generator=generator)
        return self.chunks(start.to(self.device, non_blocking=self.device.type == "cuda"), horizon, discount)

    def chunks(self, start: Tensor, horizon: int, discount: float) -> ChunkBatch:
        """Chunks beginning at `start` (B,); steps after an episode end are masked out of reward and validity."""
        batch_size = start.shape[0]
        start = start.to(self.device)
        offs = torch.arange(horizon, device=self.device)  # (H,)
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
