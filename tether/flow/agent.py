"""The parts every flow agent shares: networks, one optimiser step, the critic TD loss and BC of the base flow.

Owns the slow (BC, reference) flow and its EMA target, the critic ensemble and its EMA target, the
Adam optimiser with global grad-norm clipping, and the agent RNG. It does not own the actor objective:
`fql.py`, `qam.py` and `trqam.py` each add their actor network and loss by overriding `actor_loss`,
so each algorithm's update reads top to bottom in its own file.

One update (as in the QAM/TRQAM code, arXiv:2601.14234 / arXiv:2605.27079):
critic TD + BC(slow) + actor loss -> one Adam step on their sum (clip-norm) -> EMA of critic and slow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from tether.core.config import NonFiniteError, check, check_rate
from tether.core.stability import NonFiniteGuard, clip_grad_norm
from tether.flow.data import ChunkBatch
from tether.flow.device import resolve_device
from tether.flow.losses import critic_td, flow_matching_bc, ot_path, td_target
from tether.flow.nets import CriticEnsemble, VelocityField, ema_update, frozen_copy
from tether.flow.sampler import euler_sample

FixedCritic = Callable[[Tensor, Tensor], Tensor]
"""Q(obs (B, S), actions (B, D)) -> (B,): a known critic (the toy); disables critic training."""
PARAM_CHECK_EVERY = 100
"""Updates between two health checks (weights finite, consecutive skips under the limit), counted from the first
update: the only host sync of `update`, one per 100 updates."""


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
    discount: float | None = None
    """Per-step discount gamma (the chunked target uses gamma^H); None = the method's own (`default_discount`):
    0.995 for TRQAM (its official manipulation value), 0.99 for BC, FQL and QAM (theirs)."""
    tau: float = 0.005
    """EMA rate of the target critic and of the slow (reference) flow."""
    lr: float = 3e-4
    """Adam learning rate (one optimiser over all networks)."""
    grad_clip: float = 1.0
    """Global grad-norm clip; 0 disables it."""
    flow_steps: int = 10
    """Euler / SDE steps K (keep >= 10: fewer collapse QAM)."""
    compile: bool = False
    """torch.compile the loss forward and its backward (graph breaks at the random draws, which stay eager and
    exact); about 40 s of compilation on a CPU core, then a 128/2 FQL update is ~13% faster (QAM ~2%): worth it for long
    runs, not for tests or the toy (docs/results/trqam.md, section 7)."""
    bf16: bool = False
    """bfloat16 autocast of the update's flow passes (the critic stays fp32: a sparse-reward Q near -100 needs more
    precision than bf16's), fp32 master weights and optimiser. Native on GPUs and on CPUs with AVX512-BF16/AMX
    (QAM 4x256: 2x faster); emulated and several times slower on AVX2-only CPUs (docs/results/trqam.md)."""

    def __post_init__(self) -> None:
        check(self.horizon >= 1, "horizon", self.horizon, ">= 1")
        check(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden", self.hidden, "non-empty positive widths")
        check(len(self.critic_hidden) >= 1 and min(self.critic_hidden) >= 1, "critic_hidden", self.critic_hidden,
              "non-empty positive widths")
        check(self.num_qs >= 1, "num_qs", self.num_qs, ">= 1")
        check(self.rho >= 0, "rho", self.rho, ">= 0")
        check(self.discount is None or 0 <= self.discount <= 1, "discount", self.discount, "in [0, 1] or None")
        check(0 < self.tau <= 1, "tau", self.tau, "in (0, 1]")
        check_rate(self.lr, "agent.lr", usual=(1e-7, 1e-1))
        check(self.grad_clip >= 0, "grad_clip", self.grad_clip, ">= 0")
        check(self.flow_steps >= 1, "flow_steps", self.flow_steps, ">= 1")


Reference = Literal["ema", "frozen"]


class FlowAgent(nn.Module):
    """Base class: subclasses build their actor in `build_actor` and define `actor_loss` and `act`."""

    default_discount = 0.99
    """gamma when `AgentConfig.discount` is None (the official value of BC, FQL and QAM on OGBench)."""

    def __init__(self, cfg: AgentConfig, obs_dim: int, act_dim: int, *, seed: int = 0,
                 reference: Reference = "ema", fixed_critic: FixedCritic | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.device = resolve_device(device)  # a CUDA name without a GPU fails here, before any tensor is made
        if cfg.discount is None:
            cfg = replace(cfg, discount=self.default_discount)
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.action_dim = act_dim * cfg.horizon  # D, the flattened chunk
        self.reference, self.fixed_critic = reference, fixed_critic
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        torch.manual_seed(seed)  # parameter init, on the CPU: the same initial weights on every device
        self.slow = VelocityField(obs_dim, self.action_dim, cfg.hidden, layer_norm=cfg.actor_layer_norm)
        self.slow_target = frozen_copy(self.slow)
        self.critic = CriticEnsemble(obs_dim, self.action_dim, cfg.critic_hidden, cfg.num_qs)
        self.critic_target = frozen_copy(self.critic)
        self.build_actor()
        self.to(self.device)
        self.set_trainable([p for p in self.parameters() if p.requires_grad])
        self._losses = torch.compile(self.losses) if cfg.compile else self.losses
        self.guard, self.updates = NonFiniteGuard(lr_flag="--agent.lr"), 0  # non-finite loss/gradient: skipped
        zero = torch.zeros((), device=self.device)
        self.skipped, self.consecutive, self.worst_run = zero.clone(), zero.clone(), zero.clone()

    def set_trainable(self, params: list[nn.Parameter]) -> None:
        """The parameters the update trains, with a fresh optimiser over them. Fused Adam: one kernel over all
        tensors, and its `found_inf` skips a non-finite step (and its step count) on the device, so the update
        needs no host sync to decide."""
        self.params = list(params)
        self.optimizer = torch.optim.Adam(self.params, lr=self.cfg.lr, fused=True)

    # -- hooks for the algorithm files ------------------------------------------------------------
    def build_actor(self) -> None:
        """Create the algorithm's own networks (none for plain BC)."""

    def actor_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar actor loss and detached metrics; plain BC has none."""
        return torch.zeros((), device=self.device), {}

    def after_step(self, metrics: dict[str, Tensor], applied: Tensor) -> None:
        """Runs after the optimiser and EMA steps (TRQAM's dual step); `applied` (0-d bool) is False where the
        step was skipped, and a state change must then be undone with torch.where (no host sync)."""

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Action chunks (B, D) in [-1, 1] for obs (B, S) on any device, returned on the agent's device; the BC
        flow by default."""
        obs = obs.to(self.device)
        return euler_sample(self.slow, obs, self.noise(obs.shape[0]), self.cfg.flow_steps)

    # -- shared pieces ------------------------------------------------------------------------------
    def noise(self, n: int, *lead: int) -> Tensor:
        """Standard normal (*lead, n, D) from the agent's generator: with `uniform`, every random draw of an update."""
        return torch.randn(*lead, n, self.action_dim, generator=self.gen, device=self.device)

    def uniform(self, n: int) -> Tensor:
        """U[0, 1) of shape (n, 1): the flow-matching times."""
        return torch.rand(n, 1, generator=self.gen, device=self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast of the network passes when `agent.bf16`; a no-op context otherwise."""
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

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
            return torch.zeros((), device=self.device), {}
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
            return torch.zeros((), device=self.device), {}
        x0 = self.noise(batch.obs.shape[0])
        t = self.uniform(x0.shape[0])
        xt, target = ot_path(x0, batch.actions, t)
        per_sample, _ = flow_matching_bc(self.slow(batch.obs, xt, t), target)  # (B,)
        loss = (per_sample * batch.valid).mean()
        return loss, {"loss/bc": loss.detach()}

    def update(self, batch: ChunkBatch) -> dict[str, Tensor]:
        """One gradient step on critic + BC + actor, then EMA targets, then `after_step`; a step whose loss or
        gradient norm is not finite is skipped whole (no optimiser, EMA or dual step) and counted.

        No host sync: the skip is decided on the device (fused Adam's `found_inf`, a zero EMA weight, torch.where
        in the dual), metrics are 0-d tensors on the agent's device; every PARAM_CHECK_EVERY updates
        `check_health` syncs once."""
        total, metrics = self._losses(batch.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = clip_grad_norm(self.params, self.cfg.grad_clip or None)
        applied = torch.isfinite(total.detach()) & torch.isfinite(grad_norm)  # 0-d bool, on the device
        skip = (~applied).float()
        self.optimizer.found_inf = skip
        self.optimizer.step()
        self.updates += 1
        # a skipped step moves no target either; on the CPU reading `applied` costs nothing and keeps the one-pass lerp
        tau = (self.cfg.tau if bool(applied) else 0.0) if self.device.type == "cpu" else self.cfg.tau * applied.float()
        ema_update(self.critic_target, self.critic, tau)
        if self.reference == "ema":
            ema_update(self.slow_target, self.slow, tau)
        self.skipped += skip
        self.consecutive = (self.consecutive + 1) * skip
        self.worst_run = torch.maximum(self.worst_run, self.consecutive)
        metrics = {**metrics, "loss/total": total.detach(), "grad/norm": grad_norm.detach(),
                   "grad/skipped_steps": self.skipped.clone()}
        self.after_step(metrics, applied)
        if self.updates % PARAM_CHECK_EVERY == 1:  # finite gradients, non-finite weights (a huge lr): stop
            self.check_health()
        return metrics

    def losses(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """critic TD + BC + actor loss (fp32 scalar) and their detached metrics: the part `agent.compile` compiles."""
        with self.autocast():
            critic_loss, metrics = self.critic_loss(batch)
            bc_loss, m_bc = self.bc_loss(batch)
            actor_loss, m_actor = self.actor_loss(batch)
            total = (critic_loss + bc_loss + actor_loss).float()
        return total, {**metrics, **m_bc, **m_actor}

    def check_health(self) -> None:
        """Raise NonFiniteError if a weight is NaN/inf or `guard.max_consecutive` updates in a row were skipped
        since the last check (one host sync; the loop also calls it before every save)."""
        worst, consecutive, skipped = (int(v) for v in torch.stack([self.worst_run, self.consecutive,
                                                                    self.skipped]).tolist())
        self.guard.skipped, self.guard.consecutive = skipped, consecutive
        self.worst_run = self.consecutive.clone()
        if worst >= self.guard.max_consecutive:
            raise NonFiniteError(
                f"{worst} consecutive non-finite steps (loss or gradient norm), by step {self.updates}; lower "
                f"{self.guard.lr_flag} or check the inputs, then resume from the last checkpoint with --run.resume.")
        self.guard.check_params(self.params, step=self.updates)

    def check_finite(self) -> None:
        """`check_health` (kept name: the loop calls it before every save)."""
        self.check_health()

    def load_pretrained(self, velocity_state: dict[str, Tensor]) -> None:
        """Initialise slow, its target and every flow actor from a BC checkpoint (the TRQAM pipeline)."""
        for name in ("slow", "slow_target", "fast"):
            if hasattr(self, name):
                getattr(self, name).load_state_dict(velocity_state)

    def training_state(self) -> dict:
        """Everything needed to resume: weights, optimiser, RNG (subclasses add their duals); on the CPU."""
        self.guard.skipped, self.guard.consecutive = int(self.skipped), int(self.consecutive)
        return to_cpu({"model": self.state_dict(), "optimizer": self.optimizer.state_dict(),
                       "gen": self.gen.get_state(), "guard": self.guard.state_dict(), "updates": self.updates})

    def load_training_state(self, state: dict) -> None:
        self.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["gen"])
        if "guard" in state:  # checkpoints written before the guard existed have none
            self.guard.load_state_dict(state["guard"])
            self.updates = state["updates"]
            self.skipped.fill_(self.guard.skipped)
            self.consecutive.fill_(self.guard.consecutive)
            self.worst_run.fill_(self.guard.consecutive)


def to_cpu(tree):
    """A copy of a nest of dicts/lists with every tensor on the CPU (checkpoints are device-free)."""
    if isinstance(tree, Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {k: to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(v) for v in tree)
    return tree


class BCAgent(FlowAgent):
    """Flow-matching BC only (the pretraining stage and the BC floor); acts with the BC flow's ODE."""

    def critic_loss(self, batch: ChunkBatch) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.zeros(()), {}
