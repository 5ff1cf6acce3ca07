"""Exact OT-path velocity fields and tilted targets for Gaussian (mixture) action distributions.

Owns closed forms used as oracles by the theory tests and the docs: the marginal velocity of the
linear path x_t = (1 - t) x0 + t x1 when x1 is a Gaussian or an isotropic Gaussian mixture, and the
Gaussian / linear-critic case of TRQAM (arXiv:2605.27079, its Theorem 1 as we reconstructed it, see
docs/results/trqam.md section 1): the tilted policy
pi*_lambda = N(m + s^2 c / lambda, s^2 I), KL(lambda) = s^2 ||c||^2 / (2 lambda^2), lambda* = s ||c|| / sqrt(2 eps).
Nothing here is trained; the modules take (obs, x, t) like `nets.VelocityField` and ignore obs. Also holds the
MMD permutation test used to compare sampler marginals.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tether.flow.losses import path_kl
from tether.flow.sampler import euler_sample, lean_adjoint, memoryless_g2, memoryless_rollout


class GaussianMixtureVelocity(nn.Module):
    """Exact E[x1 - x0 | x_t = x] for x1 ~ sum_i w_i N(mu_i, s_i^2 I), x0 ~ N(0, I), x_t = (1-t) x0 + t x1.

    Given component i, x_t ~ N(t mu_i, (t^2 s_i^2 + (1-t)^2) I) and the conditional velocity is
    v_i = mu_i + (t s_i^2 - (1 - t)) (x - t mu_i) / (t^2 s_i^2 + (1 - t)^2); v mixes them by the posterior.
    """

    def __init__(self, means: Tensor, stds: Tensor, weights: Tensor):
        super().__init__()
        self.register_buffer("means", means)  # (M, D)
        self.register_buffer("stds", stds)  # (M,)
        self.register_buffer("log_w", weights.log() - weights.sum().log())  # (M,)

    def forward(self, obs: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        if not torch.is_tensor(t):
            t = torch.full_like(x[..., :1], float(t))
        t = t.unsqueeze(-1)  # (..., 1, 1)
        s2 = self.stds.square().unsqueeze(-1)  # (M, 1)
        var = t.square() * s2 + (1 - t).square()  # (..., M, 1)
        diff = x.unsqueeze(-2) - t * self.means  # (..., M, D)
        d = x.shape[-1]
        logp = -0.5 * diff.square().sum(-1, keepdim=True) / var - 0.5 * d * var.log()  # (..., M, 1)
        post = torch.softmax(logp + self.log_w.unsqueeze(-1), dim=-2)  # (..., M, 1)
        v_i = self.means + (t * s2 - (1 - t)) * diff / var  # (..., M, D)
        return (post * v_i).sum(dim=-2)  # (..., D)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        comp = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=self.means.dtype)
        return self.means[comp] + self.stds[comp, None] * eps


def gaussian_velocity(mean: Tensor, std: float) -> GaussianMixtureVelocity:
    """Exact OT-path velocity for x1 ~ N(mean, std^2 I): v = m + (t s^2 - (1-t)) (x - t m) / (t^2 s^2 + (1-t)^2)."""
    return GaussianMixtureVelocity(mean[None], torch.tensor([std], dtype=mean.dtype), torch.ones(1, dtype=mean.dtype))


def tilted_gaussian_kl(std: float, c: Tensor, lam: float) -> float:
    """KL(pi*_lambda || pi_0) = s^2 ||c||^2 / (2 lambda^2) for pi_0 = N(m, s^2 I) and Q(a) = c^T a."""
    return std**2 * float(c.square().sum()) / (2 * lam**2)


def tilted_gaussian_shift(std: float, c: Tensor, lam: float) -> Tensor:
    """Mean shift of pi*_lambda ∝ pi_0 exp(Q / lambda): s^2 c / lambda."""
    return std**2 * c / lam


def optimal_lambda(std: float, c: Tensor, eps: float) -> float:
    """The budget solution KL(lambda*) = eps: lambda* = s ||c|| / sqrt(2 eps)."""
    return std * float(c.norm()) / math.sqrt(2 * eps)


def gaussian_am_fixed_point(std: float, c: Tensor, steps: int, lam: float = 1.0, n: int = 8) -> tuple[float, Tensor]:
    """Exact discrete adjoint-matching fixed point for pi_0 = N(0, s^2 I), Q = c^T a, at K = `steps`.

    The base drift is linear, so the lean adjoint a_k and delta_k = -g_k^2 a_k / (2 lam) do not depend on x:
    the fine-tuned velocity is v_base + delta_k on the grid, and n = 8 samples give the exact values.
    Returns (path-KL estimator, ODE mean shift of the fine-tuned flow over the base), both in float64.
    """
    g = torch.Generator().manual_seed(0)
    c = c.to(torch.float64)
    base = gaussian_velocity(torch.zeros(c.shape[0], dtype=torch.float64), std)
    obs = torch.zeros(1, 0, dtype=torch.float64)
    x0 = torch.randn(n, c.shape[0], generator=g, dtype=torch.float64)
    xs, ts, _ = memoryless_rollout(base, base, obs, x0, steps, generator=g)
    adj = lean_adjoint(base, obs, xs, ts, -c.expand(n, -1))
    g2 = memoryless_g2(ts, 1.0 / steps)
    delta_k = (-g2.view(-1, 1, 1) * adj / (2 * lam))[:, 0]  # (K, D)

    def fast(o: Tensor, x: Tensor, t: Tensor) -> Tensor:
        k = torch.round(t[..., 0] * steps).long().clamp(0, steps - 1)
        return base(o, x, t) + delta_k[k]

    xs, ts, _ = memoryless_rollout(fast, base, obs, x0, steps, generator=g)
    tk = ts.view(-1, 1, 1).expand(steps, n, 1)
    kl = path_kl(fast(obs, xs, tk) - base(obs, xs, tk), g2, horizon=1).mean()
    shift = (euler_sample(fast, obs, x0, steps, clip=False) - euler_sample(base, obs, x0, steps, clip=False)).mean(0)
    return float(kl), shift


def mmd_permutation_test(x: Tensor, y: Tensor, *, bandwidth: float, permutations: int,
                         generator: torch.Generator) -> tuple[float, float]:
    """Biased RBF-kernel MMD^2 between samples x, y (n, D) and its permutation p-value.

    The p-value (1 + #{perm stat >= stat}) / (1 + P) is super-uniform under H0 (same law) for any n,
    so rejecting at p <= alpha fails a correct sampler with probability <= alpha.
    """
    z = torch.cat([x, y]).double()
    n = x.shape[0]
    k = torch.exp(-torch.cdist(z, z).square() / (2 * bandwidth**2))  # (2n, 2n)
    s = torch.cat([torch.full((n,), 1.0 / n), torch.full((n,), -1.0 / n)]).double()
    perms = [s[torch.randperm(2 * n, generator=generator)] for _ in range(permutations)]
    signs = torch.stack([s, *perms], dim=1)  # (2n, P+1)
    stats = ((k @ signs) * signs).sum(0)  # (P+1,)
    return float(stats[0]), float((stats[1:] >= stats[0]).sum() + 1) / (permutations + 1)
