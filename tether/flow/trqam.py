"""TRQAM: Trust Region Q Adjoint Matching (Dong et al., arXiv:2605.27079).

QAM with the temperature replaced by a trust-region parameter lambda that a dual controller sets so that
the realised path-space KL of the fine-tuned SDE against the reference stays at a budget eps:

  * the terminal adjoint is -grad_a Qbar with no temperature (lambda-free);
  * lambda enters the diffusion scale of the loss only: sigma_k = g_k / sqrt(lambda_scale * lambda),
    so the fixed point is v_fast - v_base = -g^2 a / (2 lambda_eff), i.e. QAM with beta = 1 / lambda_eff;
  * the discretised path KL (losses.path_kl, normalised by H) comes from the same forward pass as the
    loss; it is only measured, never added to the loss;
  * after the optimiser step, one projected dual step (tether.core.duals.Dual: EMA 0.1 of the KL
    clipped at 2 eps, lambda <- clip(lambda + eta (KL_ema - eps), 0.01, 100)).

Everything else (critic, BC, rollout, lean adjoint) is QAM's update, inherited from qam.py.
Reconstructed from the official code (yonghdong/trqam @ 02599ce); the paper's own text was not available.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tether.core.config import check
from tether.core.duals import Dual, DualState
from tether.flow.agent import AgentConfig, Reference
from tether.flow.qam import QAMAgent, QAMConfig


@dataclass(frozen=True)
class TRQAMConfig:
    """TRQAM hyper-parameters (official defaults)."""

    kl_budget: float = 1.0
    """Path-KL budget eps per executed action (nats)."""
    lam_scale: float = 3.0
    """lambda_eff = lam_scale * lambda enters sigma_k = g_k / sqrt(lambda_eff)."""
    lam_init: float = 1.0
    """Initial lambda (lambda_eff starts at lam_scale)."""
    lam_min: float = 0.01
    """Lower projection bound of lambda."""
    lam_max: float = 100.0
    """Upper projection bound of lambda."""
    eta: float = 0.01
    """Dual step size eta_lambda."""
    kl_ema: float = 0.1
    """Weight of the new (clipped) KL estimate in its EMA."""
    kl_clip: float = 2.0
    """The KL estimate is clipped at kl_clip * eps before the EMA."""
    reference: Reference = "ema"
    """Reference pi_0: 'ema' = EMA of the BC flow that keeps training (official code); 'frozen' = the initial flow."""
    log_dual: bool = False
    """Ablation, not in the paper: step on log(lambda) (multiplicative; same eta, EMA and clip)."""

    def __post_init__(self) -> None:
        check(self.kl_budget > 0, "kl_budget", self.kl_budget, "> 0")
        check(self.lam_scale > 0, "lam_scale", self.lam_scale, "> 0")
        check(0 < self.lam_min <= self.lam_init <= self.lam_max, "lam_init", self.lam_init,
              "in [lam_min, lam_max], lam_min > 0")
        check(self.eta >= 0, "eta", self.eta, ">= 0")
        check(0 < self.kl_ema <= 1, "kl_ema", self.kl_ema, "in (0, 1]")
        check(self.kl_clip > 0, "kl_clip", self.kl_clip, "> 0")
        check(self.reference in ("ema", "frozen"), "reference", self.reference, "'ema' or 'frozen'")

    def dual(self) -> Dual:
        """The projected dual descent on lambda (core Dual)."""
        return Dual(target=self.kl_budget, lr=self.eta, init=self.lam_init, low=self.lam_min, high=self.lam_max,
                    ema=self.kl_ema, clip_factor=self.kl_clip, log_space=self.log_dual)


class TRQAMAgent(QAMAgent):
    """QAM with a KL-budgeted trust region. Owns the dual state (checkpointed with the agent)."""

    default_discount = 0.995
    """TRQAM's official discount on the manipulation domains (its README; QAM's is 0.99): an effective horizon
    1 / (1 - gamma) of 200 steps instead of 100."""

    def __init__(self, cfg: TRQAMConfig, obs_dim: int, act_dim: int, *, agent: AgentConfig | None = None, seed: int = 0,
                 fixed_critic=None, device: str = "cpu"):
        """`cfg`: TRQAM's own hyper-parameters; `agent`: networks and optimisation (shared by every method)."""
        self.tcfg, self.dual = cfg, cfg.dual()
        qcfg = QAMConfig(beta=0.0, reference=cfg.reference)  # beta unused: see temperature_terms
        super().__init__(qcfg, obs_dim, act_dim, agent=agent, seed=seed, fixed_critic=fixed_critic, device=device)
        self.dual_state: DualState = on_device(self.dual.init_state(), self.device)

    @property
    def lambda_eff(self) -> Tensor:
        """lam_scale * lambda, float32 for the loss."""
        return (self.tcfg.lam_scale * self.dual_state.value).float()

    def temperature_terms(self, g: Tensor) -> tuple[Tensor, float]:
        """sigma_k = g_k / sqrt(lambda_eff) and a lambda-free terminal adjoint -grad Q."""
        return g / self.lambda_eff.clamp_min(1e-8).sqrt(), 1.0

    def after_step(self, metrics: dict[str, Tensor], applied: Tensor) -> None:
        """Projected dual step on the KL measured in this update's forward pass (none for a skipped step)."""
        new = self.dual.update(self.dual_state, metrics["kl/path"])
        self.dual_state = DualState(**{k: torch.where(applied, v, getattr(self.dual_state, k))
                                       for k, v in new.state_dict().items()})
        metrics["dual/trqam/lambda"] = self.lambda_eff.detach()
        metrics["kl/path_ema"] = self.dual_state.smoothed.float()
        metrics["dual/trqam/violation"] = self.dual_state.violation.float()

    def training_state(self) -> dict:
        return {**super().training_state(), "dual": {k: v.cpu() for k, v in self.dual_state.state_dict().items()}}

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        self.dual_state = on_device(DualState.from_state_dict(state["dual"]), self.device)


def on_device(state: DualState, device: torch.device) -> DualState:
    """The dual's 0-d float64 tensors on the agent's device (its step then needs no host sync)."""
    return DualState(**{k: v.to(device) for k, v in state.state_dict().items()})
