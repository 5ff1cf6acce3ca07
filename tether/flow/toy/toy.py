"""The critic-error toy (docs/results/trqam.md, section 2): one state, a 2-D action, a ring of 6 behaviour modes,
a wrong critic.

Behaviour data: 6 Gaussians on a ring (radius 0.6, std 0.05). True reward r(a) = sum_k w_k exp(-||a - m_k||^2 /
(2 * 0.1^2)) with w = (1, 0.6, 0, 0, 0, 0.3). The critic is mis-specified by an optimistic ramp off the data
support, Qhat(a) = q_scale * (r(a) + c * relu(dist(a, support) - 0.1) * (1 + a_x)), zero on the data and growing
off it like extrapolation error. `critic="learned"` instead fits a critic ensemble by TD (a bandit: masks 0)
from logged data: 90% ring actions, 10% uniform actions, logged reward Qhat(a) (so the off-support logs carry
the optimistic error). The base flow is pretrained by BC on the ring, then fine-tuned with a frozen reference.
Toy dual settings differ from the paper's (lam_scale 1 vs 3, eta 0.05 vs 0.01); EMA and the 2 eps clip are the paper's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from tether.core.config import check
from tether.core.progress import progress
from tether.flow.agent import AgentConfig, BCAgent, FlowAgent
from tether.flow.data import ChunkBatch
from tether.flow.device import check_device_name, resolve_device
from tether.flow.fql import FQLConfig
from tether.flow.losses import path_kl
from tether.flow.methods import METHODS, Method
from tether.flow.methods import build_agent as build_agent_of
from tether.flow.qam import QAMAgent, QAMConfig
from tether.flow.sampler import memoryless_g2, memoryless_rollout
from tether.flow.trqam import TRQAMAgent, TRQAMConfig

RADIUS, MODE_STD, REWARD_WIDTH, ON_SUPPORT = 0.6, 0.05, 0.1, 0.15
WEIGHTS = (1.0, 0.6, 0.0, 0.0, 0.0, 0.3)


@dataclass(frozen=True)
class ToyConfig:
    """`tether flow toy`: fine-tune a BC flow on the critic-error toy and print what it did."""

    method: Method = "trqam"
    """Which fine-tuning: bc (no fine-tuning), fql, qam or trqam."""
    fql: FQLConfig = field(default_factory=lambda: FQLConfig(alpha=10.0))
    """FQL's hyper-parameters (`--alpha` = `--fql.alpha`; alpha 10 on the toy's unit-scale critic)."""
    qam: QAMConfig = field(default_factory=lambda: QAMConfig(reference="frozen"))
    """QAM's hyper-parameters (`--beta` = `--qam.beta`); the toy's reference is the frozen BC flow."""
    trqam: TRQAMConfig = field(default_factory=lambda: TRQAMConfig(kl_budget=0.5, lam_scale=1.0, eta=0.05,
                                                                   reference="frozen"))
    """TRQAM's hyper-parameters (`--kl-budget`, `--lam-scale`, `--eta`, `--log-dual`); on the toy eps 0.5,
    lam_scale 1 and eta 0.05 (the paper's 3 and 0.01 are for OGBench), frozen reference."""
    critic_error: float = 2.0
    """Strength c of the optimistic off-support ramp in the critic."""
    q_scale: float = 1.0
    """Multiplier on every critic value (Q x 10 test: 10)."""
    critic: Literal["misspecified", "learned"] = "misspecified"
    """'misspecified' = the analytic wrong critic; 'learned' = a TD-fitted ensemble on logged bandit data."""
    steps: int = 1500
    """Fine-tuning updates."""
    bc_steps: int = 3000
    """BC pretraining updates of the base flow (cached per seed/width within a process)."""
    width: int = 128
    """Hidden width of the 3-layer actor and critic MLPs."""
    batch_size: int = 256
    """Batch size of every update."""
    seed: int = 0
    """Seed of BC pretraining, fine-tuning and evaluation."""
    json: bool = False
    """Print one JSON object instead of a table."""
    bf16: bool = False
    """bfloat16 autocast of the updates (fp32 weights); off by default: emulated and slow on AVX2-only CPUs."""
    device: str = "cpu"
    """Where the agent and its updates run: 'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when a GPU is visible)."""

    def __post_init__(self) -> None:
        check_device_name(self.device)
        check(self.method in METHODS, "method", self.method, METHODS.names())
        check(self.critic in ("misspecified", "learned"), "critic", self.critic, "'misspecified' or 'learned'")
        check(self.steps >= 0 and self.bc_steps >= 0, "steps", (self.steps, self.bc_steps), ">= 0")
        check(self.width >= 1 and self.batch_size >= 2, "width/batch_size", (self.width, self.batch_size),
              ">= 1 / >= 2")


def modes(device: torch.device | str = "cpu") -> Tensor:
    ang = torch.arange(6, device=device) * 2 * math.pi / 6
    return RADIUS * torch.stack([ang.cos(), ang.sin()], dim=1)  # (6, 2)


def true_reward(a: Tensor) -> Tensor:
    """r(a) (..., 2) -> (...), on a's device."""
    d2 = (a.unsqueeze(-2) - modes(a.device)).square().sum(-1)  # (..., 6)
    return (torch.tensor(WEIGHTS, device=a.device) * torch.exp(-d2 / (2 * REWARD_WIDTH**2))).sum(-1)


def support_distance(a: Tensor) -> Tensor:
    return (a.unsqueeze(-2) - modes(a.device)).norm(dim=-1).min(dim=-1).values  # (...)


def critic_hat(a: Tensor, *, critic_error: float, q_scale: float) -> Tensor:
    """Qhat(a) = q_scale * (r(a) + c * relu(dist(a, support) - 0.1) * (1 + a_x))."""
    ramp = torch.relu(support_distance(a) - 0.1) * (1 + a[..., 0])
    return q_scale * (true_reward(a) + critic_error * ramp)


def behaviour_actions(n: int, generator: torch.Generator) -> Tensor:
    comp = torch.randint(0, 6, (n,), generator=generator)
    return modes()[comp] + MODE_STD * torch.randn(n, 2, generator=generator)


def agent_config(cfg: ToyConfig, lr: float) -> AgentConfig:
    w = (cfg.width,) * 3
    return AgentConfig(horizon=1, hidden=w, critic_hidden=w, num_qs=2, rho=0.5, lr=lr, flow_steps=10, bf16=cfg.bf16)


@functools.lru_cache(maxsize=8)
def pretrained_flow(seed: int, width: int, bc_steps: int, batch_size: int, device: str = "cpu",
                    bf16: bool = False) -> dict[str, Tensor]:
    """BC flow on the ring (lr 1e-3); cached so sweeps share one base per seed (and device / precision)."""
    cfg = ToyConfig(width=width, bc_steps=bc_steps, batch_size=batch_size, seed=seed, bf16=bf16)
    agent = BCAgent(agent_config(cfg, 1e-3), 0, 2, seed=seed, reference="ema", device=device)
    g = torch.Generator().manual_seed(seed + 1000)
    with progress(bc_steps, "toy BC pretraining") as bar:  # stderr: `tether flow toy --json` keeps stdout clean
        for _ in range(bc_steps):
            m = agent.update(bandit_batch(behaviour_actions(batch_size, g)))
            bar.update(1, loss=float(m["loss/bc"]))
    return {k: v.clone() for k, v in agent.slow.state_dict().items()}


def bandit_batch(actions: Tensor, rewards: Tensor | None = None) -> ChunkBatch:
    n = actions.shape[0]
    ones, empty = torch.ones(n), torch.zeros(n, 0)
    return ChunkBatch(empty, actions, rewards if rewards is not None else 0 * ones, 0 * ones, ones, empty)


def build_agent(cfg: ToyConfig) -> FlowAgent:
    """The method's agent on the toy (bandit: no observation, 2-D actions), loaded with the cached BC flow."""
    fixed = None
    if cfg.critic == "misspecified":
        fixed = lambda obs, a: critic_hat(a, critic_error=cfg.critic_error, q_scale=cfg.q_scale)  # noqa: E731
    device = str(resolve_device(cfg.device))
    agent = build_agent_of(cfg.method, cfg, agent_config(cfg, 3e-4), 0, 2, seed=cfg.seed, fixed_critic=fixed,
                           bc_reference="frozen", device=device)
    agent.load_pretrained(pretrained_flow(cfg.seed, cfg.width, cfg.bc_steps, cfg.batch_size, device, cfg.bf16))
    return agent


def fine_tune(cfg: ToyConfig, agent: FlowAgent, *, trace_every: int = 10) -> tuple[list[dict], list[Tensor]]:
    """Run `cfg.steps` updates; returns a trace (step, kl/path, kl/path_ema, lambda every `trace_every` steps)
    and the per-update `kl/path` values."""
    g = torch.Generator().manual_seed(cfg.seed + 2000)
    trace, kls = [], []
    steps = cfg.steps if cfg.method != "bc" else 0
    with progress(steps, f"toy {cfg.method} fine-tuning") as bar:
        for step in range(steps):
            actions = behaviour_actions(cfg.batch_size, g)
            rewards = None
            if cfg.critic == "learned":
                n_off = cfg.batch_size // 10  # 10% logged off-support actions with optimistic logged reward
                actions[:n_off] = torch.rand(n_off, 2, generator=g) * 2 - 1
                rewards = critic_hat(actions, critic_error=cfg.critic_error, q_scale=cfg.q_scale)
            m = agent.update(bandit_batch(actions, rewards))
            if "kl/path" in m:
                kls.append(m["kl/path"])
            shown = {k: float(v) for k, v in m.items() if k in ("kl/path", "kl/path_ema", "dual/trqam/lambda")}
            if step % trace_every == 0 or step == cfg.steps - 1:
                trace.append({"step": step, **shown})
            bar.update(1, **{name: shown[k] for name, k in (("kl", "kl/path"), ("lam", "dual/trqam/lambda"))
                             if k in shown})
    return trace, kls


@torch.no_grad()
def evaluate(cfg: ToyConfig, agent: FlowAgent, n: int = 4000) -> dict[str, float | None]:
    """The toy metrics on n ODE samples (the one-step policy for FQL)."""
    torch.manual_seed(cfg.seed + 3000)
    agent.gen.manual_seed(cfg.seed + 3000)
    a = agent.act(torch.zeros(n, 0))  # on the agent's device
    out = {
        "true_reward": float(true_reward(a).mean()),
        "believed_q": float(critic_hat(a, critic_error=cfg.critic_error, q_scale=cfg.q_scale).mean()),
        "on_support": float((support_distance(a) < ON_SUPPORT).float().mean()),
        "realised_kl": 0.0 if cfg.method == "bc" else None,
    }
    if isinstance(agent, QAMAgent):
        obs = torch.zeros(n, 0, device=agent.device)
        xs, ts, _ = memoryless_rollout(agent.fast, agent.base, obs, agent.noise(n), 10, generator=agent.gen)
        tk = ts.view(-1, 1, 1).expand(10, n, 1)
        delta = agent.fast(obs.expand(10, n, 0), xs, tk) - agent.base(obs.expand(10, n, 0), xs, tk)
        out["realised_kl"] = float(path_kl(delta, memoryless_g2(ts, 0.1), horizon=1).mean())
    return out


def run_toy_dict(cfg: ToyConfig) -> dict:
    """Everything `tether flow toy` reports, plus `samples` (the 4000 actions, for plots) and `trace`."""
    torch.manual_seed(cfg.seed)
    agent = build_agent(cfg)
    trace, kls = fine_tune(cfg, agent)
    metrics = evaluate(cfg, agent)
    tail = kls[int(0.8 * len(kls)):]
    agent.gen.manual_seed(cfg.seed + 4000)
    samples = agent.act(torch.zeros(4000, 0)).cpu()  # for the plots
    lam = float(agent.lambda_eff) if isinstance(agent, TRQAMAgent) else None
    return {
        "method": cfg.method, **metrics, "lambda": lam,
        "realised_kl_tail_mean": float(torch.stack(tail).mean()) if tail else None,
        "critic_error": cfg.critic_error, "q_scale": cfg.q_scale, "critic": cfg.critic, "seed": cfg.seed,
        "steps": cfg.steps, "beta": cfg.qam.beta if cfg.method == "qam" else None,
        "kl_budget": cfg.trqam.kl_budget if cfg.method == "trqam" else None,
        "log_dual": cfg.trqam.log_dual if cfg.method == "trqam" else None,
        "alpha": cfg.fql.alpha if cfg.method == "fql" else None,
        "trace": trace, "samples": samples,
    }
