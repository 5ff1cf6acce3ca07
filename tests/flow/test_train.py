"""The shared training loop: tiny end-to-end offline + online on point navigation, and exact resume."""

import json

import pytest
import torch

from tether.core.rundir import RunConfig, RunDir
from tether.flow.agent import AgentConfig
from tether.flow.envs import PointNav, point_nav_dataset
from tether.flow.fql import FQLAgent, FQLConfig
from tether.flow.qam import QAMAgent, QAMConfig
from tether.flow.train import TrainConfig, fit
from tether.flow.trqam import TRQAMAgent, TRQAMConfig
from tether.testing.docs import undocumented

TINY = AgentConfig(horizon=2, hidden=(32, 32), critic_hidden=(32, 32), num_qs=2, flow_steps=4)


def make(kind: str, seed: int = 0):
    if kind == "fql":
        return FQLAgent(FQLConfig(alpha=10.0), 2, 2, agent=TINY, seed=seed)
    if kind == "qam":
        return QAMAgent(QAMConfig(beta=1.0), 2, 2, agent=TINY, seed=seed)
    return TRQAMAgent(TRQAMConfig(kl_budget=0.1), 2, 2, agent=TINY, seed=seed)


@pytest.mark.parametrize("kind", ["fql", "qam", "trqam"])
def test_offline_then_online_runs_and_logs_documented_keys(tmp_path, kind):
    agent = make(kind)
    buffer = point_nav_dataset(6, extra_capacity=100)
    size0 = buffer.size
    before = [p.clone() for p in agent.parameters()]
    cfg = TrainConfig(offline_steps=4, online_steps=50, batch_size=16, eval_episodes=1)
    run = RunDir.create(tmp_path / "run", cfg, seed=0)
    last = fit(agent, buffer, cfg, run, RunConfig(log_every=5), env_fn=lambda: PointNav(seed=3))
    assert buffer.size == size0 + 50
    assert all(torch.isfinite(torch.tensor(v)) for v in last.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.parameters(), strict=True))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows) - {"step"}
    assert {"loss/critic", "loss/bc", "grad/norm", "time/update"} <= keys
    assert (tmp_path / "run" / "eval.jsonl").exists()
    assert run.latest_checkpoint() is not None
    assert undocumented(keys) == []


def test_resume_is_exact_offline(tmp_path):
    """20 updates in one go == 10 updates, a checkpoint, a fresh process state, and 10 more."""
    buffer = point_nav_dataset(6)
    full = make("trqam", seed=1)
    cfg, run_cfg = TrainConfig(offline_steps=20, batch_size=16), RunConfig(seed=5, save_every=10)
    fit(full, buffer, cfg, RunDir.create(tmp_path / "a", cfg, seed=5), run_cfg)

    half_cfg = TrainConfig(offline_steps=10, batch_size=16)
    fit(make("trqam", seed=1), point_nav_dataset(6), half_cfg, RunDir.create(tmp_path / "b", half_cfg, seed=5), run_cfg)
    torch.manual_seed(123)  # a different global RNG state; resume must restore it
    resumed = make("trqam", seed=7)
    res_run = RunConfig(seed=5, save_every=10, resume=True, dir=str(tmp_path / "b"))
    fit(resumed, point_nav_dataset(6), cfg, RunDir.open(tmp_path / "b"), res_run)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(full.dual_state.value, resumed.dual_state.value)
