"""Closed-form OT-path velocities: formula checks, Monte Carlo oracle, and a trained BC flow against them."""

import torch

from tether.flow.agent import AgentConfig, BCAgent
from tether.flow.data import ChunkBatch
from tether.flow.toy.analytic import (
    GaussianMixtureVelocity,
    gaussian_velocity,
    optimal_lambda,
    tilted_gaussian_kl,
)

OBS0 = torch.zeros(1, 0)


def test_gaussian_velocity_matches_the_closed_form():
    m, s = torch.tensor([0.2, -0.4]), 0.3
    v = gaussian_velocity(m, s)
    x, t = torch.randn(50, 2), torch.rand(50, 1)
    expected = m + (t * s**2 - (1 - t)) * (x - t * m) / (t**2 * s**2 + (1 - t) ** 2)
    assert torch.allclose(v(OBS0, x, t), expected, atol=1e-6)


def test_mixture_velocity_is_the_conditional_expectation():
    """Monte Carlo oracle: E[x1 - x0 | x_t in a small ball] vs the closed form at the ball's centre."""
    g = torch.Generator().manual_seed(0)
    v = GaussianMixtureVelocity(torch.tensor([[0.5, 0.0], [-0.5, 0.2]]), torch.tensor([0.1, 0.2]),
                                torch.tensor([0.3, 0.7]))
    n, t = 400_000, 0.6
    x1, x0 = v.sample(n, g), torch.randn(n, 2, generator=g)
    xt = (1 - t) * x0 + t * x1
    for centre in ([0.3, 0.0], [-0.2, 0.1]):
        c = torch.tensor(centre)
        near = (xt - c).norm(dim=-1) < 0.02
        mc = (x1 - x0)[near].mean(0)
        exact = v(OBS0, c[None], torch.tensor([[t]]))[0]
        se = (x1 - x0)[near].std(0) / near.sum().sqrt()
        assert ((mc - exact).abs() < 4 * se + 0.03).all(), (mc, exact, se)


def test_trained_bc_flow_matches_analytic_base_velocity():
    """Flow-matching BC on N(m, s^2 I) samples recovers the exact velocity on the path's own support."""
    m, s = torch.tensor([0.3, -0.2]), 0.4
    cfg = AgentConfig(horizon=1, hidden=(64, 64, 64), critic_hidden=(8,), num_qs=1, lr=2e-3)
    agent = BCAgent(cfg, 0, 2, seed=0)
    g = torch.Generator().manual_seed(1)
    ones = torch.ones(256)
    for _ in range(1000):
        a = m + s * torch.randn(256, 2, generator=g)
        agent.update(ChunkBatch(torch.zeros(256, 0), a, 0 * ones, ones, ones, torch.zeros(256, 0)))
    exact_v = gaussian_velocity(m, s)
    t = 0.05 + 0.9 * torch.rand(4000, 1, generator=g)  # stay off the t = 1 singularity of tiny variance
    xt = (1 - t) * torch.randn(4000, 2, generator=g) + t * (m + s * torch.randn(4000, 2, generator=g))
    with torch.no_grad():
        err = (agent.slow(torch.zeros(4000, 0), xt, t) - exact_v(OBS0, xt, t)).square().sum(-1).mean()
        scale = exact_v(OBS0, xt, t).square().sum(-1).mean()
    assert err / scale < 0.03, float(err / scale)


def test_closed_forms_are_consistent():
    """KL(lambda*) = eps by construction of lambda*."""
    c = torch.tensor([1.0, -2.0])
    for eps in (0.05, 0.5, 3.0):
        assert abs(tilted_gaussian_kl(0.3, c, optimal_lambda(0.3, c, eps)) - eps) < 1e-6 * eps
