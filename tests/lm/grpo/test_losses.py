import math

import pytest
import torch

from tether.lm.grpo.losses import LOSSES, ppo_clip, vanilla_pg


def test_ppo_clip_formula_on_both_sides():
    ratios = torch.tensor([[0.5, 0.9, 1.0, 1.1, 1.5]])
    logp, old = ratios.log(), torch.zeros(1, 5)
    pos, neg = torch.ones(1, 5), -torch.ones(1, 5)
    loss, d = ppo_clip(logp, old, pos, clip_low=0.2, clip_high=0.28)
    # A > 0: min(r, clip(r)) -> r below 1 + eps_high, capped at 1.28 above
    torch.testing.assert_close(loss, -torch.tensor([[0.5, 0.9, 1.0, 1.1, 1.28]]))
    assert d["clipped_high"].tolist() == [[False, False, False, False, True]]
    loss, d = ppo_clip(logp, old, neg, clip_low=0.2, clip_high=0.28)
    # A < 0: -min(-r, -clip(r)) = max(r, clip(r)) -> floored at 0.8 below 1 - eps_low
    torch.testing.assert_close(loss, torch.tensor([[0.8, 0.9, 1.0, 1.1, 1.5]]))
    assert d["clipped_low"].tolist() == [[True, False, False, False, False]]


def test_gradient_is_zero_exactly_where_clipped():
    logp = torch.tensor([[math.log(1.5), math.log(1.1)]], requires_grad=True)
    loss, _ = ppo_clip(logp, torch.zeros(1, 2), torch.ones(1, 2), clip_low=0.2, clip_high=0.2)
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -1.1]]))


def test_on_policy_gradient_equals_reinforce():
    logp = torch.randn(3, 4, requires_grad=True)
    adv = torch.randn(3, 4)
    for name in LOSSES.names():
        loss, _ = LOSSES.get(name)(logp, logp.detach(), adv, clip_low=0.2, clip_high=0.2)
        (g,) = torch.autograd.grad(loss.sum(), logp)
        torch.testing.assert_close(g, -adv)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same"):
        vanilla_pg(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), clip_low=0.2, clip_high=0.2)


def test_dual_clip_bounds_negative_advantage_loss():
    ratios = torch.tensor([[0.5, 1.0, 2.0, 5.0]])
    logp = ratios.log().requires_grad_(True)
    neg = -torch.ones(1, 4)
    loss, d = ppo_clip(logp, torch.zeros(1, 4), neg, clip_low=0.2, clip_high=0.2, dual_clip=3.0)
    # A < 0: max(r, clip(r)) as before, then at most c = 3
    torch.testing.assert_close(loss.detach(), torch.tensor([[0.8, 1.0, 2.0, 3.0]]))
    assert d["clipped_dual"].tolist() == [[False, False, False, True]]
    loss.sum().backward()
    assert logp.grad[0, 3] == 0  # no gradient through the dual-clipped token
    pos, _ = ppo_clip(ratios.log(), torch.zeros(1, 4), torch.ones(1, 4), clip_low=0.2, clip_high=0.2, dual_clip=3.0)
    plain, _ = ppo_clip(ratios.log(), torch.zeros(1, 4), torch.ones(1, 4), clip_low=0.2, clip_high=0.2)
    torch.testing.assert_close(pos, plain)  # A > 0 is untouched
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_clip(ratios.log(), torch.zeros(1, 4), neg, clip_low=0.2, clip_high=0.2, dual_clip=0.5)
