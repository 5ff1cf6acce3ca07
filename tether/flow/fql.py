"""FQL: Flow Q-Learning (Park, Li & Levine, arXiv:2502.02538), action-chunked as in the QC/QAM code base.

A one-step policy mu(s, z) is distilled from the BC flow and maximises Q:

  1. critic TD on a' = mu(s', z), clipped (in `FlowAgent.critic_loss` via `next_actions`);
  2. flow-matching BC of the (slow) flow, the distillation teacher (in `FlowAgent.bc_loss`);
  3. actor: alpha * ||mu(s, z) - ODE_flow(s, z)||^2 - Q(s, clip(mu(s, z))), same noise z for both.

Acting uses mu: one forward pass, no ODE. The teacher is the training flow itself (not its EMA), as in FQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tether.core.config import check
from tether.flow.agent import AgentConfig, FlowAgent
from tether.flow.data import ChunkBatch
from tether.flow.losses import fql_actor
from tether.flow.nets import OneStepPolicy
from tether.flow.sampler import euler_sample


@dataclass(frozen=True)
class FQLConfig:
    """FQL hyper-parameters (alpha is tuned per domain, 1..1000)."""

    alpha: float = 300.0
    """Distillation coefficient alpha: weight of ||mu - ODE||^2 against -Q."""
    normalize_q: bool = False
    """Divide the Q term by stop_grad(mean |Q|) (FQL's `normalize_q_loss`)."""

    def __post_init__(self) -> None:
        check(self.alpha >= 0, "alpha", self.alpha, ">= 0")


class FQLAgent(FlowAgent):
    """FQL agent: BC flow (teacher), one-step policy (actor), critic ensemble."""

    def __init__(self, cfg: FQLConfig, obs_dim: int, act_dim: int, *, agent: AgentConfig | None = None, seed: int = 0,
                 fixed_critic=None, device: str = "cpu"):
        """`cfg`: FQL's own hyper-parameters; `agent`: networks and optimisation (shared by every method)."""
        self.fcfg = cfg
        super().__init__(agent or AgentConfig(), obs_dim, act_dim, seed=seed, reference="ema",
                         fixed_critic=fixed_critic, device=device)

    def build_actor(self) -> None:
        self.onestep = OneStepPolicy(self.obs_dim, self.action_dim, self.cfg.hidden,
                                     layer_norm=self.cfg.actor_layer_norm)

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        obs = obs.to(self.device)
        return self.onestep(obs, self.noise(obs.shape[0])).clamp(-1.0, 1.0)

    def actor_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.noise(batch.obs.shape[0])  # (B, D)
        teacher = euler_sample(self.slow, batch.obs, z, self.cfg.flow_steps, clip=True)  # (B, D), no grad
        mu = self.onestep(batch.obs, z)  # (B, D)
        q = self.q_values(batch.obs, mu, target=False, detach_params=True)  # (N, B), grad to mu only
        per_sample, diag = fql_actor(mu, teacher, q, alpha=self.fcfg.alpha, normalize_q=self.fcfg.normalize_q)
        loss = per_sample.mean()
        return loss, {"loss/actor": loss.detach(), "loss/distill": diag["distill"].mean().detach(),
                      "q/actor": diag["q"].mean().detach()}
