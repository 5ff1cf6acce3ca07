"""TRQAM theory tests in the Gaussian base / linear critic case (arXiv:2605.27079 Theorem 1, as reconstructed
in docs/results/trqam.md §1).

pi_0 = N(0, s^2 I), Q(a) = c^T a. Then pi*_lambda = N(s^2 c / lambda, s^2 I), KL(lambda) = s^2 ||c||^2 / (2 lambda^2)
and lambda* = s ||c|| / sqrt(2 eps). The base velocity is exact (analytic), so every error below is ours:
either the discretisation (stated) or the trained fine-tuned network.
"""

import math

import pytest
import torch
from torch import nn

from tether.flow.agent import AgentConfig
from tether.flow.data import ChunkBatch
from tether.flow.nets import VelocityField
from tether.flow.sampler import euler_sample
from tether.flow.toy.analytic import (
    gaussian_am_fixed_point,
    gaussian_velocity,
    optimal_lambda,
    tilted_gaussian_kl,
    tilted_gaussian_shift,
)
from tether.flow.trqam import TRQAMAgent, TRQAMConfig

S, C = 0.2, torch.tensor([3.0, 1.5])
OBS0 = torch.zeros(1, 0)


def fixed_point(K: int, lam: float, n: int = 8):
    """(KL estimate, ODE mean shift) of the exact discrete AM fixed point for this file's s and c."""
    return gaussian_am_fixed_point(S, C, K, lam, n)


def test_fixed_point_kl_and_shift_match_theorem_1_in_the_fine_limit():
    """K = 1000: the discretised estimator is within 3% of s^2||c||^2/(2 lam^2), the shift within 1% of s^2 c/lam."""
    lam = 1.5
    kl, shift = fixed_point(1000, lam, n=8)  # delta is x-independent here, so n = 8 is exact
    assert abs(kl / tilted_gaussian_kl(S, C, lam) - 1) < 0.03, kl
    assert torch.allclose(shift.float(), tilted_gaussian_shift(S, C, lam), rtol=0.01)


def test_estimator_bias_at_k10_is_positive_and_vanishes_like_one_over_k():
    """A finding, pinned: with the official +h time shift the estimator over-states the KL at K = 10
    (measured +108% for s = 0.2, +46% for s = 0.5, +24% for s = 1; see docs/results/trqam.md); the excess halves
    when K doubles (O(1/K))."""
    exact = tilted_gaussian_kl(S, C, 1.0)
    err = {K: fixed_point(K, 1.0, n=8)[0] / exact - 1 for K in (10, 20, 40)}
    assert 0.5 < err[10] < 1.5, err
    assert 0.4 < err[20] / err[10] < 0.6 and 0.4 < err[40] / err[20] < 0.6, err


def gaussian_trqam(K: int, lam_eff: float, eta: float = 0.0, kl_budget: float = 1.0) -> TRQAMAgent:
    """TRQAM with the exact Gaussian base as frozen reference, a linear fixed critic, and a fast net
    = base + zero-initialised residual MLP (so it starts exactly at the base)."""
    net = AgentConfig(horizon=1, hidden=(64, 64), critic_hidden=(8,), num_qs=1, lr=1e-3, flow_steps=K, grad_clip=0.0)
    cfg = TRQAMConfig(lam_scale=1.0, lam_init=lam_eff, eta=eta, kl_budget=kl_budget, reference="frozen")
    agent = TRQAMAgent(cfg, 0, 2, agent=net, seed=0, fixed_critic=lambda obs, a: a @ C)
    base = gaussian_velocity(torch.zeros(2), S)
    residual = VelocityField(0, 2, (64, 64))
    nn.init.zeros_(residual.net[-1].weight)
    agent.slow_target = base
    agent.fast = Residual(base, residual)
    agent.set_trainable(list(residual.parameters()))
    return agent


class Residual(nn.Module):
    def __init__(self, base, residual):
        super().__init__()
        self.base, self.residual = base, residual

    def forward(self, obs, x, t):
        return self.base(obs, x, t) + self.residual(obs, x, t)


def empty_batch(n: int) -> ChunkBatch:
    ones = torch.ones(n)
    return ChunkBatch(torch.zeros(n, 0), torch.zeros(n, 2), 0 * ones, ones, ones, torch.zeros(n, 0))


def test_kl_estimator_is_exactly_zero_when_fast_equals_base():
    agent = gaussian_trqam(10, 1.0)
    _, metrics = agent.actor_loss(empty_batch(64))
    assert metrics["kl/path"].item() == 0.0


