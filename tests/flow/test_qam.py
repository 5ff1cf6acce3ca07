"""QAM: equivalence with TRQAM at beta = 1/lambda_eff, config validation, and a tiny fine-tune that raises Q."""

import pytest
import torch

from tether.core.config import ConfigError
from tether.flow.agent import AgentConfig
from tether.flow.data import ChunkBatch
from tether.flow.qam import QAMAgent, QAMConfig
from tether.flow.trqam import TRQAMAgent, TRQAMConfig

TINY = AgentConfig(horizon=1, hidden=(32, 32), critic_hidden=(8,), num_qs=1, flow_steps=10)
LINEAR_Q = lambda obs, a: a @ torch.tensor([1.0, -0.5])  # noqa: E731


def bandit_batch(n: int) -> ChunkBatch:
    ones = torch.ones(n)
    return ChunkBatch(torch.zeros(n, 0), torch.zeros(n, 2), 0 * ones, 0 * ones, ones, torch.zeros(n, 0))


def test_trqam_actor_loss_is_lambda_times_qam_at_beta_one_over_lambda():
    """Same seed, same rollouts: TRQAM(lambda_eff) loss == lambda_eff * QAM(beta = 1/lambda_eff) loss, same KL."""
    lam = 2.0
    qam = QAMAgent(QAMConfig(beta=1 / lam, reference="frozen"), 0, 2, agent=TINY, seed=3, fixed_critic=LINEAR_Q)
    trq = TRQAMAgent(TRQAMConfig(lam_scale=1.0, lam_init=lam, reference="frozen"), 0, 2, agent=TINY, seed=3,
                     fixed_critic=LINEAR_Q)
    trq.load_state_dict(qam.state_dict())
    lq, mq = qam.actor_loss(bandit_batch(32))
    lt, mt = trq.actor_loss(bandit_batch(32))
    assert torch.allclose(lt, lam * lq, rtol=1e-5)
    assert torch.allclose(mt["kl/path"], mq["kl/path"])


def test_qam_fine_tune_raises_q_and_kl():
    agent = QAMAgent(QAMConfig(beta=3.0, reference="frozen"), 0, 2, agent=TINY, seed=0, fixed_critic=LINEAR_Q)
    agent.load_pretrained(agent.fast.state_dict())
    q0 = LINEAR_Q(None, agent.act(torch.zeros(2000, 0))).mean()
    for _ in range(60):
        m = agent.update(bandit_batch(128))
    q1 = LINEAR_Q(None, agent.act(torch.zeros(2000, 0))).mean()
    assert q1 > q0 + 0.1, (q0, q1)
    assert m["kl/path"] > 0


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="beta"):
        QAMConfig(beta=-1.0)
    with pytest.raises(ConfigError, match="reference"):
        QAMConfig(reference="other")
    with pytest.raises(ConfigError, match="kl_budget"):
        TRQAMConfig(kl_budget=0.0)
    with pytest.raises(ConfigError, match="num_qs"):
        AgentConfig(num_qs=0)
