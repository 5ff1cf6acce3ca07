"""Sampling from flow policies: the Euler ODE, the memoryless SDE rollout and the one-step policy.

Owns the integration loops and the memoryless noise schedule. Knows nothing about losses or critics.
The linear (OT) path x_t = (1 - t) x_0 + t x_1 is used throughout; t = 0 is noise, t = 1 the action.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Velocity = Callable[[Tensor, Tensor, Tensor], Tensor]
"""v(obs (..., S), x (..., D), t (..., 1)) -> (..., D)."""


def time_grid(steps: int, *, like: Tensor) -> Tensor:
    """t_k = k / K for k = 0..K-1, shaped (K,) with the dtype/device of `like`."""
    return torch.arange(steps, dtype=like.dtype, device=like.device) / steps


def memoryless_g2(t: Tensor, h: float) -> Tensor:
    """g_k^2 = 2 (1 - t_k + h) / (t_k + h): the memoryless schedule g(t)^2 = 2(1-t)/t of Adjoint Matching
    (arXiv:2409.08861) with the official code's +h shift, which keeps t = 0 finite."""
    return 2.0 * (1.0 - t + h) / (t + h)


@torch.no_grad()
def euler_sample(v: Velocity, obs: Tensor, noise: Tensor, steps: int, *, clip: bool = True) -> Tensor:
    """Deterministic Euler ODE x <- x + v(s, x, k/K) / K for k = 0..K-1, then clip to [-1, 1].

    obs (B, S), noise (B, D) -> actions (B, D). Used for acting, TD targets and evaluation.
    """
    x = noise
    h = 1.0 / steps
    ts = time_grid(steps, like=noise)  # stays on the device: no host sync per step
    for k in range(steps):
        x = x + h * v(obs, x, ts[k].expand(x[..., :1].shape))
    return x.clamp(-1.0, 1.0) if clip else x


@torch.no_grad()
def memoryless_rollout(
    v_fast: Velocity, v_base: Velocity, obs: Tensor, noise: Tensor, steps: int, *,
    generator: torch.Generator | None = None, draw: Callable[[], Tensor] | None = None,
    fast_out: list[Tensor] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Memoryless SDE rollout of the fine-tuned flow (arXiv:2409.08861, as in the QAM/TRQAM code).

    X_{k+1} = X_k + h (2 v_fast(X_k, t_k) - X_k / (t_k + h)) + sqrt(h) g_k eps   for k < K-1,
    X_K     = X_{K-1} + h v_base(X_{K-1}, t_{K-1})                               (noiseless last step).

    obs (B, S), noise = X_0 (B, D). Returns xs = X_0..X_{K-1} (K, B, D), ts (K,), and X_K (B, D) unclipped.
    eps comes from `draw()` (the agent's `noise`, so that every draw of an update has one source) or else from
    `generator`; both give the same stream for the same generator.
    fast_out: a list that receives v_fast(X_k, t_k) for k < K-1 *with* its autograd graph (the states themselves
    stay detached), so an adjoint-matching loss at the same points reuses these passes instead of repeating them.
    """
    h = 1.0 / steps
    ts = time_grid(steps, like=noise)
    g = memoryless_g2(ts, h).sqrt()  # (K,)
    x, xs = noise, []
    for k in range(steps):
        xs.append(x)
        t = ts[k].expand(x[..., :1].shape)
        if k < steps - 1:
            eps = draw() if draw is not None else torch.randn(x.shape, generator=generator, dtype=x.dtype,
                                                                device=x.device)
            if fast_out is None:
                v = v_fast(obs, x, t)
            else:
                with torch.enable_grad():
                    v = v_fast(obs, x, t)
                fast_out.append(v)
                v = v.detach()
            x = x + h * (2.0 * v - x / (t + h)) + h**0.5 * g[k] * eps
        else:
            x = x + h * v_base(obs, x, t)
    return torch.stack(xs), ts, x


def lean_adjoint(v_base: Velocity, obs: Tensor, xs: Tensor, ts: Tensor, terminal: Tensor) -> Tensor:
    """Lean adjoint of Adjoint Matching (arXiv:2409.08861, Eq. "lean adjoint"), through the base drift only.

    a_K = terminal (= -grad r(X_K)); a_k = a_{k+1} + h J_b(X_k, t_k + h)^T a_{k+1}, b(x, t) = 2 v_base(x, t) - x / t.
    The base is evaluated at t_k + h (one step later than the rollout), as in the official code.
    xs (K, B, D) stored states, ts (K,), terminal (B, D) -> adjoints a_0..a_{K-1} (K, B, D), no parameter grads.
    """
    steps = xs.shape[0]
    h = 1.0 / steps
    t_next = (ts.double() + h).to(ts.dtype)  # t_k + h rounded once, as float(ts[k]) + h was; no host sync
    adj, out = terminal.detach(), [None] * steps
    for k in reversed(range(steps)):
        with torch.enable_grad():
            x = xs[k].detach().requires_grad_(True)
            t = t_next[k].expand(x[..., :1].shape)
            drift = 2.0 * v_base(obs, x, t) - x / t  # (B, D)
            (vjp,) = torch.autograd.grad(drift, x, grad_outputs=adj)
        adj = adj + h * vjp
        out[k] = adj
    return torch.stack(out)
