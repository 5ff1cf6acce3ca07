"""The correction interface of GRPO: one config, one input record, one output record, one registry.

Every correction maps the same inputs (trainer recompute and engine log-probs of the sampled tokens, the
response mask, the DCMDP multiplier) to the same `Correction` record, and the trainer applies every field
the same way, whatever the name:

    rewards    <- rewards + reward_shift                       before group normalisation   (B,)
    adv        <- adv[:, None] + adv_shift                     after it                      (B, T)
    per_token  <- weight * keep * clipped_pg(...)              detached weights              (B, T)
    per_token  += penalty * |exp(logp) - exp(rollout_logp)|    gradient through logp         (B, T)

Corrections stack (`"dcmdp+tis_token"`): weights multiply, keep-masks AND, shifts and penalties add.
A registry entry takes `(inputs, hp)` where `hp` is the frozen `CorrectionConfig` section: one uniform
signature, so the trainer never branches on a name. Only `none` is defined here; TIS, MIS, IcePop and DCMDP
are in `tether.lm.dcmdp.corrections` and register when `tether.lm.builtins` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from tether.core.config import check
from tether.core.duals import Dual
from tether.core.registry import Registry

__all__ = ["CORRECTIONS", "CorrectionConfig", "CorrectionInputs", "Correction", "apply_corrections"]

@dataclass(frozen=True)
class CorrectionConfig:
    name: str = "none"
    """Correction(s), '+'-joined to stack: none, tis_token, tis_seq, mis_token, mis_seq, geo_rs, icepop, dcmdp."""
    cap: float = 2.0
    """TIS cap / MIS threshold C on the (token or sequence) ratio pi_train/pi_inf."""
    geo_threshold: float = 1.001
    """geo_rs: keep a sequence when its geometric-mean ratio is in [1/G, G] (verl's typical 1.0001-1.001)."""
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
    """DCMDP upper projection bound (reconstructed: 1; the testbed of docs/results/dcmdp.md sweeps 1, 3, 10:
    delta_t is ~1e-2 against advantages of order 1, so lam * delta_t stays small at lam <= 1)."""
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
        check(self.geo_threshold > 1, "correction.geo_threshold", self.geo_threshold, "a float > 1")
        check(self.c > 0, "correction.c", self.c, "a float > 0")
        check(0 <= self.lambda_min <= self.lambda_init <= self.lambda_max, "correction.lambda_init",
              self.lambda_init, f"lambda_min <= lambda_init <= lambda_max = [{self.lambda_min}, {self.lambda_max}]")

    @property
    def names(self) -> list[str]:
        return [n for n in self.name.split("+") if n]

    def dual(self) -> Dual:
        """DCMDP's multiplier: one projected dual step per rollout batch on the batch mean |p_train - p_inf|."""
        return Dual(target=self.c, lr=self.lr, init=self.lambda_init, low=self.lambda_min, high=self.lambda_max,
                    normalized=self.normalized)


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


@CORRECTIONS.register("none")
def no_correction(inp: CorrectionInputs, hp: CorrectionConfig) -> Correction:
    """Plain GRPO on engine samples: ratios against the trainer's own theta_old recompute only."""
    return Correction.identity(inp)


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
