"""Formula tests for the pure flow losses (hand-computed values and fixed points)."""

import torch

from tether.flow.losses import (
    adjoint_matching,
    critic_td,
    flow_matching_bc,
    fql_actor,
    ot_path,
    path_kl,
    td_target,
)


def test_ot_path_and_bc_formula():
    x0, x1, t = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.25]])
    xt, target = ot_path(x0, x1, t)
    assert torch.allclose(xt, torch.tensor([[0.25, 1.5]])) and torch.allclose(target, torch.tensor([[1.0, -2.0]]))
    loss, _ = flow_matching_bc(torch.tensor([[0.0, 0.0]]), target)
    assert torch.allclose(loss, torch.tensor([2.5]))  # mean of 1 and 4


def test_td_target_with_pessimism_and_terminal_mask():
    next_q = torch.tensor([[1.0, 1.0], [3.0, 3.0]])  # (N=2, B=2): mean 2, population std 1
    y = td_target(next_q, torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), discount=0.9, rho=0.5)
    assert torch.allclose(y, torch.tensor([0.5 + 0.9 * (2 - 0.5 * 1.0), 0.5]))
    assert torch.allclose(td_target(next_q[:1], torch.zeros(2), torch.ones(2), discount=1.0, rho=9.0), torch.ones(2))
    per, diag = critic_td(torch.tensor([[1.0, 2.0]]), torch.tensor([0.0, 0.0]))
    assert (torch.allclose(per, torch.tensor([[1.0, 4.0]]))
            and torch.allclose(diag["td_error"], torch.tensor([[1.0, 2.0]])))


def test_fql_actor_terms_and_q_normalisation():
    mu, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    q = torch.tensor([[2.0], [4.0]])  # (N, B)
    loss, diag = fql_actor(mu, teacher, q, alpha=3.0, normalize_q=False)
    assert torch.allclose(loss, torch.tensor([3.0 * 0.5 - 3.0]))
    loss_n, _ = fql_actor(mu, teacher, 10 * q, alpha=3.0, normalize_q=True)
    assert torch.allclose(loss_n, torch.tensor([1.5 - 1.0]))  # Q / mean|Q| = 1 at any scale


def test_adjoint_matching_fixed_point_and_gradient():
    K, B, D = 4, 3, 2
    adj, sigma = torch.randn(K, B, D), torch.rand(K) + 0.5
    delta_star = -sigma.view(-1, 1, 1) ** 2 * adj / 2
    loss, _ = adjoint_matching(delta_star, adj, sigma)
    assert torch.allclose(loss, torch.zeros(B), atol=1e-10)
    delta = (delta_star + 0.1).requires_grad_(True)
    adjoint_matching(delta, adj, sigma)[0].sum().backward()
    assert torch.allclose(delta.grad, 8 * 0.1 / sigma.view(-1, 1, 1) ** 2 * torch.ones(K, B, D))


def test_trqam_loss_is_lambda_times_qam_loss_at_beta_one_over_lambda():
    """sigma = g/sqrt(lam) with the lambda-free adjoint == lam * (QAM loss with beta = 1/lam): same minimiser."""
    K, B, D, lam = 5, 4, 3, 2.5
    delta, adj, g = torch.randn(K, B, D), torch.randn(K, B, D), torch.rand(K) + 0.3
    trqam, _ = adjoint_matching(delta, adj, g / lam**0.5)
    qam, _ = adjoint_matching(delta, adj / lam, g)
    assert torch.allclose(trqam, lam * qam, rtol=1e-5)


def test_path_kl_formula_and_horizon_normalisation():
    K = 2
    delta = torch.zeros(K, 1, 3)
    delta[0, 0] = torch.tensor([1.0, 2.0, 0.0])  # ||.||^2 = 5 at step 0
    delta[1, 0] = torch.tensor([0.0, 0.0, 1.0])  # 1 at step 1
    g2 = torch.tensor([4.0, 1.0])
    h = 0.5
    expected = (2 * h / 4.0) * 5 + (2 * h / 1.0) * 1
    assert torch.allclose(path_kl(delta, g2, horizon=1), torch.tensor([expected]))
    assert torch.allclose(path_kl(delta, g2, horizon=5), torch.tensor([expected / 5]))
    assert path_kl(torch.zeros(3, 7, 2), torch.ones(3), horizon=1).eq(0).all()
