"""Pure losses for flow policies: flow-matching BC, critic TD, FQL's actor, adjoint matching, path KL.

Every function takes tensors and keyword floats, returns an unreduced per-sample tensor plus a dict of
unreduced diagnostics, and never logs, reduces over the batch, or touches a config. The agents choose
the reduction (masked by chunk validity) and own the networks that produced the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ot_path(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Linear (OT / rectified) path: x_t = (1 - t) x0 + t x1, target velocity x1 - x0. t (B, 1)."""
    return (1.0 - t) * x0 + t * x1, x1 - x0


def flow_matching_bc(pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Conditional flow-matching BC (Lipman et al., arXiv:2210.02747): mean_d (v(s, x_t, t) - (a - x0))^2.

    pred, target (B, D) -> (B,). Averaged over action dims, as in the FQL/QAM code.
    """
    per_sample = (pred - target).square().mean(dim=-1)  # (B,)
    return per_sample, {"pred_norm": pred.norm(dim=-1)}


def td_target(next_q: Tensor, rewards: Tensor, masks: Tensor, *, discount: float, rho: float) -> Tensor:
    """Chunked pessimistic TD target y = R_H + gamma^H * m * (mean_j Qbar_j - rho * std_j Qbar_j).

    next_q (N, B) from the EMA target critic at (s', a'); rewards = sum_i gamma^i r_i over the chunk (B,);
    masks (B,) is 0 at a terminal; `discount` is gamma^H. std is the biased (population) ensemble std,
    as `jnp.std` in the official code; N = 1 gives std 0.
    """
    std = next_q.std(dim=0, unbiased=False)
    return rewards + discount * masks * (next_q.mean(dim=0) - rho * std)  # (B,)


def critic_td(q: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Squared TD error per member (Q_j(s, a) - y)^2, q (N, B), target (B,) detached -> (N, B)."""
    err = q - target.detach()
    return err.square(), {"q": q, "td_error": err}


def fql_actor(
    mu: Tensor, ode_target: Tensor, q: Tensor, *, alpha: float, normalize_q: bool
) -> tuple[Tensor, dict[str, Tensor]]:
    """FQL one-step actor loss (arXiv:2502.02538, Eq. 5): alpha * ||mu(s,z) - ODE(s,z)||^2 - Q(s, mu(s,z)).

    mu (B, D) the one-step action; ode_target (B, D) the BC flow's Euler sample from the same z
    (stop-grad); q (N, B) the critic at clip(mu). The squared distance is the per-dim mean, as in the
    code. With normalize_q the Q term is divided by stop_grad(mean |Q|), making alpha scale-free.
    """
    distill = (mu - ode_target.detach()).square().mean(dim=-1)  # (B,)
    q_mean = q.mean(dim=0)  # (B,)
    scale = q_mean.abs().mean().detach().clamp_min(1e-6) if normalize_q else torch.ones_like(q_mean[0])
    per_sample = alpha * distill - q_mean / scale
    return per_sample, {"distill": distill, "q": q_mean}


def adjoint_matching(delta: Tensor, adj: Tensor, sigma: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Adjoint-matching regression (arXiv:2409.08861; QAM arXiv:2601.14234):
    sum_k sum_d (2 delta_k / sigma_k + sigma_k a_k)^2.

    delta (K, B, D) = v_fast - v_base at the rollout states (grad flows into v_fast only);
    adj (K, B, D) the lean adjoint (detached); sigma (K,) the per-step diffusion scale.
    QAM passes sigma = g_k and a = beta * lean adjoint; TRQAM passes sigma = g_k / sqrt(lambda_eff) and
    the lambda-free adjoint. The fixed point is delta_k = -sigma_k^2 a_k / 2. Returns (B,).
    """
    s = sigma.view(-1, 1, 1)  # (K, 1, 1)
    resid = 2.0 * delta / s + s * adj.detach()  # (K, B, D)
    per_sample = resid.square().sum(dim=-1).sum(dim=0)  # (B,)
    return per_sample, {"adj_abs": adj.abs().mean(dim=(0, 2))}


def path_kl(delta: Tensor, g2: Tensor, *, horizon: int) -> Tensor:
    """Discretised Girsanov path KL of the fine-tuned SDE against the base (TRQAM arXiv:2605.27079, App. E).

    KL_hat = (1/H) sum_k (2h / g_k^2) ||v_fast(X_k, t_k) - v_base(X_k, t_k)||^2 on fast-policy rollouts,
    from KL(P^u||P^base) = 1/2 E int ||u||^2 dt with g u = 2 (v_fast - v_base). Normalised by the chunk
    length H so the budget is per executed action. delta (K, B, D), g2 (K,) -> (B,), detached.
    """
    steps = delta.shape[0]
    h = 1.0 / steps
    w = (2.0 * h / g2).view(-1, 1)  # (K, 1)
    return (w * delta.detach().square().sum(dim=-1)).sum(dim=0) / horizon  # (B,)
