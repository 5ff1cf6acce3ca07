"""FQL: the actor term does not train the critic; distillation pulls the one-step policy to the flow."""

from dataclasses import replace

import torch

from tether.flow.agent import AgentConfig
from tether.flow.data import ChunkBatch
from tether.flow.fql import FQLAgent, FQLConfig

TINY = AgentConfig(horizon=2, hidden=(32, 32), critic_hidden=(16, 16), num_qs=2, flow_steps=5)


def batch(n: int = 16) -> ChunkBatch:
    g = torch.Generator().manual_seed(0)
    ones = torch.ones(n)
    return ChunkBatch(torch.randn(n, 3, generator=g), torch.rand(n, 4, generator=g) * 2 - 1, ones, ones, ones,
                      torch.randn(n, 3, generator=g))


def test_actor_loss_gives_no_gradient_to_the_critic():
    agent = FQLAgent(FQLConfig(alpha=1.0), 3, 2, agent=TINY, seed=0)
    loss, _ = agent.actor_loss(batch())
    loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.onestep.parameters())


def test_distillation_dominates_with_large_alpha():
    agent = FQLAgent(FQLConfig(alpha=1000.0), 3, 2, agent=replace(TINY, lr=3e-3), seed=0)
    first = agent.update(batch())["loss/distill"]
    for _ in range(40):
        last = agent.update(batch())["loss/distill"]
    assert last < 0.5 * first, (first, last)
    acts = agent.act(torch.randn(5, 3))
    assert acts.shape == (5, 4) and acts.abs().max() <= 1
