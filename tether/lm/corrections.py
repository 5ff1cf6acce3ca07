"""Train-inference mismatch corrections: TIS, MIS, IcePop and DCMDP, behind one registry and one signature.

Every correction maps the same inputs (trainer recompute and engine log-probs of the sampled tokens, the
response mask, the DCMDP multiplier) to the same `Correction` record, and the trainer applies every field
the same way, whatever the name:

    rewards    <- rewards + reward_shift                       before group normalisation   (B,)
    adv        <- adv[:, None] + adv_shift                     after it                      (B, T)
    per_token  <- weight * keep * clipped_pg(...)              detached weights              (B, T)
    per_token  += penalty * |exp(logp) - exp(rollout_logp)|    gradient through logp         (B, T)

Corrections stack (`"dcmdp+tis_token"`): weights multiply, keep-masks AND, shifts and penalties add.
A registry entry takes `(inputs, hp)` where `hp` is the frozen `CorrectionConfig` section: one uniform
signature, so the trainer never branches on a name (STYLE.md 4.6).

Formulas (dcmdp.md §3.3, §5.1), with r_t = pi_train/pi_inf and rho = prod_t r_t:
  tis_token  w_t = min(r_t, C)                           Yao et al. 2025 (FlashRL), C = 2
  tis_seq    w = min(rho, C) for every token              Liu et al. 2025
  mis_token  w_t = r_t * 1[r_t <= C]                      token masking (collapsed in Liu et al.'s tests)
  mis_seq    w = rho * 1[rho <= C]                        Liu et al. 2025 "Seq-MIS"
  icepop     w_t = r_t * 1[a <= r_t <= b]                 arXiv:2510.18855, band [0.5, 5]
  dcmdp      DCMDP / DC-GRPO, arXiv:2606.08779, delta_t = |p_train - p_inf| (bounded cost, no ratios):
             token_immediate  adv_shift = -lam * delta_t                  (default; third-party DC-GRPO)
             token_to_go      adv_shift = -lam * (sum_{k>=t} delta_k - group mean of it)
             sequence_reward  reward_shift = -lam * mean_t delta_t
             differentiable   penalty = lam (gradient through p_train; p_inf constant)
The paper's full text was not available: which of these variants it uses, the normalisation of delta-bar and
the projection bounds are reconstructed (brief tags [S]/[R]); the variants are switches so they can be matched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from tether.core.config import check
from tether.core.masked import masked_sum
from tether.core.registry import Registry
from tether.lm.mismatch import token_delta

__all__ = ["CORRECTIONS", "CorrectionConfig", "CorrectionInputs", "Correction", "apply_corrections"]

_LOG_RATIO_BOUND = 20.0


@dataclass(frozen=True)
class CorrectionConfig:
    name: str = "none"
    """Correction(s), '+'-joined to stack: none, tis_token, tis_seq, mis_token, mis_seq, icepop, dcmdp."""
    cap: float = 2.0
    """TIS cap / MIS threshold C on the (token or sequence) ratio pi_train/pi_inf."""
    band_low: float = 0.5
    """IcePop: lower edge a of the kept ratio band."""
    band_high: float = 5.0
    """IcePop: upper edge b of the kept ratio band."""
    c: float = 0.0037
    """DCMDP tolerance on the batch mean |p_train - p_inf| (Qwen3-8B value of arXiv:2606.08779)."""
    lr: float = 1.0
    """DCMDP dual step size eta."""
    lambda_init: float = 0.1
    """DCMDP initial multiplier lambda_0."""
    lambda_min: float = 0.0
    """DCMDP lower projection bound (reconstructed: 0)."""
    lambda_max: float = 1.0
    """DCMDP upper projection bound (reconstructed: 1)."""
    variant: Literal["token_immediate", "token_to_go", "sequence_reward", "differentiable"] = "token_immediate"
    """How the DCMDP cost enters: per-token advantage shift, cost-to-go shift, sequence reward, or a loss term."""
    normalized: bool = False
    """DCMDP: divide the dual step by c (scale-free variant; the paper's form is unnormalised)."""

    def __post_init__(self) -> None:
        for part in self.names:
            check(part in CORRECTIONS, "correction.name", self.name, f"'+'-joined names from {CORRECTIONS.names()}")
        check(self.cap > 0, "correction.cap", self.cap, "a float > 0")
        check(0 <= self.band_low < self.band_high, "correction.band_low", self.band_low,
              f"0 <= band_low < band_high={self.band_high}")
        check(self.c > 0, "correction.c", self.c, "a float > 0")
        check(0 <= self.lambda_min <= self.lambda_init <= self.lambda_max, "correction.lambda_init",
              self.lambda_init, f"lambda_min <= lambda_init <= lambda_max = [{self.lambda_min}, {self.lambda_max}]")

    @property
    def names(self) -> list[str]:
        return [n for n in self.name.split("+") if n]


@dataclass(frozen=True)
class CorrectionInputs:
    train_logp: Tensor
    """(B, T) trainer recompute log pi_train(y_t) at theta_old (no grad)."""
    rollout_logp: Tensor
    """(B, T) engine log pi_inf(y_t)."""
    mask: Tensor
    """(B, T) bool response mask."""
    group_ids: Tensor
    """(B,) long prompt group of each sequence."""
    lam: float
    """DCMDP multiplier applied this step (the value before this step's dual update)."""


@dataclass
class Correction:
    weight: Tensor
    """(B, T) detached multiplier of the per-token policy loss."""
    keep: Tensor
    """(B, T) bool; False drops the token from the loss (not from the normaliser)."""
    adv_shift: Tensor
    """(B, T) added to the (broadcast) sequence advantage."""
    reward_shift: Tensor
    """(B,) added to rewards before group normalisation."""
    penalty: float = 0.0
    """Coefficient of the differentiable |p_train - p_inf| loss term."""
    diagnostics: dict[str, Tensor] = field(default_factory=dict)
    """Unreduced or scalar tensors logged under clip/ (fractions masked or capped)."""

    @classmethod
    def identity(cls, inp: CorrectionInputs) -> Correction:
        z = torch.zeros_like(inp.train_logp)
        return cls(torch.ones_like(z), inp.mask.clone(), z, torch.zeros(z.shape[0]))


CORRECTIONS: Registry[Callable[[CorrectionInputs, CorrectionConfig], Correction]] = Registry("correction")


def _log_ratio(inp: CorrectionInputs) -> Tensor:
    log_r = (inp.train_logp - inp.rollout_logp).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
    return torch.where(inp.mask, log_r, torch.zeros_like(log_r))                 # (B, T)


def _frac(x: Tensor, mask: Tensor) -> Tensor:
    return (x & mask).sum() / mask.sum().clamp(min=1)


@CORRECTIONS.register("none")
def no_correction(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Plain GRPO on engine samples: ratios against the trainer's own theta_old recompute only."""
    return Correction.identity(inp)


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
    rho = masked_sum(_log_ratio(inp), inp.mask, dim=1).exp()                  # (B,)
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
    rho = masked_sum(_log_ratio(inp), inp.mask, dim=1).exp()                  # (B,)
    out.weight = rho[:, None].expand_as(inp.train_logp).clone()
    out.keep = inp.mask & (rho <= hp.cap)[:, None]
    out.diagnostics["masked_frac"] = (rho > hp.cap).float().mean()
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


@CORRECTIONS.register("dcmdp")
def dcmdp(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """DCMDP / DC-GRPO (arXiv:2606.08779): the bounded cost delta_t enters with the multiplier lam."""
    out = Correction.identity(inp)
    delta = token_delta(inp.train_logp, inp.rollout_logp, inp.mask)          # (B, T)
    lam = inp.lam
    if hp.variant == "token_immediate":
        out.adv_shift = -lam * delta
    elif hp.variant == "token_to_go":
        out.adv_shift = -lam * _cost_to_go(delta, inp.group_ids, inp.mask)
    elif hp.variant == "sequence_reward":
        out.reward_shift = -lam * masked_sum(delta, inp.mask, dim=1) / inp.mask.sum(1).clamp(min=1)
    else:  # differentiable: the trainer adds lam * |p_theta - p_inf| with a gradient
        out.penalty = lam
    return out


def apply_corrections(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Run every '+'-joined correction and combine: weights multiply, masks AND, shifts/penalties add."""
    total = Correction.identity(inp)
    for name in hp.names:
        c = CORRECTIONS.get(name)(inp, hp)
        total.weight = total.weight * c.weight
        total.keep = total.keep & c.keep
        total.adv_shift = total.adv_shift + c.adv_shift
        total.reward_shift = total.reward_shift + c.reward_shift
        total.penalty += c.penalty
        total.diagnostics.update({f"{name}_{k}": v for k, v in c.diagnostics.items()})
    total.weight = total.weight.detach()
    return total
