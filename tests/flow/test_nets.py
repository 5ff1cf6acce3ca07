"""Networks: the stacked critic ensemble equals N separate MLPs; EMA; broadcasting of obs and t."""

import torch
import torch.nn.functional as F

from tether.flow.nets import CriticEnsemble, OneStepPolicy, VelocityField, ema_update, frozen_copy


def test_stacked_ensemble_equals_a_loop_over_members():
    torch.manual_seed(0)
    critic = CriticEnsemble(3, 4, (16, 8), n=5)
    obs, act = torch.randn(7, 3), torch.randn(7, 4)
    q = critic(obs, act)
    assert q.shape == (5, 7)
    for j in range(5):
        h = torch.cat([obs, act], -1)
        for lin, w, b in zip(critic.linears, critic.ln_w, critic.ln_b, strict=True):
            h = F.gelu(F.layer_norm(h @ lin.weight[j] + lin.bias[j], (lin.weight.shape[-1],)) * w[j] + b[j])
        ref = (h @ critic.head.weight[j] + critic.head.bias[j]).squeeze(-1)
        assert torch.allclose(q[j], ref, atol=1e-5)


def test_velocity_field_broadcasts_obs_over_flow_steps():
    torch.manual_seed(0)
    v = VelocityField(3, 2, (16,))
    obs, x, t = torch.randn(4, 3), torch.randn(6, 4, 2), torch.rand(6, 4, 1)
    out = v(obs.expand(6, 4, 3), x, t)
    assert out.shape == (6, 4, 2)
    assert torch.allclose(out[2], v(obs, x[2], t[2]), atol=1e-6)
    assert torch.allclose(v(obs, x[0], 0.5), v(obs, x[0], torch.full((4, 1), 0.5)))
    assert OneStepPolicy(3, 2, (8,))(obs, x[0]).shape == (4, 2)


def test_ema_update_and_frozen_copy():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    t = frozen_copy(a)
    assert not any(p.requires_grad for p in t.parameters())
    expected = 0.9 * t.weight + 0.1 * b.weight
    ema_update(t, b, 0.1)
    assert torch.allclose(t.weight, expected)


def test_ema_update_with_a_tensor_weight_equals_the_float_weight():
    """The device path (0-d tensor tau, no host sync) gives the float path's result; tau 0 leaves the target."""
    torch.manual_seed(0)
    online, a, b = (torch.nn.Linear(3, 4) for _ in range(3))
    b.load_state_dict(a.state_dict())
    ema_update(a, online, 0.25)
    ema_update(b, online, torch.tensor(0.25))
    assert all(torch.allclose(x, y, atol=1e-7) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    before = [p.clone() for p in b.parameters()]
    ema_update(b, online, torch.tensor(0.0))
    assert all(torch.equal(x, y) for x, y in zip(before, b.parameters(), strict=True))


def test_the_critic_stays_fp32_under_bf16_autocast():
    """A sparse-reward Q near -100 has bf16 spacing 0.5: under autocast the critic must still resolve a 0.01
    difference between two actions, exactly as without autocast."""
    torch.manual_seed(0)
    critic = CriticEnsemble(3, 4, (16, 16), n=2)
    with torch.no_grad():
        critic.head.bias.fill_(-100.0)
    obs, act = torch.randn(6, 3), torch.randn(6, 4)
    act2 = act + 1e-3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, q2 = critic(obs, act), critic(obs, act2)
    assert q.dtype == torch.float32
    assert torch.equal(q, critic(obs, act)) and torch.equal(q2, critic(obs, act2))
    assert (q2 - q).abs().min() > 0  # bf16 would round both to the same value near -100
