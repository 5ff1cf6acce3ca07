"""Sampling routes: enumeration sanity, Monte-Carlo re-training (T21) and rejection sampling (T22).

Statistical tests: with N = 2e5 samples over at most 16 paths, the TV distance of the empirical law has
standard deviation below 2e-3, so a 0.01 threshold fails with probability far below 1e-6; seeds are fixed.
"""

import numpy as np
import pytest

from tether.coherence import (
    enumerate_trajectories,
    envs,
    random_policy,
    rejection_sample,
    retrain,
    retrain_mc,
    sample_trajectories,
    tempered,
    uniform_policy,
)


def _empirical(tr):
    keys, counts = np.unique(np.concatenate([tr.states, tr.actions], axis=1), axis=0, return_counts=True)
    return {tuple(k): c / counts.sum() for k, c in zip(keys, counts, strict=True)}


def test_enumeration_is_a_distribution(all_cases):
    for name, m, prior in all_cases:
        tr = enumerate_trajectories(m, prior)
        assert abs(np.exp(tr.log_prob).sum() - 1) < 1e-12, name


def test_sampled_paths_follow_the_exact_law_in_a_stochastic_mdp(law, tv_distance):
    rng = np.random.default_rng(0)
    m = envs.random_tree(rng, horizon=2, n_actions=2, stochastic=True)
    pi = random_policy(m, rng)
    assert tv_distance(_empirical(sample_trajectories(m, pi, 200_000, rng)), law(m, pi)) < 0.01


def test_T21_monte_carlo_retraining_matches_G_on_mountain_race():
    m = envs.mountain_race()
    p = uniform_policy(m)
    est = retrain_mc(m, p, 200_000, np.random.default_rng(1))
    assert 0.5 * np.abs(est[0][0] - retrain(m, p)[0][0]).sum() < 0.01


@pytest.mark.parametrize("env, k", [(envs.mountain_race, 2), (lambda: envs.deep_mountain_race(2, 0.75), 3)])
def test_T22_rejection_sampling_yields_tempered_law(env, k, law, tv_distance):
    m = env()
    p = uniform_policy(m)
    acc, rate = rejection_sample(m, p, k, 200_000, np.random.default_rng(2))
    tr = enumerate_trajectories(m, p)
    z_k = float(np.sum(np.exp(tr.log_prob + k * tr.log_q_sum)))  # E_p q(xi)^k
    assert abs(rate - z_k) < 0.01
    assert tv_distance(_empirical(acc), law(m, tempered(m, p, k))) < 0.01


def test_sampling_rejects_folded_rewards_above_one():
    m = envs.mountain_race()
    bad = m.with_log_q([lq + 0.5 for lq in m.log_q])
    with pytest.raises(ValueError, match=r"log_q\[0\]: state 0, action 0 has value 0.5 > 0"):
        retrain_mc(bad, uniform_policy(bad), 10, np.random.default_rng(0))
