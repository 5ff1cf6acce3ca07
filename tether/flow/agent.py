"""The parts every flow agent shares: networks, one optimiser step, the critic TD loss and BC of the base flow.

Owns the slow (BC, reference) flow and its EMA target, the critic ensemble and its EMA target, the
Adam optimiser with global grad-norm clipping, and the agent RNG. It does not own the actor objective:
`fql.py`, `qam.py` and `trqam.py` each add their actor network and loss by overriding `actor_loss`,
so each algorithm's update reads top to bottom in its own file.

One update (as in the QAM/TRQAM code, arXiv:2601.14234 / arXiv:2605.27079):
critic TD + BC(slow) + actor loss -> one Adam step on their sum (clip-norm) -> EMA of critic and slow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from tether.core.config import check, check_rate
from tether.core.stability import NonFiniteGuard, clip_grad_norm
from tether.flow.data import ChunkBatch
from tether.flow.losses import critic_td, flow_matching_bc, ot_path, td_target
from tether.flow.nets import CriticEnsemble, VelocityField, ema_update, frozen_copy
from tether.flow.sampler import euler_sample

FixedCritic = Callable[[Tensor, Tensor], Tensor]
PARAM_CHECK_EVERY = 100
"""Updates between the weight finiteness checks (each is one host sync), counted from the first update."""
"""Q(obs (B, S), actions (B, D)) -> (B,): a known critic (the toy); disables critic training."""


@dataclass(frozen=True)
class AgentConfig:
    """Network sizes and optimisation constants shared by FQL, QAM and TRQAM (paper values as defaults)."""

    horizon: int = 5
    """Action chunk length H (5 manipulation, 1 navigation); the policy outputs act_dim * H numbers."""
    hidden: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden widths of every actor MLP (GELU)."""
    critic_hidden: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden widths of each critic MLP (GELU + LayerNorm)."""
    actor_layer_norm: bool = False
    """LayerNorm in the actor MLPs (the paper uses it only on the 10M/100M domains)."""
    num_qs: int = 10
    """Critic ensemble size N_Q."""
    rho: float = 0.5
    """Pessimism: TD target uses mean_j Qbar_j - rho * std_j Qbar_j."""
    discount: float = 0.99
    """Per-step discount gamma; the chunked target uses gamma^H."""
    tau: float = 0.005
    """EMA rate of the target critic and of the slow (reference) flow."""
    lr: float = 3e-4
    """Adam learning rate (one optimiser over all networks)."""
    grad_clip: float = 1.0
    """Global grad-norm clip; 0 disables it."""
    flow_steps: int = 10
    """Euler / SDE steps K (keep >= 10: fewer collapse QAM)."""

    def __post_init__(self) -> None:
        check(self.horizon >= 1, "horizon", self.horizon, ">= 1")
        check(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden", self.hidden, "non-empty positive widths")
        check(len(self.critic_hidden) >= 1 and min(self.critic_hidden) >= 1, "critic_hidden", self.critic_hidden,
              "non-empty positive widths")
        check(self.num_qs >= 1, "num_qs", self.num_qs, ">= 1")
        check(self.rho >= 0, "rho", self.rho, ">= 0")
        check(0 <= self.discount <= 1, "discount", self.discount, "in [0, 1]")
        check(0 < self.tau <= 1, "tau", self.tau, "in (0, 1]")
        check_rate(self.lr, "agent.lr", usual=(1e-7, 1e-1))
        check(self.grad_clip >= 0, "grad_clip", self.grad_clip, ">= 0")
        check(self.flow_steps >= 1, "flow_steps", self.flow_steps, ">= 1")


Reference = Literal["ema", "frozen"]


class FlowAgent(nn.Module):
    """Base class: subclasses build their actor in `build_actor` and define `actor_loss` and `act`."""

    def __init__(self, cfg: AgentConfig, obs_dim: int, act_dim: int, *, seed: int = 0,
                 reference: Reference = "ema", fixed_critic: FixedCritic | None = None):
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.action_dim = act_dim * cfg.horizon  # D, the flattened chunk
        self.reference, self.fixed_critic = reference, fixed_critic
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # parameter init
        self.slow = VelocityField(obs_dim, self.action_dim, cfg.hidden, layer_norm=cfg.actor_layer_norm)
        self.slow_target = frozen_copy(self.slow)
        self.critic = CriticEnsemble(obs_dim, self.action_dim, cfg.critic_hidden, cfg.num_qs)
        self.critic_target = frozen_copy(self.critic)
        self.build_actor()
        self.optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=cfg.lr)
        self.guard, self.updates = NonFiniteGuard(lr_flag="--agent.lr"), 0  # non-finite loss/gradient: skipped

    # -- hooks for the algorithm files ------------------------------------------------------------
    def build_actor(self) -> None:
        """Create the algorithm's own networks (none for plain BC)."""

    def actor_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar actor loss and detached metrics; plain BC has none."""
        return torch.zeros(()), {}

    def after_step(self, metrics: dict[str, Tensor]) -> None:
        """Runs after the optimiser and EMA steps (TRQAM's dual step)."""

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Action chunks (B, D) in [-1, 1] for obs (B, S); the BC flow by default."""
        return euler_sample(self.slow, obs, self.noise(obs.shape[0]), self.cfg.flow_steps)

    # -- shared pieces ------------------------------------------------------------------------------
    def noise(self, n: int, *lead: int) -> Tensor:
        return torch.randn(*lead, n, self.action_dim, generator=self.gen)

    @property
    def base(self) -> VelocityField:
        """The reference pi_0: EMA of the still-training BC flow ("ema"), or the frozen initial copy."""
        return self.slow_target

    def q_values(self, obs: Tensor, actions: Tensor, *, target: bool, detach_params: bool = False) -> Tensor:
        """(N, B) critic values at clip(actions); a fixed critic is broadcast to N = 1.

        detach_params: gradients reach the actions but not the critic (FQL's actor term).
        """
        actions = actions.clamp(-1.0, 1.0)
        if self.fixed_critic is not None:
            return self.fixed_critic(obs, actions).unsqueeze(0)
        critic = self.critic_target if target else self.critic
        if detach_params:
            params = {k: v.detach() for k, v in critic.named_parameters()}
            return torch.func.functional_call(critic, params, (obs, actions))
        return critic(obs, actions)

    def q_grad(self, obs: Tensor, actions: Tensor) -> Tensor:
        """grad_a mean_j Qbar_j(s, clip(a)), (B, D); the clip zeroes the gradient in clipped dims."""
        with torch.enable_grad():
            a = actions.detach().requires_grad_(True)
            q = self.q_values(obs, a, target=True).mean(dim=0).sum()
            (grad,) = torch.autograd.grad(q, a)
        return grad

    def next_actions(self, next_obs: Tensor) -> Tensor:
        """a' for the TD target; each algorithm acts with its own policy."""
        return self.act(next_obs)

    def critic_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        if self.fixed_critic is not None:
            return torch.zeros(()), {}
        with torch.no_grad():
            next_q = self.q_values(batch.next_obs, self.next_actions(batch.next_obs), target=True)  # (N, B)
            y = td_target(next_q, batch.rewards, batch.masks, discount=self.cfg.discount ** self.cfg.horizon,
                          rho=self.cfg.rho)
        per_member, diag = critic_td(self.critic(batch.obs, batch.actions), y)  # (N, B)
        loss = (per_member * batch.valid).mean()  # mean over members and batch, as in the official code
        q = diag["q"].detach()
        return loss, {"loss/critic": loss.detach(), "q/mean": q.mean(), "q/max": q.max(), "q/min": q.min()}

    def bc_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Flow-matching BC of the slow flow on the batch (skipped for a frozen reference)."""
        if self.reference == "frozen":
            return torch.zeros(()), {}
        x0 = self.noise(batch.obs.shape[0])
        t = torch.rand(x0.shape[0], 1, generator=self.gen)
        xt, target = ot_path(x0, batch.actions, t)
        per_sample, _ = flow_matching_bc(self.slow(batch.obs, xt, t), target)  # (B,)
        loss = (per_sample * batch.valid).mean()
        return loss, {"loss/bc": loss.detach()}

    def update(self, batch: ChunkBatch) -> dict[str, Tensor]:
        """One gradient step on critic + BC + actor, then EMA targets, then `after_step`; a step whose loss or
        gradient norm is not finite is skipped whole (no optimiser, EMA or dual step) and counted."""
        critic_loss, metrics = self.critic_loss(batch)
        bc_loss, m_bc = self.bc_loss(batch)
        actor_loss, m_actor = self.actor_loss(batch)
        total = critic_loss + bc_loss + actor_loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = clip_grad_norm(params, self.cfg.grad_clip or None)
        applied = self.guard.ok(total.detach(), grad_norm, step=self.updates)
        self.updates += 1
        if applied:
            self.optimizer.step()
            if self.updates % PARAM_CHECK_EVERY == 1:  # finite gradients, non-finite weights (a huge lr): stop
                self.check_finite()
            ema_update(self.critic_target, self.critic, self.cfg.tau)
            if self.reference == "ema":
                ema_update(self.slow_target, self.slow, self.cfg.tau)
        metrics = {**metrics, **m_bc, **m_actor, "loss/total": total.detach(), "grad/norm": grad_norm.detach(),
                   "grad/skipped_steps": torch.tensor(float(self.guard.skipped))}
        if applied:
            self.after_step(metrics)
        return metrics

    def check_finite(self) -> None:
        """Raise NonFiniteError if any weight is NaN/inf (one host sync; the loop calls it before every save)."""
        self.guard.check_params([p for g in self.optimizer.param_groups for p in g["params"]], step=self.updates)

    def load_pretrained(self, velocity_state: dict[str, Tensor]) -> None:
        """Initialise slow, its target and every flow actor from a BC checkpoint (the TRQAM pipeline)."""
        for name in ("slow", "slow_target", "fast"):
            if hasattr(self, name):
                getattr(self, name).load_state_dict(velocity_state)

    def training_state(self) -> dict:
        """Everything needed to resume: weights, optimiser, RNG (subclasses add their duals)."""
        return {"model": self.state_dict(), "optimizer": self.optimizer.state_dict(), "gen": self.gen.get_state(),
                "guard": self.guard.state_dict(), "updates": self.updates}

    def load_training_state(self, state: dict) -> None:
        self.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["gen"])
        if "guard" in state:  # checkpoints written before the guard existed have none
            self.guard.load_state_dict(state["guard"])
            self.updates = state["updates"]


class BCAgent(FlowAgent):
    """Flow-matching BC only (the pretraining stage and the BC floor); acts with the BC flow's ODE."""

    def critic_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.zeros(()), {}
