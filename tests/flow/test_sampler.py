"""Sampler tests: Euler ODE, memoryless SDE rollout, lean adjoint (vs finite differences), SDE/ODE marginals."""

import math

import torch

from tether.flow.nets import VelocityField
from tether.flow.sampler import euler_sample, lean_adjoint, memoryless_g2, memoryless_rollout, time_grid
from tether.flow.toy.analytic import GaussianMixtureVelocity, mmd_permutation_test

OBS0 = torch.zeros(1, 0)


def ring_velocity(std: float = 0.1, dtype=torch.float32) -> GaussianMixtureVelocity:
    ang = torch.arange(6, dtype=dtype) * 2 * math.pi / 6
    means = 0.6 * torch.stack([ang.cos(), ang.sin()], 1)
    weights = torch.tensor([1.0, 0.6, 0.3, 1.0, 0.5, 0.8], dtype=dtype)
    return GaussianMixtureVelocity(means, torch.full((6,), std, dtype=dtype), weights)


def test_euler_sample_constant_velocity_and_clip():
    v = lambda obs, x, t: torch.full_like(x, 0.5)
    x0 = torch.tensor([[0.0, 0.9]])
    out = euler_sample(v, OBS0, x0, 10, clip=False)
    assert torch.allclose(out, torch.tensor([[0.5, 1.4]]))
    assert torch.allclose(euler_sample(v, OBS0, x0, 10), torch.tensor([[0.5, 1.0]]))


def test_memoryless_schedule_matches_formula():
    ts = time_grid(10, like=torch.zeros(1))
    g2 = memoryless_g2(ts, 0.1)
    assert torch.allclose(g2, 2 * (1 - ts + 0.1) / (ts + 0.1))
    assert torch.allclose(g2[-1], torch.tensor(0.4))  # 4h at the last step


def test_rollout_last_step_is_noiseless_base_step():
    """X_K = X_{K-1} + h v_base(X_{K-1}, t_{K-1}) exactly, whatever the generator does."""
    torch.manual_seed(0)
    fast = VelocityField(0, 3, (16,))
    base = VelocityField(0, 3, (16,))
    x0 = torch.randn(5, 3)
    xs, ts, xk = memoryless_rollout(fast, base, OBS0, x0, 10, generator=torch.Generator().manual_seed(1))
    assert xs.shape == (10, 5, 3) and ts.shape == (10,)
    assert torch.equal(xs[0], x0)
    with torch.no_grad():
        expected = xs[-1] + 0.1 * base(OBS0, xs[-1], torch.full((5, 1), 0.9))
    assert torch.allclose(xk, expected, atol=1e-6)


def test_lean_adjoint_equals_finite_difference_gradient():
    """With states from the map x -> x + h b_base(x, t_k + h), the lean adjoint a_0 is exactly
    grad_{x0} of -r(X_K) through that map; checked against central differences in float64."""
    torch.manual_seed(0)
    base = VelocityField(2, 3, (32, 32)).double()
    obs = torch.randn(4, 2, dtype=torch.float64)
    K = 6
    h = 1.0 / K
    ts = time_grid(K, like=obs)
    c = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)
    reward = lambda x: (c * x).sum(-1) + 0.3 * x.square().sum(-1)  # (B,)

    def flow(x0):
        xs, x = [], x0
        for k in range(K):
            xs.append(x)
            t = torch.full_like(x[..., :1], float(ts[k]) + h)
            x = x + h * (2 * base(obs, x, t) - x / t)
        return torch.stack(xs), x

    x0 = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        xs, xk = flow(x0)
    terminal = -(c + 0.6 * xk)  # -grad r(X_K)
    adj = lean_adjoint(base, obs, xs, ts, terminal)
    fd = torch.zeros_like(x0)
    for i in range(3):
        e = torch.zeros_like(x0)
        e[:, i] = 1e-6
        with torch.no_grad():
            fd[:, i] = (-reward(flow(x0 + e)[1]) + reward(flow(x0 - e)[1])) / 2e-6
    assert torch.allclose(adj[0], fd, rtol=1e-6, atol=1e-8)


def test_memoryless_sde_and_ode_share_the_terminal_marginal():
    """Statistical test. H0: SDE and ODE terminal laws are equal; permutation MMD test at alpha = 0.01,
    so a correct sampler fails with probability <= 1% (the p-value is super-uniform). The flow is the exact
    velocity of a 6-mode ring mixture. K = 100 puts the Euler gap below the test's resolution at n = 1000
    (measured: 0/20 seeds rejected, p-values roughly uniform); at K = 10 the two samplers ARE
    distinguishable at this n (discretisation bias; see docs/results/trqam.md). A power check follows."""
    v = ring_velocity()
    g = torch.Generator().manual_seed(3)
    n, K = 1000, 100
    ode = euler_sample(v, OBS0, torch.randn(n, 2, generator=g), K, clip=False)
    _, _, sde = memoryless_rollout(v, v, OBS0, torch.randn(n, 2, generator=g), K, generator=g)
    _, p = mmd_permutation_test(sde, ode, bandwidth=0.2, permutations=200, generator=g)
    assert p > 0.01, p
    # Power: the SDE without the score correction (drift v instead of 2v - x/t) has another marginal.
    x, h = torch.randn(n, 2, generator=g), 1.0 / K
    for k in range(K):
        gk = math.sqrt(2 * (1 - k * h + h) / (k * h + h))
        noise = math.sqrt(h) * gk * torch.randn(n, 2, generator=g) if k < K - 1 else 0.0
        x = x + h * v(OBS0, x, torch.full((n, 1), k * h)) + noise
    _, p_wrong = mmd_permutation_test(x, ode, bandwidth=0.2, permutations=200, generator=g)
    assert p_wrong < 0.01, p_wrong


def test_rollout_fast_out_keeps_the_graphs_of_the_same_passes():
    """fast_out changes nothing in the rollout; it returns v_fast(X_k, t_k), k < K-1, with their graphs (QAM's loss
    reuses them instead of a second forward)."""
    torch.manual_seed(0)
    fast, base = VelocityField(2, 3, (16,)), VelocityField(2, 3, (16,))
    obs, x0 = torch.randn(5, 2), torch.randn(5, 3)
    xs, ts, xk = memoryless_rollout(fast, base, obs, x0, 6, generator=torch.Generator().manual_seed(1))
    kept: list = []
    xs2, _, xk2 = memoryless_rollout(fast, base, obs, x0, 6, generator=torch.Generator().manual_seed(1), fast_out=kept)
    assert torch.equal(xs, xs2) and torch.equal(xk, xk2) and len(kept) == 5
    assert not xs2.requires_grad and all(v.requires_grad for v in kept)
    for k, v in enumerate(kept):
        assert torch.allclose(v, fast(obs, xs[k], ts[k].expand(5, 1)), atol=1e-6)
