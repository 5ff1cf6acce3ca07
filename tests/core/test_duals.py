import pytest
import torch

from tether.core.duals import Dual, DualState


def _run(dual, measurements):
    s = dual.init_state()
    out = []
    for m in measurements:
        s = dual.update(s, m)
        out.append(float(s.value))
    return s, out


def test_moves_up_when_violated_down_otherwise():
    d = Dual(target=0.5, lr=0.1, init=1.0, low=0.0, high=2.0)
    s = d.update(d.init_state(), 0.8)
    assert float(s.value) == pytest.approx(1.0 + 0.1 * 0.3)
    assert float(s.violation) == pytest.approx(0.3)
    s = d.update(d.init_state(), 0.2)
    assert float(s.value) == pytest.approx(1.0 - 0.1 * 0.3)


def test_stays_in_bounds():
    d = Dual(target=0.0, lr=10.0, init=0.5, low=0.1, high=1.0)
    _, up = _run(d, [5.0] * 10)
    _, down = _run(d, [-5.0] * 10)
    assert max(up) == 1.0 and min(down) == 0.1
    assert all(0.1 <= v <= 1.0 for v in up + down)


def test_dcmdp_form_decays_to_lambda_min():
    d = Dual(target=0.0037, lr=1.0, init=0.1, low=0.0, high=1.0)  # arXiv:2606.08779 defaults
    s, vals = _run(d, [0.001] * 30)
    assert vals == sorted(vals, reverse=True) and vals[-1] == pytest.approx(0.1 - 30 * 0.0027)
    s, _ = _run(d, [0.0] * 1000)
    assert float(s.value) == 0.0


def test_ema_and_measurement_clip():
    """TRQAM form (arXiv:2605.27079): s <- 0.9 s + 0.1 min(m, 2 eps), s_0 = 0."""
    d = Dual(target=0.5, lr=0.01, init=1.0, low=0.01, high=100.0, ema=0.1, clip_factor=2.0)
    s = d.update(d.init_state(), 100.0)  # clipped to 1.0
    assert float(s.smoothed) == pytest.approx(0.1)
    assert float(s.value) == pytest.approx(1.0 + 0.01 * (0.1 - 0.5))  # lam first drops: EMA starts at 0
    s = d.update(s, 100.0)
    assert float(s.smoothed) == pytest.approx(0.9 * 0.1 + 0.1 * 1.0)


def test_log_space_and_normalized():
    d = Dual(target=1.0, lr=0.5, init=2.0, low=1e-3, high=1e3, log_space=True)
    s = d.update(d.init_state(), 3.0)
    assert float(s.value) == pytest.approx(2.0 * torch.exp(torch.tensor(1.0)).item())
    n = Dual(target=0.01, lr=1.0, init=0.1, low=0.0, high=1.0, normalized=True)
    s = n.update(n.init_state(), 0.02)
    assert float(s.value) == 1.0  # 0.1 + (0.02 - 0.01) / 0.01 = 1.1, projected to high = 1
    s = n.update(n.init_state(), 0.0105)
    assert float(s.value) == pytest.approx(0.1 + 0.05)


def test_converges_to_constraint_on_a_smooth_problem():
    """measured(lam) = 1/lam^2 (TRQAM's KL scaling); the dual must find lam* = 1/sqrt(eps)."""
    d = Dual(target=0.25, lr=0.5, init=1.0, low=0.01, high=100.0)
    s = d.init_state()
    for _ in range(2000):
        s = d.update(s, 1.0 / float(s.value) ** 2)
    assert float(s.value) == pytest.approx(2.0, rel=1e-3)


def test_state_round_trip_and_validation():
    d = Dual(target=1.0, lr=0.1)
    s = d.update(d.init_state(), 2.0)
    s2 = DualState.from_state_dict(s.state_dict())
    assert all(torch.equal(getattr(s, k), getattr(s2, k)) for k in ("value", "smoothed", "violation", "steps"))
    with pytest.raises(ValueError, match="init"):
        Dual(target=1.0, lr=0.1, init=5.0, low=0.0, high=1.0)
    with pytest.raises(ValueError, match="ema"):
        Dual(target=1.0, lr=0.1, ema=1.5)
