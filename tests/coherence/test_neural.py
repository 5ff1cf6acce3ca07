"""Tests of the neural coherence model (tether.coherence.neural.model, neural_train, neural_cli)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tether.coherence import envs, expected_return, occupancy, sample_trajectories, uniform_policy
from tether.coherence.neural.cli import cost_curve, plot_run_dir, run_neural
from tether.coherence.neural.model import (
    NULL,
    SequenceModel,
    all_paths,
    encode,
    fit,
    prune,
    read_policy,
    sequence_nll,
)
from tether.coherence.neural.train import NeuralConfig, behaviour_prior, label, occupancy_tv, run


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_model_is_causal(arch):
    """Logits at step t must not change when later states or actions change."""
    torch.manual_seed(0)
    m = envs.deep_mountain_race(2)
    model = SequenceModel(m.n_states, m.n_actions, 16, arch)
    s = torch.tensor([[0, 0, 0], [0, 1, 3]])
    a = torch.tensor([[0, 0, 0], [1, 1, 1]])
    base = model(torch.tensor([1, 0]), s, a)
    s2, a2 = s.clone(), a.clone()
    s2[:, 2], a2[:, 1:] = 1, 0
    changed = model(torch.tensor([1, 0]), s2, a2)
    torch.testing.assert_close(base[:, :2], changed[:, :2])  # step 0 and 1 see only s_0, a_0, s_1
    assert not torch.allclose(base[:, 2], changed[:, 2])


def test_encode_dedup_equals_full_batch_loss():
    m = envs.deep_mountain_race(2)
    rng = np.random.default_rng(0)
    tr = sample_trajectories(m, uniform_policy(m), 300, rng)
    outcome = label(tr, rng)
    data = encode(tr, outcome)
    assert data.n == 300 and data.outcome.shape[0] < 300
    torch.manual_seed(0)
    model = SequenceModel(m.n_states, m.n_actions, 16)
    full = sequence_nll(model(torch.as_tensor(outcome), torch.as_tensor(tr.states[:, :3]),
                              torch.as_tensor(tr.actions)), torch.as_tensor(tr.actions)).sum(1).mean()
    dedup = (data.count / data.n * sequence_nll(model(data.outcome, data.states, data.actions),
                                                data.actions).sum(1)).sum()
    torch.testing.assert_close(full, dedup)


def test_read_policy_on_a_tree_is_the_network():
    torch.manual_seed(0)
    m = envs.deep_mountain_race(2)
    model = SequenceModel(m.n_states, m.n_actions, 16)
    pi = read_policy(model, m, all_paths(m))
    # state 3 of layer 2 (safe subtree, second child) has the unique history s=(0, 1, 3), a=(1, 1)
    with torch.no_grad():
        logits = model(torch.tensor([1]), torch.tensor([[0, 1, 3]]), torch.tensor([[1, 1, 0]]))
    np.testing.assert_allclose(pi[2][3], torch.softmax(logits[0, 2].double(), -1).numpy(), atol=1e-6)


def test_read_policy_markovisation_keeps_occupancy_on_a_dag():
    """On a DAG the net depends on the history; its Markovised read-out keeps each (t, s, a) marginal."""
    torch.manual_seed(1)
    m = envs.random_dag(np.random.default_rng(3), horizon=3, n_actions=2, width=3, stochastic=True)
    model = SequenceModel(m.n_states, m.n_actions, 16)
    paths = all_paths(m)
    pi = read_policy(model, m, paths)
    with torch.no_grad():
        logits = model(torch.ones(len(paths.state_np), dtype=torch.long), paths.states, paths.actions)
    taken = torch.log_softmax(logits.double(), -1).gather(-1, paths.actions[..., None])[..., 0].sum(1).numpy()
    lq = sum(m.log_q[t][paths.state_np[:, t], paths.action_np[:, t]] for t in range(m.horizon))
    w = np.exp(paths.log_dynamics + taken)  # (P,) path law of the history-dependent net
    assert expected_return(m, pi) == pytest.approx(float(np.sum(w * lq)), abs=1e-9)
    d_last = np.bincount(paths.state_np[:, -1], weights=w, minlength=m.n_states[-2])
    np.testing.assert_allclose(occupancy(m, pi)[-1], d_last, atol=1e-9)


def test_prune_and_skewed_prior():
    pi = prune([np.array([[0.995, 0.005], [0.5, 0.5]])], 0.01)
    np.testing.assert_allclose(pi[0], [[1.0, 0.0], [0.5, 0.5]])
    p = behaviour_prior(envs.stochastic_counterexample(), "skewed", 0.7)
    np.testing.assert_allclose(p[0], [[0.7, 0.3]])
    np.testing.assert_allclose(p[1], [[1.0], [1.0]])


def test_fixed_seed_run_tracks_exact_retraining():
    """The issue's test: one fixed seed on the mountain race, one-step fidelity < 0.1, success rises."""
    cfg = NeuralConfig(env="mountain-race", rounds=4, seeds=1, rollouts=3000, steps_offline=250,
                       steps_round=120, rejection=False)
    rows, agg = run(cfg)
    assert [r["round"] for r in rows] == [1, 2, 3, 4]
    assert max(r["fidelity_tv"] for r in rows) < 0.1
    success = [r["success"] for r in rows]
    assert success[-1] > success[0] + 0.03  # exact: 0.850 -> 0.903
    assert all(b > a - 0.02 for a, b in zip(success, success[1:], strict=False))
    assert abs(success[-1] - rows[-1]["exact_success"]) < 0.03
    assert rows[0]["exact_root_policy"][0] == pytest.approx(0.4)  # G(p)(mountain) = 2/5, the worked example's value
    assert agg[0]["success"] == pytest.approx(rows[0]["success"])


