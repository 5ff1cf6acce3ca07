"""Policy-gradient losses for GRPO, as pure functions returning unreduced per-token values.

Every entry has one signature: `(logp, old_logp, adv, *, clip_low, clip_high, dual_clip=0.0) -> (per_token_loss
(B, T), diagnostics dict of (B, T) tensors)`; all inputs are (B, T). A loss is minimised. Reduction over tokens
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
def ppo_clip(logp: Tensor, old_logp: Tensor, adv: Tensor, *, clip_low: float, clip_high: float,
             dual_clip: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """-min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) with r = exp(logp - old_logp).

    PPO (arXiv:1707.06347) with DAPO's asymmetric clip-higher (arXiv:2503.14476): clip_high > clip_low lets
    low-probability tokens with positive advantage grow faster. Dual-clip (arXiv:1912.09729, verl's
    `clip_ratio_c`): with dual_clip = c > 1, a token with A < 0 loses at most -c A, so a ratio that ran far above 1
    in a later PPO epoch or minibatch cannot take an unbounded step (PPO's min leaves r A unbounded there).
    Diagnostics: `ratio`, and the indicators `clipped_low` / `clipped_high` / `clipped_dual` of tokens whose
    gradient a clip removed.
    """
    _check(logp, old_logp, adv)
    if dual_clip and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be 0 (off) or > 1, got {dual_clip}")
    ratio = torch.exp(logp - old_logp)                                                  # (B, T)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    dual = torch.zeros_like(ratio, dtype=torch.bool)
    if dual_clip:
        bound = -dual_clip * adv                                                        # (B, T), > 0 where A < 0
        dual = (adv < 0) & (loss > bound)
        loss = torch.where(adv < 0, torch.minimum(loss, bound), loss)
    diag = {
        "ratio": ratio.detach(),
        "clipped_low": ((ratio < 1.0 - clip_low) & (adv < 0)).detach(),
        "clipped_high": ((ratio > 1.0 + clip_high) & (adv > 0)).detach(),
        "clipped_dual": dual.detach(),
    }
    return loss, diag


@LOSSES.register("vanilla_pg")
def vanilla_pg(logp: Tensor, old_logp: Tensor, adv: Tensor, *, clip_low: float, clip_high: float,
               dual_clip: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """-r A with no clipping (REINFORCE with importance ratio r; equals -logp A in value of the gradient at
    r = 1). `clip_low`/`clip_high`/`dual_clip` are accepted for the shared signature and unused."""
    _check(logp, old_logp, adv)
    ratio = torch.exp(logp - old_logp)
    zeros = torch.zeros_like(ratio, dtype=torch.bool)
    return -ratio * adv, {"ratio": ratio.detach(), "clipped_low": zeros, "clipped_high": zeros,
                          "clipped_dual": zeros}
