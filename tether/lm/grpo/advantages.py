"""Group-relative advantage estimators for GRPO-style training (one scalar per completion).

Every entry has one signature: `(rewards (B,), group_ids (B,) long, *, eps) -> advantages (B,)`. Groups
are the G completions of one prompt; ids need not be contiguous or equally sized. Pure functions: no
config, no logging. The trainer broadcasts the result over the completion's tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tether.core.registry import Registry

ADVANTAGES: Registry[Callable[..., Tensor]] = Registry("advantage estimator")


def group_stats(rewards: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample group mean, unbiased group std and group size, each (B,)."""
    if rewards.shape != group_ids.shape or rewards.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must be equal 1-D")
    _, inv = torch.unique(group_ids, return_inverse=True)
    r = rewards.double()
    n = torch.zeros(int(inv.max()) + 1, dtype=torch.float64).index_add_(0, inv, torch.ones_like(r))
    mean = torch.zeros_like(n).index_add_(0, inv, r) / n                               # (n_groups,)
    sq = torch.zeros_like(n).index_add_(0, inv, (r - mean[inv]).square())
    std = (sq / (n - 1).clamp(min=1)).sqrt()
    return mean[inv].to(rewards.dtype), std[inv].to(rewards.dtype), n[inv].to(rewards.dtype)


@ADVANTAGES.register("group_zscore")
def group_zscore(rewards: Tensor, group_ids: Tensor, *, eps: float) -> Tensor:
    """(r - mean_g) / (std_g + eps), Bessel-corrected std: GRPO (DeepSeekMath, arXiv:2402.03300)."""
    mean, std, _ = group_stats(rewards, group_ids)
    return (rewards - mean) / (std + eps)


@ADVANTAGES.register("group_mean")
def group_mean(rewards: Tensor, group_ids: Tensor, *, eps: float) -> Tensor:
    """r - mean_g without std scaling: Dr. GRPO (arXiv:2503.20783). `eps` is unused."""
    mean, _, _ = group_stats(rewards, group_ids)
    return rewards - mean


@ADVANTAGES.register("rloo")
def rloo(rewards: Tensor, group_ids: Tensor, *, eps: float) -> Tensor:
    """r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean_g): REINFORCE leave-one-out (arXiv:2402.14740)."""
    mean, _, n = group_stats(rewards, group_ids)
    if bool((n < 2).any()):
        raise ValueError("rloo needs at least 2 completions per group")
    return n / (n - 1) * (rewards - mean)