def test_cli_json_rows(capsys):
    cfg = NeuralConfig(env="deep-mountain-race", depth=2, rounds=2, seeds=1, rollouts=400, steps_offline=40,
                       steps_round=20, accepted=200, fold_rounds=2, json=True)
    assert run_neural(cfg) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]  # stdout: JSON lines only
    assert [r["round"] for r in rows] == [1, 2]
    # progress on stderr, one step per (seed, round), with an ETA
    assert captured.err.splitlines()[-1].startswith("[coherence neural deep-mountain-race] 2/2 elapsed ")
    assert " eta " in captured.err and "success=" in captured.err
    for key in ("round", "success", "exact_success", "root_policy", "fidelity_tv", "rejection_success",
                "fold_success", "kappa_1", "kappa_inv_k"):
        assert key in rows[0]
    assert rows[1]["fold_alpha"] == 2
    curves = cost_curve(rows, 400)
    assert set(curves) == {"re-training", "rejection", "cumulative folding"}


def test_null_branch_models_the_behaviour_policy_under_stochastic_dynamics():
    """The NULL-token branch, trained on every offline row, reads out ≈ the behaviour prior (slip env)."""
    m = envs.deep_mountain_race(2, 0.75, slip=0.1)
    prior = behaviour_prior(m, "skewed", 0.7)
    rng = np.random.default_rng(0)
    tr = sample_trajectories(m, prior, 3000, rng)
    torch.manual_seed(0)
    model = SequenceModel(m.n_states, m.n_actions, 32)
    fit(model, encode(tr, label(tr, rng), with_null=True), 200, 1e-2)
    assert occupancy_tv(m, read_policy(model, m, all_paths(m), outcome=NULL), prior) < 0.03


def test_plot_run_dir(tmp_path):
    cfg = NeuralConfig(env="mountain-race", rounds=2, seeds=1, rollouts=300, steps_offline=30, steps_round=10,
                       accepted=100, out=str(tmp_path), json=True)
    run_neural(cfg)
    assert {p.name for p in plot_run_dir(tmp_path, tmp_path / "figs")} == {"neural.png", "neural_cost.png"}


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="rounds"):
        NeuralConfig(rounds=0)
    with pytest.raises(ValueError, match="fold_rounds"):
        NeuralConfig(fold_rounds=3, rounds=2)
    with pytest.raises(ValueError, match="deterministic"):
        run(NeuralConfig(env="stochastic-counterexample", fold_rounds=2, rounds=2, seeds=1, rollouts=10))


def test_stochastic_counterexample_retraining_beats_rejection():
    """Re-training heads for the success-optimal a_2 (G^k(a_1) -> 0); rejection/temperature for a_1 -> 1/3.

    Exact at k = 10: G^10 p(a_1) = 0.139, pi_{alpha=10}(a_1) = 0.334 (the exact tabular engine).
    """
    cfg = NeuralConfig(env="stochastic-counterexample", rounds=10, seeds=1, rollouts=3000, steps_round=100,
                       accepted=1000)
    rows, _ = run(cfg)
    last = rows[-1]
    assert last["root_policy"][0] < 0.2 < 0.28 < last["rejection_root_policy"][0]
    assert last["success"] > last["rejection_success"]
    assert abs(last["tempered_root_policy"][0] - 1 / 3) < 0.01


def test_finished_seeds_are_checkpointed_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    from dataclasses import replace

    import tether.coherence.neural.train as nt
    from tether.core.config import ConfigError

    cfg = NeuralConfig(env="mountain-race", rounds=2, seeds=2, rollouts=200, steps_offline=30, steps_round=10,
                       rejection=False, out=str(tmp_path / "out"))
    straight, _ = run(replace(cfg, out=""))
    real, calls = nt.run_seed, []

    def killed_after_one_seed(*args, **kw):
        if calls:
            raise KeyboardInterrupt  # the process dies in the second seed
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(nt, "run_seed", killed_after_one_seed)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(nt, "run_seed", real)
    assert [p.name for p in (tmp_path / "out" / "seeds").iterdir()] == ["seed_0.json"]
    resumed, _ = run(replace(cfg, resume=True))
    assert json.dumps(resumed) == json.dumps(straight)
    with pytest.raises(ConfigError, match="differs from .*rollouts"):
        run(replace(cfg, resume=True, rollouts=300))
    with pytest.raises(ValueError, match="'resume'"):
        NeuralConfig(resume=True)
