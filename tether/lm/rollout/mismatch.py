"""Train-inference mismatch metrics between the trainer's recompute and the rollout engine's log-probs.

Owns the `mismatch/` metrics (docs/metrics.md), computed from sampled-token log-probs only (engines return
nothing else): for each response token, l_tr = log pi_train(y_t) (full-sequence fp32 forward at theta_old),
l_inf = log pi_inf(y_t) (the engine), Delta = l_tr - l_inf, r = exp(Delta) = pi_train / pi_inf.

Formulas follow verl's rollout-correction metrics so dashboards are comparable:
  delta_t = |exp l_tr - exp l_inf|        (DCMDP's cost, arXiv:2606.08779; verl rollout_probs_diff)
  k1 = -Delta, k3 = r - 1 - Delta         (estimate KL(pi_inf || pi_train); tokens are drawn from pi_inf)
  chi2_token = mean r^2 - 1, chi2_seq = mean_seq (prod_t r_t)^2 - 1 (log prod_t r_t clamped to +-20)
  ppl = mean_seq exp(-mean_t l), ppl_gap = ppl_rollout - ppl_train
  ess = 1 / mean(w~^2) with w~ = r / mean(r)  (1 = all weights equal)
All are batch-level scalars as tensors (no `.item()`); the trainer logs them under `mismatch/`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tether.core.kl import kl_k1, kl_k2, kl_k3
from tether.core.masked import masked_mean, masked_sum

__all__ = ["token_delta", "mismatch_metrics"]

_LOG_RATIO_BOUND = 20.0  # verl's SAFETY_BOUND: exp(20) ~ 5e8 keeps chi2 finite on a pathological token


def token_delta(train_logp: Tensor, rollout_logp: Tensor, mask: Tensor) -> Tensor:
    """DCMDP's per-token cost delta_t = |p_train - p_inf|, in [0, 1]; 0 on masked tokens. (B, T)."""
    delta = (train_logp.exp() - rollout_logp.exp()).abs()
    return torch.where(mask, delta, torch.zeros_like(delta))


def mismatch_metrics(train_logp: Tensor, rollout_logp: Tensor, mask: Tensor, *, c: float) -> dict[str, Tensor]:
    """Batch mismatch metrics (keys without the `mismatch/` prefix).

    Args:
        train_logp, rollout_logp: (B, T) float log-probs of the sampled tokens.
        mask: (B, T) bool response mask.
        c: DCMDP tolerance; `delta_frac_above_c` counts tokens with delta_t > c.
    """
    m = mask.bool()
    log_r = (train_logp - rollout_logp).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)       # (B, T)
    log_r = torch.where(m, log_r, torch.zeros_like(log_r))
    delta = token_delta(train_logp, rollout_logp, m)
    ratio = log_r.exp()
    n_tok = m.sum().clamp(min=1)
    has_tok = m.any(dim=1)                                                               # (B,)
    # the sum is clamped too: (prod_t r_t)^2 at 20 tokens of the per-token bound would be exp(800) = inf
    seq_log_r = masked_sum(log_r, m, dim=1).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)   # (B,)
    ppl_train = torch.exp(-masked_mean(train_logp, m, dim=1))[has_tok].mean()
    ppl_rollout = torch.exp(-masked_mean(rollout_logp, m, dim=1))[has_tok].mean()
    w = ratio[m] / ratio[m].mean()
    neg_inf = torch.tensor(float("-inf"))
    return {
        "delta_mean": delta.sum() / n_tok,
        "delta_max": torch.where(m, delta, neg_inf).max().clamp(min=0),
        "delta_frac_above_c": ((delta > c) & m).sum() / n_tok,
        "abs_log_ratio_mean": masked_mean(log_r.abs(), m),
        "abs_log_ratio_max": torch.where(m, log_r.abs(), neg_inf).max().clamp(min=0),
        # tokens come from the engine, so the policy of the estimators is pi_inf and the reference pi_train
        "kl_k1": masked_mean(kl_k1(rollout_logp, train_logp), m),
        "kl_k2": masked_mean(kl_k2(rollout_logp, train_logp), m),
        "kl_k3": masked_mean(kl_k3(-log_r, torch.zeros_like(log_r)), m),
        "chi2_token": masked_mean(ratio.square(), m) - 1,
        "chi2_seq": (2 * seq_log_r[has_tok]).exp().mean() - 1,
        "ppl_train": ppl_train,
        "ppl_rollout": ppl_rollout,
        "ppl_gap": ppl_rollout - ppl_train,
        "ess": 1.0 / w.square().mean(),
        "ratio_out_frac": (((ratio < 0.5) | (ratio > 2.0)) & m).sum() / n_tok,
    }
