"""Policy-gradient losses for GRPO, as pure functions returning unreduced per-token values.

Every entry has one signature: `(logp, old_logp, adv, *, clip_low, clip_high) -> (per_token_loss (B, T),
diagnostics dict of (B, T) tensors)`; all inputs are (B, T). A loss is minimised. Reduction over tokens
is the trainer's job (`tether.core.masked.aggregate` with an explicit normalizer).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tether.core.registry import Registry

LOSSES: Registry[Callable[..., tuple[Tensor, dict[str, Tensor]]]] = Registry("policy loss")


def _check(logp: Tensor, old_logp: Tensor, adv: Tensor) -> None:
    if not (logp.shape == old_logp.shape == adv.shape):
        raise ValueError(f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and adv {tuple(adv.shape)} "
                         "must have the same (B, T) shape")


@LOSSES.register("ppo_clip")
def ppo_clip(logp: Tensor, old_logp: Tensor, adv: Tensor, *, clip_low: float, clip_high: float
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """-min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) with r = exp(logp - old_logp).

    PPO (arXiv:1707.06347) with DAPO's asymmetric clip-higher (arXiv:2503.14476): clip_high > clip_low lets
    low-probability tokens with positive advantage grow faster. Diagnostics: `ratio`, and the indicators
    `clipped_low` / `clipped_high` of tokens whose gradient the clip removed.
    """
    _check(logp, old_logp, adv)
    ratio = torch.exp(logp - old_logp)                                                  # (B, T)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    diag = {
        "ratio": ratio.detach(),
        "clipped_low": ((ratio < 1.0 - clip_low) & (adv < 0)).detach(),
        "clipped_high": ((ratio > 1.0 + clip_high) & (adv > 0)).detach(),
    }
    return loss, diag


@LOSSES.register("vanilla_pg")
def vanilla_pg(logp: Tensor, old_logp: Tensor, adv: Tensor, *, clip_low: float, clip_high: float
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """-r A with no clipping (REINFORCE with importance ratio r; equals -logp A in value of the gradient at
    r = 1). `clip_low`/`clip_high` are accepted for the shared signature and unused."""
    _check(logp, old_logp, adv)
    ratio = torch.exp(logp - old_logp)
    zeros = torch.zeros_like(ratio, dtype=torch.bool)
    return -ratio * adv, {"ratio": ratio.detach(), "clipped_low": zeros, "clipped_high": zeros}
