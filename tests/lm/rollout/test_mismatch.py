import math

import pytest
import torch

from tether.lm.rollout.mismatch import mismatch_metrics, token_delta


def test_zero_mismatch_when_equal():
    logp = torch.log(torch.rand(4, 5) * 0.9 + 0.05)
    mask = torch.ones(4, 5, dtype=torch.bool)
    m = mismatch_metrics(logp, logp.clone(), mask, c=0.0037)
    for k in ("delta_mean", "delta_max", "delta_frac_above_c", "abs_log_ratio_mean", "kl_k1", "kl_k3",
              "chi2_token", "chi2_seq", "ppl_gap", "ratio_out_frac"):
        assert m[k].item() == 0.0, k
    assert m["ess"].item() == pytest.approx(1.0)


def test_hand_built_values():
    # two tokens in one sequence: p_train = (0.5, 0.2), p_inf = (0.25, 0.2); a padded third token is ignored
    train = torch.tensor([[math.log(0.5), math.log(0.2), 0.0]])
    roll = torch.tensor([[math.log(0.25), math.log(0.2), -50.0]])
    mask = torch.tensor([[True, True, False]])
    m = mismatch_metrics(train, roll, mask, c=0.1)
    assert m["delta_mean"].item() == pytest.approx(0.125)
    assert m["delta_max"].item() == pytest.approx(0.25)
    assert m["delta_frac_above_c"].item() == pytest.approx(0.5)
    assert m["abs_log_ratio_max"].item() == pytest.approx(math.log(2))
    assert m["kl_k1"].item() == pytest.approx(-math.log(2) / 2)  # k1 = l_inf - l_tr
    assert m["kl_k3"].item() == pytest.approx((2 - 1 - math.log(2)) / 2)
    assert m["chi2_token"].item() == pytest.approx((4 + 1) / 2 - 1)
    assert m["chi2_seq"].item() == pytest.approx(4 - 1)
    ppl_train = math.exp(-(math.log(0.5) + math.log(0.2)) / 2)
    ppl_roll = math.exp(-(math.log(0.25) + math.log(0.2)) / 2)
    assert m["ppl_gap"].item() == pytest.approx(ppl_roll - ppl_train)
    assert m["ess"].item() == pytest.approx(1 / ((4 / 9 * 4 + 4 / 9) / 2))  # weights (2,1)/1.5
    assert m["ratio_out_frac"].item() == pytest.approx(0.0)  # r = 2 is on the band edge, inside


def test_delta_bounded_and_masked():
    train, roll = torch.randn(3, 4) - 1, torch.randn(3, 4) - 1
    mask = torch.rand(3, 4) > 0.3
    d = token_delta(train.clamp(max=0), roll.clamp(max=0), mask)
    assert (d >= 0).all() and (d <= 1).all() and (d[~mask] == 0).all()


def test_chi2_seq_stays_finite_on_extreme_ratios():
    # 40 tokens each at the per-token bound: (prod r)^2 unclamped would be exp(1600)
    train, roll = torch.zeros(2, 40), torch.full((2, 40), -60.0)
    m = mismatch_metrics(train, roll, torch.ones(2, 40, dtype=torch.bool), c=0.0037)
    assert all(math.isfinite(v.item()) for v in m.values())
    assert m["chi2_seq"].item() == pytest.approx(math.exp(40.0) - 1, rel=1e-5)
