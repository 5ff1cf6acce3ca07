"""Effective horizon (T23): k-QVI solvability, the closed-form bound and GORP, additive r := q convention."""

import numpy as np
import pytest

from tether.coherence import envs, gorp_horizon, gorp_success, horizon_bound, min_k_qvi


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_T23_min_k_qvi_deep_race_needs_full_lookahead(depth):
    hard = envs.deep_mountain_race(depth, 0.75)
    assert min_k_qvi(hard, reward="q") == depth + 1
    assert horizon_bound(hard, reward="q") == hard.horizon  # vacuous on tiny MDPs
    easy = envs.deep_mountain_race(depth, 0.9 * 2.0 ** -depth)
    assert min_k_qvi(easy, reward="q") == 1


def test_T23_mountain_and_easy_variant():
    assert min_k_qvi(envs.mountain_race(), reward="q") == 2
    assert min_k_qvi(envs.easy_mountain_race(), reward="q") == 1
    assert horizon_bound(envs.easy_mountain_race(), reward="q") == 2


def test_T23_gorp_success_probabilities_expected_rewards():
    """Expected-reward GORP: (mountain, k=2, m=1) always optimal; (easy, k=1, m=1) exactly 1/2, m=2 gives 3/4.
    2000 runs: sd of the estimate is 0.011, so the 0.05 band fails with probability < 1e-5."""
    rng = np.random.default_rng(0)
    assert gorp_success(envs.mountain_race(), 2, 1, 2000, rng, reward="q") == 1.0
    assert abs(gorp_success(envs.easy_mountain_race(), 1, 1, 2000, rng, reward="q") - 0.5) < 0.05
    assert abs(gorp_success(envs.easy_mountain_race(), 1, 2, 2000, rng, reward="q") - 0.75) < 0.05


def test_gorp_horizon_threshold_convention_is_inclusive_and_capped_at_T():
    rng = np.random.default_rng(1)
    easy = envs.easy_mountain_race()
    assert gorp_horizon(easy, rng, sampled=False, n_runs=400, threshold=0.4) == 1.0
    assert gorp_horizon(easy, rng, sampled=False, n_runs=400, threshold=0.7) == 2.0  # k=1, m=2: 1 + log2 2
    assert gorp_horizon(envs.mountain_race(), rng, sampled=True, n_runs=200) <= 2.0


def test_reward_convention_is_explicit():
    m = envs.mountain_race()
    with pytest.raises(ValueError, match="reward"):
        min_k_qvi(m, reward="log_q")  # log 0 = -inf is not a finite additive reward
    with pytest.raises(ValueError, match="reward"):
        min_k_qvi(m, reward="bernoulli")
