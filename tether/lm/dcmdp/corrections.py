"""Train-inference mismatch corrections: TIS, MIS, IcePop and DCMDP, registered into GRPO's `CORRECTIONS`.

Each entry returns the `Correction` record of `tether.lm.grpo.corrections` (weight, keep mask, advantage and
reward shifts, penalty), which the trainer applies the same way whatever the name; entries stack with '+'.

Formulas, with r_t = pi_train/pi_inf and rho = prod_t r_t:
  tis_token  w_t = min(r_t, C)                           Yao et al. 2025 (FlashRL), C = 2
  tis_seq    w = min(rho, C) for every token              Liu et al. 2025
  mis_token  w_t = r_t * 1[r_t <= C]                      token masking (collapsed in Liu et al.'s tests)
  mis_seq    w = rho * 1[rho <= C]                        Liu et al. 2025 "Seq-MIS" (verl: sequence IS + RS)
  geo_rs     w = 1[1/G <= rho^(1/|y|) <= G]              verl's geometric rejection (no IS weight), G = 1.001
  icepop     w_t = r_t * 1[a <= r_t <= b]                 arXiv:2510.18855, band [0.5, 5]
  dcmdp      DCMDP / DC-GRPO, arXiv:2606.08779, delta_t = |p_train - p_inf| (bounded cost, no ratios):
             token_immediate  adv_shift = -lam * delta_t                  (default; third-party DC-GRPO)
             token_to_go      adv_shift = -lam * (sum_{k>=t} delta_k - group mean of it)
             sequence_reward  reward_shift = -lam * mean_t delta_t
             differentiable   penalty = lam (gradient through p_train; p_inf constant)
Sequence log-ratios log rho = sum_t log r_t are clamped to +-20 (verl's SAFETY_BOUND) *after* the sum, so rho is
finite (<= 5e8) for any length: an unclamped sum of 20 tokens at the per-token bound is exp(400) = inf in float32,
and inf * 0 (a dropped sequence) is NaN in the loss.

Sign behaviour of DCMDP `token_immediate`: delta_t = |p_train - p_inf| >= 0, so adv_shift = -lam delta_t lowers
the advantage of every sampled token with a gap, whichever of the two assigns it more mass. The update therefore
pushes p_train(y_t) down both where p_train > p_inf (which shrinks the gap) and where p_train < p_inf (which
widens it); it does not move pi_train towards pi_inf. Its effect is a length- and gap-proportional penalty on
sequences the engine and the trainer disagree on. `differentiable` is the variant whose gradient,
lam sign(p_train - p_inf) grad p_train, always shrinks the gap.

The paper's full text was not available: which of these variants it uses, the normalisation of delta-bar and
the projection bounds are reconstructions, documented in docs/results/dcmdp.md; the variants are switches so
they can be matched.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tether.core.masked import masked_sum
from tether.lm.grpo.corrections import CORRECTIONS, Correction, CorrectionConfig, CorrectionInputs
from tether.lm.rollout.mismatch import token_delta

__all__ = ["tis_token", "tis_seq", "mis_token", "mis_seq", "geo_rs", "icepop", "dcmdp", "seq_log_ratio"]

_LOG_RATIO_BOUND = 20.0


def _log_ratio(inp: CorrectionInputs) -> Tensor:
    log_r = (inp.train_logp - inp.rollout_logp).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
    return torch.where(inp.mask, log_r, torch.zeros_like(log_r))                 # (B, T)


def seq_log_ratio(inp: CorrectionInputs) -> Tensor:
    """log rho = sum_t log r_t per sequence, clamped to +-20 after the sum (B,)."""
    return masked_sum(_log_ratio(inp), inp.mask, dim=1).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)


def _frac(x: Tensor, mask: Tensor) -> Tensor:
    return (x & mask).sum() / mask.sum().clamp(min=1)


@CORRECTIONS.register("tis_token")
def tis_token(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Token truncated IS: w_t = min(r_t, C) (Yao et al. 2025, FlashRL)."""
    out = Correction.identity(inp)
    r = _log_ratio(inp).exp()
    out.weight = r.clamp(max=hp.cap)
    out.diagnostics["capped_frac"] = _frac(r > hp.cap, inp.mask)
    return out