def test_kl_estimator_is_exactly_zero_for_copied_networks():
    agent = TRQAMAgent(TRQAMConfig(), 3, 2, agent=AgentConfig(horizon=2, hidden=(32,), critic_hidden=(16,), num_qs=2),
                       seed=1)
    agent.load_pretrained(agent.slow.state_dict())
    ones = torch.ones(8)
    batch = ChunkBatch(torch.randn(8, 3), torch.rand(8, 4), ones, ones, ones, torch.randn(8, 3))
    _, metrics = agent.actor_loss(batch)
    assert metrics["kl/path"].item() == 0.0


def test_trained_trqam_reaches_theorem_1_at_fixed_lambda():
    """Adjoint matching at fixed lambda_eff = 1 (K = 20) trains the fast flow to the discretised fixed point:
    its KL estimate within 10% and its ODE mean shift within 5% of the fixed point's. (At K = 20 that fixed
    point is itself +49% / +16% above the continuous KL / shift for s = 0.2; the fine-limit test above
    shows it converges to Theorem 1.) The untrained start has KL 0 and shift 0, so this can fail."""
    K, lam = 20, 1.0
    agent = gaussian_trqam(K, lam)
    for _ in range(250):
        agent.update(empty_batch(256))
    kls = [agent.actor_loss(empty_batch(2000))[1]["kl/path"].item() for _ in range(3)]
    kl_fixed, shift_fixed = fixed_point(K, lam, n=8)
    assert abs(sum(kls) / 3 / kl_fixed - 1) < 0.10, (kls, kl_fixed)
    z = torch.randn(20000, 2, generator=torch.Generator().manual_seed(5))
    shift = (euler_sample(agent.fast, OBS0, z, K, clip=False)
             - euler_sample(agent.base, OBS0, z, K, clip=False)).mean(0)
    assert torch.allclose(shift, shift_fixed.float(), rtol=0.05), (shift, shift_fixed)


@pytest.mark.parametrize("eps", [0.05, 0.5])
def test_dual_converges_to_lambda_star(eps):
    """The TRQAM dual (core Dual: eta 0.01, EMA 0.1, clip 2 eps, bounds [0.01, 100], lam_scale 3) fed the
    fixed-point KL kappa / lambda_eff^2 (kappa from the K = 1000 estimator) converges to s||c||/sqrt(2 eps)."""
    kappa, _ = fixed_point(1000, 1.0, n=8)
    cfg = TRQAMConfig(kl_budget=eps)
    dual, state = cfg.dual(), cfg.dual().init_state()
    for _ in range(20000):
        lam_eff = cfg.lam_scale * float(state.value)
        state = dual.update(state, kappa / lam_eff**2)
    lam_eff = cfg.lam_scale * float(state.value)
    assert abs(lam_eff / optimal_lambda(S, C, eps) - 1) < 0.03, (lam_eff, optimal_lambda(S, C, eps))
    assert math.isclose(float(state.smoothed), eps, rel_tol=0.01)


def test_dual_is_the_papers_projected_step_unless_log_ablation():
    dual = TRQAMConfig(kl_budget=0.5).dual()
    assert (dual.target, dual.lr, dual.init, dual.low, dual.high, dual.ema, dual.clip_factor, dual.log_space) == (
        0.5, 0.01, 1.0, 0.01, 100.0, 0.1, 2.0, False)
    assert TRQAMConfig(log_dual=True).dual().log_space


def test_trqam_checkpoint_round_trips_dual_state():
    cfg, net = TRQAMConfig(kl_budget=0.1), AgentConfig(horizon=1, hidden=(16,), critic_hidden=(16,), num_qs=2)
    agent = TRQAMAgent(cfg, 2, 2, agent=net, seed=0)
    ones = torch.ones(8)
    batch = ChunkBatch(torch.randn(8, 2), torch.rand(8, 2), ones, ones, ones, torch.randn(8, 2))
    m = agent.update(batch)
    assert {"dual/trqam/lambda", "kl/path", "kl/path_ema"} <= m.keys()
    state = agent.training_state()
    other = TRQAMAgent(cfg, 2, 2, agent=net, seed=1)
    other.load_training_state(state)
    assert torch.equal(other.dual_state.value, agent.dual_state.value)
    assert torch.equal(other.dual_state.smoothed, agent.dual_state.smoothed)
    assert torch.equal(other.fast.net[0].weight, agent.fast.net[0].weight)
