"""QAM: Q-learning with Adjoint Matching (Li & Levine, arXiv:2601.14234), fixed inverse temperature beta.

The fine-tuned ("fast") flow is trained by adjoint matching towards pi ∝ pi_0 exp(beta Qbar), where pi_0
is the reference flow (EMA of the still-training BC flow by default, as in the official code; a frozen
copy with `reference="frozen"`). One update, top to bottom:

  1. critic TD on a' = ODE sample of the fast flow at s' (in `FlowAgent.critic_loss`);
  2. flow-matching BC of the slow flow (in `FlowAgent.bc_loss`);
  3. memoryless SDE rollout of the fast flow, X_0..X_{K-1} stored, no grad;
  4. lean adjoint from a_K = -beta grad_a Qbar(s, clip(X_K)) through the reference drift;
  5. adjoint-matching loss sum_k ||2 (v_fast - v_base) / g_k + g_k a_k||^2 on the stored states.

`temperature_terms` is the single place where TRQAM (trqam.py) differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tether.core.config import check
from tether.flow.agent import AgentConfig, FlowAgent, Reference
from tether.flow.data import ChunkBatch
from tether.flow.losses import adjoint_matching, path_kl
from tether.flow.nets import VelocityField
from tether.flow.sampler import euler_sample, lean_adjoint, memoryless_g2, memoryless_rollout


@dataclass(frozen=True)
class QAMConfig:
    """QAM hyper-parameters (paper defaults; beta is tuned per domain in 1..30)."""

    beta: float = 3.0
    """Inverse temperature beta (`inv_temp`): target pi ∝ pi_0 exp(beta Q). Larger = more aggressive."""
    reference: Reference = "ema"
    """Reference pi_0: 'ema' = EMA of the BC flow that keeps training (official code); 'frozen' = the initial flow."""

    def __post_init__(self) -> None:
        check(self.beta >= 0, "beta", self.beta, ">= 0")
        check(self.reference in ("ema", "frozen"), "reference", self.reference, "'ema' or 'frozen'")


class QAMAgent(FlowAgent):
    """QAM agent: slow (BC) flow + EMA reference, fast (fine-tuned) flow, critic ensemble."""

    def __init__(self, cfg: QAMConfig, obs_dim: int, act_dim: int, *, agent: AgentConfig | None = None, seed: int = 0,
                 fixed_critic=None, device: str = "cpu"):
        """`cfg`: QAM's own hyper-parameters; `agent`: networks and optimisation (shared by every method)."""
        self.qcfg = cfg
        super().__init__(agent or AgentConfig(), obs_dim, act_dim, seed=seed, reference=cfg.reference,
                         fixed_critic=fixed_critic, device=device)

    def build_actor(self) -> None:
        self.fast = VelocityField(self.obs_dim, self.action_dim, self.cfg.hidden, layer_norm=self.cfg.actor_layer_norm)

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """ODE (not SDE) sample of the fast flow, clipped (as the official code): acting, TD targets and evaluation."""
        obs = obs.to(self.device)
        return euler_sample(self.fast, obs, self.noise(obs.shape[0]), self.cfg.flow_steps)

    def temperature_terms(self, g: Tensor) -> tuple[Tensor, float]:
        """(sigma_k (K,), terminal-adjoint scale): QAM uses sigma = g and a_K = -beta grad Q."""
        return g, self.qcfg.beta

    def actor_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        obs, K = batch.obs, self.cfg.flow_steps
        n, fast_v = obs.shape[0], []
        # the rollout's own fast-flow passes, with their graphs, are the loss's v_fast at k < K-1 (not recomputed)
        xs, ts, x_final = memoryless_rollout(self.fast, self.base, obs, self.noise(n), K, draw=lambda: self.noise(n),
                                             fast_out=fast_v)
        grad_q = self.q_grad(obs, x_final)  # (B, D)
        g2 = memoryless_g2(ts, 1.0 / K)  # (K,)
        sigma, adj_scale = self.temperature_terms(g2.sqrt())
        adj = lean_adjoint(self.base, obs, xs, ts, -adj_scale * grad_q)  # (K, B, D)
        obs_k = obs.unsqueeze(0).expand(K, *obs.shape)  # (K, B, S)
        t_k = ts.view(K, 1, 1).expand(K, obs.shape[0], 1)  # (K, B, 1)
        last = self.fast(obs, xs[-1], t_k[-1])  # X_{K-1}: the rollout's last step used the base
        v_fast = torch.stack([*fast_v, last])  # (K, B, D), used by the loss and the KL
        with torch.no_grad():
            v_base = self.base(obs_k, xs, t_k)
        delta = v_fast - v_base
        per_sample, diag = adjoint_matching(delta, adj, sigma)  # (B,)
        loss = per_sample.mean()
        kl = path_kl(delta, g2, horizon=self.cfg.horizon).mean()
        return loss, {"loss/adjoint_matching": loss.detach(), "kl/path": kl,
                      "diag/adjoint_abs": grad_q.abs().mean() * adj_scale}
