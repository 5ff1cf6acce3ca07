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


# ------------------------------------------------------------------ crash-proof runs: kill, resume, compare


class Killed(Exception):
    pass


def _killed_at(agent, n: int):
    """Make the agent's n-th update raise, as a kill between two steps would stop the run."""
    update, calls = agent.update, [0]

    def dying(batch):
        calls[0] += 1
        if calls[0] == n:
            raise Killed
        return update(batch)

    agent.update = dying
    return agent


def _rows(run_dir):
    from tether.core.rundir import read_jsonl

    return {f: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_jsonl(run_dir / f)]
            for f in ("metrics.jsonl", "eval.jsonl")}


@pytest.mark.parametrize("offline, online, kill_at", [(20, 0, 13), (4, 80, 60)])
def test_a_killed_run_resumes_to_the_uninterrupted_metrics_and_weights(tmp_path, offline, online, kill_at):
    """log_every 3 and save_every 5 put rows across checkpoints; online saves wait for episode ends."""
    cfg = TrainConfig(offline_steps=offline, online_steps=online, batch_size=16, eval_episodes=1, eval_every=10)
    env = lambda: PointNav(seed=3)  # noqa: E731

    def go(name, agent, resume=False):
        run_cfg = RunConfig(seed=5, log_every=3, save_every=5, resume=resume, dir=str(tmp_path / name))
        run = RunDir.from_config(run_cfg, cfg, default_dir="")
        return fit(agent, point_nav_dataset(6, extra_capacity=online), cfg, run, run_cfg, env_fn=env)

    straight = make("trqam", seed=1)
    go("a", straight)
    with pytest.raises(Killed):
        go("b", _killed_at(make("trqam", seed=1), kill_at))
    resumed = make("trqam", seed=1)
    go("b", resumed, resume=True)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resuming_a_finished_run_does_nothing_and_says_so(tmp_path, capsys):
    cfg, run_cfg = TrainConfig(offline_steps=4, batch_size=8), RunConfig(dir=str(tmp_path / "r"))
    fit(make("fql"), point_nav_dataset(4), cfg, RunDir.from_config(run_cfg, cfg, ""), run_cfg)
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    again = RunConfig(dir=str(tmp_path / "r"), resume=True)
    assert fit(make("fql"), point_nav_dataset(4), cfg, RunDir.from_config(again, cfg, ""), again) == {}
    assert "already finished at step 4 of 4" in capsys.readouterr().err
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before


def test_resume_without_a_checkpoint_is_an_error_not_a_silent_restart(tmp_path):
    from tether.core.config import ConfigError

    cfg = TrainConfig(offline_steps=4, batch_size=8)
    run = RunDir.create(tmp_path / "r", cfg, seed=0)
    with pytest.raises(ConfigError, match="no loadable checkpoint under .*without --run.resume"):
        fit(make("fql"), point_nav_dataset(4), cfg, run, RunConfig(dir=str(run.path), resume=True))


def test_a_huge_learning_rate_stops_with_one_line_naming_the_flag_and_never_saves_nan(tmp_path):
    from dataclasses import replace as dc_replace

    from tether.core.checkpoint import latest_checkpoint, load_checkpoint
    from tether.core.stability import NonFiniteError

    agent = FQLAgent(FQLConfig(alpha=10.0), 2, 2, agent=dc_replace(TINY, lr=1e30), seed=0)
    cfg = TrainConfig(offline_steps=50, batch_size=16)
    run = RunDir.create(tmp_path / "r", cfg, seed=0)
    with pytest.raises(NonFiniteError, match="--agent.lr") as e:
        fit(agent, point_nav_dataset(4), cfg, run, RunConfig(save_every=1))
    assert "\n" not in str(e.value)
    for ckpt in (tmp_path / "r" / "checkpoints").glob("step_*"):
        state = load_checkpoint(ckpt)["agent"]["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt
    del latest_checkpoint


def test_online_updates_start_at_the_start_training_env_step(tmp_path):
    """The first start_training - 1 online env steps are collected without an update (official `start_training`);
    from that step on there is one update per env step, and the offline phase is unaffected."""
    agent = make("fql")
    calls = []
    update = agent.update
    agent.update = lambda batch: calls.append(1) or update(batch)
    buffer = point_nav_dataset(6, extra_capacity=40)
    size0 = buffer.size
    cfg = TrainConfig(offline_steps=3, online_steps=30, batch_size=8, start_training=21)
    fit(agent, buffer, cfg, RunDir.create(tmp_path / "run", cfg, seed=0), RunConfig(log_every=5),
        env_fn=lambda: PointNav(seed=3))
    assert buffer.size == size0 + 30  # every online step collected
    assert len(calls) == 3 + (30 - 21 + 1)  # offline updates + online steps 21..30


def test_discount_defaults_to_each_methods_official_value():
    assert make("trqam").cfg.discount == 0.995  # TRQAM's manipulation setting
    assert make("qam").cfg.discount == make("fql").cfg.discount == 0.99
    explicit = AgentConfig(horizon=2, hidden=(32, 32), critic_hidden=(32, 32), num_qs=2, flow_steps=4, discount=0.9)
    assert TRQAMAgent(TRQAMConfig(), 2, 2, agent=explicit).cfg.discount == 0.9  # a user's value wins