@CORRECTIONS.register("tis_seq")
def tis_seq(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Sequence truncated IS: w = min(prod_t r_t, C) on every token (Liu et al. 2025)."""
    out = Correction.identity(inp)
    rho = seq_log_ratio(inp).exp()                                            # (B,)
    out.weight = rho.clamp(max=hp.cap)[:, None].expand_as(inp.train_logp).clone()
    out.diagnostics["capped_frac"] = (rho > hp.cap).float().mean()
    return out


@CORRECTIONS.register("mis_token")
def mis_token(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Token masked IS: w_t = r_t, tokens with r_t > C are dropped."""
    out = Correction.identity(inp)
    r = _log_ratio(inp).exp()
    out.weight, out.keep = r, inp.mask & (r <= hp.cap)
    out.diagnostics["masked_frac"] = _frac(r > hp.cap, inp.mask)
    return out


@CORRECTIONS.register("mis_seq")
def mis_seq(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Sequence masked IS: w = rho, sequences with rho > C are dropped (Liu et al. 2025 "Seq-MIS")."""
    out = Correction.identity(inp)
    rho = seq_log_ratio(inp).exp()                                            # (B,) finite: <= exp(20)
    kept = rho <= hp.cap
    # a dropped sequence gets weight 0 as well as keep False, so no non-finite value ever meets the loss
    out.weight = torch.where(kept, rho, torch.zeros_like(rho))[:, None].expand_as(inp.train_logp).clone()
    out.keep = inp.mask & kept[:, None]
    out.diagnostics["masked_frac"] = (~kept).float().mean()
    return out


@CORRECTIONS.register("geo_rs")
def geo_rs(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Geometric rejection (verl's `rollout_rs="geometric"`): drop sequences whose per-token geometric-mean ratio
    rho^(1/|y|) leaves [1/G, G]; no importance weight. Length-neutral, unlike a threshold on rho itself."""
    out = Correction.identity(inp)
    n = inp.mask.sum(1).clamp(min=1)                                          # (B,)
    geo = (masked_sum(_log_ratio(inp), inp.mask, dim=1) / n).exp()            # (B,)
    kept = (geo >= 1.0 / hp.geo_threshold) & (geo <= hp.geo_threshold)
    out.keep = inp.mask & kept[:, None]
    out.diagnostics["masked_frac"] = (~kept).float().mean()
    return out


@CORRECTIONS.register("icepop")
def icepop(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """IcePop (arXiv:2510.18855): w_t = r_t inside the band [a, b], token dropped outside."""
    out = Correction.identity(inp)
    r = _log_ratio(inp).exp()
    inside = (r >= hp.band_low) & (r <= hp.band_high)
    out.weight, out.keep = r, inp.mask & inside
    out.diagnostics["masked_frac"] = _frac(~inside, inp.mask)
    return out


def _cost_to_go(delta: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
    """sum_{k>=t} delta_k minus its group mean at the same position (a baseline; (B, T))."""
    to_go = delta.flip(1).cumsum(1).flip(1)                                  # (B, T)
    n_groups = int(group_ids.max()) + 1
    sums = torch.zeros(n_groups, delta.shape[1]).index_add_(0, group_ids, to_go)
    counts = torch.zeros(n_groups).index_add_(0, group_ids, torch.ones(len(group_ids)))
    baseline = (sums / counts[:, None])[group_ids]                           # (B, T)
    return torch.where(mask, to_go - baseline, torch.zeros_like(to_go))


def _shift_immediate(out: Correction, delta: Tensor, inp: CorrectionInputs) -> None:
    out.adv_shift = -inp.lam * delta                                          # (B, T)


def _shift_to_go(out: Correction, delta: Tensor, inp: CorrectionInputs) -> None:
    out.adv_shift = -inp.lam * _cost_to_go(delta, inp.group_ids, inp.mask)   # (B, T)


def _sequence_reward(out: Correction, delta: Tensor, inp: CorrectionInputs) -> None:
    out.reward_shift = -inp.lam * masked_sum(delta, inp.mask, dim=1) / inp.mask.sum(1).clamp(min=1)   # (B,)


def _differentiable(out: Correction, delta: Tensor, inp: CorrectionInputs) -> None:
    out.penalty = inp.lam  # the trainer adds lam * |p_theta - p_inf| with a gradient through p_theta


# How the DCMDP cost enters the update (`correction.variant`); every key is a value of that Literal.
DCMDP_VARIANTS = {"token_immediate": _shift_immediate, "token_to_go": _shift_to_go,
                  "sequence_reward": _sequence_reward, "differentiable": _differentiable}


@CORRECTIONS.register("dcmdp")
def dcmdp(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """DCMDP / DC-GRPO (arXiv:2606.08779): the bounded cost delta_t enters with the multiplier lam."""
    out = Correction.identity(inp)
    DCMDP_VARIANTS[hp.variant](out, token_delta(inp.train_logp, inp.rollout_logp, inp.mask), inp)
    return out
