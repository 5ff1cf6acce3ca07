"""Shared agent pieces: the clipped critic gradient, BC-only training, the frozen reference."""

import pytest
import torch

from tether.flow.agent import AgentConfig, BCAgent
from tether.flow.data import ChunkBatch
from tether.flow.qam import QAMAgent, QAMConfig

TINY = AgentConfig(horizon=1, hidden=(16,), critic_hidden=(16,), num_qs=2, flow_steps=4)


def test_q_grad_is_zero_in_clipped_dimensions():
    agent = QAMAgent(QAMConfig(), 0, 2, agent=TINY, seed=0, fixed_critic=lambda o, a: a.sum(-1))
    g = agent.q_grad(torch.zeros(3, 0), torch.tensor([[0.5, 1.5], [-2.0, 0.0], [0.1, 0.2]]))
    assert torch.equal(g, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))


def test_frozen_reference_never_moves_and_ema_reference_does():
    ones = torch.ones(16)
    batch = ChunkBatch(torch.zeros(16, 0), torch.rand(16, 2), ones, 0 * ones, ones, torch.zeros(16, 0))
    for reference, moves in (("frozen", False), ("ema", True)):
        agent = QAMAgent(QAMConfig(reference=reference), 0, 2, agent=TINY, seed=0, fixed_critic=lambda o, a: a.sum(-1))
        before = [p.clone() for p in agent.base.parameters()]
        m = agent.update(batch)
        changed = any(not torch.equal(a, b) for a, b in zip(before, agent.base.parameters(), strict=True))
        assert changed == moves and ("loss/bc" in m) == moves


def test_bc_agent_trains_only_the_flow():
    agent = BCAgent(TINY, 0, 2, seed=0)
    critic_before = [p.clone() for p in agent.critic.parameters()]
    ones = torch.ones(8)
    m = agent.update(ChunkBatch(torch.zeros(8, 0), torch.rand(8, 2), ones, ones, ones, torch.zeros(8, 0)))
    assert set(m) == {"loss/bc", "loss/total", "grad/norm", "grad/skipped_steps"}
    assert all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters(), strict=True))


def test_non_finite_step_is_skipped_whole_and_counted():
    from tether.flow.trqam import TRQAMAgent, TRQAMConfig

    agent = TRQAMAgent(TRQAMConfig(kl_budget=0.1), 1, 2, agent=TINY, seed=0)
    ones = torch.ones(16)
    bad = ChunkBatch(torch.zeros(16, 1), torch.rand(16, 2), ones * float("nan"), ones, ones, torch.zeros(16, 1))
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    lam = agent.dual_state.value.clone()
    m = agent.update(bad)  # NaN rewards -> NaN TD target -> NaN critic loss
    assert float(m["grad/skipped_steps"]) == 1.0 and not torch.isfinite(m["loss/total"])
    assert all(torch.equal(before[k], v) for k, v in agent.state_dict().items())  # no optimiser / EMA step
    assert torch.equal(agent.dual_state.value, lam)  # and no dual step
    good = ChunkBatch(torch.zeros(16, 1), torch.rand(16, 2), ones, ones, ones, torch.zeros(16, 1))
    assert float(agent.update(good)["grad/skipped_steps"]) == 1.0 and float(agent.consecutive) == 0
    assert not torch.equal(agent.dual_state.value, lam)  # a good step moves the dual again


def test_consecutive_skips_stop_at_the_health_check():
    """The skip decision stays on the device; the periodic health check raises after max_consecutive in a row."""
    from tether.core.config import NonFiniteError

    agent = QAMAgent(QAMConfig(), 1, 2, agent=TINY, seed=0)
    ones = torch.ones(16)
    bad = ChunkBatch(torch.zeros(16, 1), torch.rand(16, 2), ones * float("nan"), ones, ones, torch.zeros(16, 1))
    for _ in range(agent.guard.max_consecutive):
        agent.update(bad)  # the first update runs the check before the run is long enough: passes
    with pytest.raises(NonFiniteError, match="5 consecutive non-finite steps"):
        agent.check_health()


def test_update_on_device_keeps_every_tensor_there(device):
    """Agent, batch and metrics on `device`; a CPU batch is moved; act takes CPU observations."""
    from tether.flow.trqam import TRQAMAgent, TRQAMConfig

    agent = TRQAMAgent(TRQAMConfig(), 3, 2, agent=TINY, seed=0, device=device)
    assert all(p.device.type == device for p in agent.state_dict().values())
    ones = torch.ones(8)
    m = agent.update(ChunkBatch(torch.randn(8, 3), torch.rand(8, 2), ones, ones, ones, torch.randn(8, 3)))
    assert all(v.device.type == device and v.dim() == 0 for v in m.values())
    assert agent.dual_state.value.device.type == device
    assert agent.act(torch.zeros(4, 3)).device.type == device
    state = agent.training_state()  # checkpoints are device-free
    assert all(v.device.type == "cpu" for v in state["model"].values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_update_does_not_sync_with_the_host():
    """Between two health checks an update issues no host sync (CUDA's sync debug mode raises on one)."""
    from tether.flow.trqam import TRQAMAgent, TRQAMConfig

    agent = TRQAMAgent(TRQAMConfig(), 3, 2, agent=TINY, seed=0, device="cuda")
    ones = torch.ones(8, device="cuda")
    batch = ChunkBatch(torch.randn(8, 3, device="cuda"), torch.rand(8, 2, device="cuda"), ones, ones, ones,
                       torch.randn(8, 3, device="cuda"))
    agent.update(batch)  # the first update runs the health check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            agent.update(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
