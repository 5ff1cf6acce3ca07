"""Golden vectors of the paper's worked examples (arXiv:2510.06545) and the stochastic gap, one test per example."""

import numpy as np
import pytest

from tether.coherence import (
    causal_entropy,
    envs,
    expected_return,
    fold,
    folded_log_q,
    incoherence,
    iterated_coherence,
    optimal_return,
    optimal_success,
    retrain,
    retrain_sequence,
    soft_q_v,
    success_probability,
    tempered,
    uniform_policy,
)

TOL = 1e-6
# §6.1(c): k, pi_k(up|root), S, J, kappa_1, kappa_{1/k}
MOUNTAIN_TABLE = [
    (1, 0.400000, 0.850000, -0.172609, 0.059213, 0.059213),
    (2, 8 / 17, 59 / 68, -0.152302, 0.020502, 0.059476),
    (3, 0.542373, 0.885593, -0.131651, 0.001715, 0.057378),
    (4, 0.612440, 0.903110, -0.111494, 0.003466, 0.053237),
    (5, 0.678146, 0.919536, -0.092592, 0.023948, 0.047635),
    (6, 0.737486, 0.934372, -0.075520, 0.059467, 0.041253),
]


def test_golden_6_1_mountain_race_prior_and_naive_goal_conditioning():
    m = envs.mountain_race()
    p = uniform_policy(m)
    Q, _ = soft_q_v(m, p)
    np.testing.assert_allclose(np.exp(Q[0][0]), [1 / 2, 3 / 4], atol=1e-15)
    np.testing.assert_allclose(np.exp(Q[1]), [[1, 0], [3 / 4, 3 / 4]], atol=1e-15)
    assert abs(success_probability(m, p) - 5 / 8) < 1e-15 and expected_return(m, p) == -np.inf
    assert incoherence(m, p, 1.0) == np.inf
    g = retrain(m, p)
    np.testing.assert_allclose(g[0][0], [2 / 5, 3 / 5])
    np.testing.assert_allclose(g[1], [[1, 0], [1 / 2, 1 / 2]])
    assert abs(success_probability(m, g) - 17 / 20) < 1e-15
    assert abs(expected_return(m, g) - 0.6 * np.log(0.75)) < 1e-15
    assert abs(causal_entropy(m, g) - 1.088900) < TOL
    assert optimal_success(m) == 1.0 and optimal_return(m) == 0.0


@pytest.mark.parametrize("row", MOUNTAIN_TABLE, ids=lambda r: f"k{r[0]}")
def test_golden_6_1_c_mountain_race_retraining_table(row):
    k, up, S, J, k1, kinv = row
    m = envs.mountain_race()
    pi = retrain_sequence(m, uniform_policy(m), k)[k]
    closed = 1 / (1 + 2 * 0.75 ** k)
    assert abs(pi[0][0, 0] - up) < TOL and abs(pi[0][0, 0] - closed) < 1e-12
    assert abs(success_probability(m, pi) - S) < TOL
    assert abs(success_probability(m, pi) - (1 + 2 * 0.75 ** (k + 1)) / (1 + 2 * 0.75 ** k)) < 1e-12
    assert abs(expected_return(m, pi) - J) < TOL
    assert abs(expected_return(m, pi) - 2 * 0.75 ** k * np.log(0.75) / (1 + 2 * 0.75 ** k)) < 1e-12
    assert abs(incoherence(m, pi, 1.0) - k1) < TOL and abs(incoherence(m, pi, 1 / k) - kinv) < TOL
    assert np.max(np.abs(tempered(m, uniform_policy(m), k)[0] - pi[0])) < 1e-12


def test_golden_6_1_d_cumulative_folding_and_folded_rewards():
    m = envs.mountain_race()
    p = uniform_policy(m)
    got = [fold(m, p, k, cumulative=True)[0][0, 0] for k in range(1, 6)]
    np.testing.assert_allclose(got, [0.400000, 0.470588, 0.612440, 0.833177, 0.980349], atol=TOL)
    np.testing.assert_allclose(got, [tempered(m, p, a)[0][0, 0] for a in (1, 2, 4, 8, 16)], atol=1e-12)
    r1 = folded_log_q(m, p, 1, cumulative=True)
    np.testing.assert_allclose(np.exp(r1[1][0]), [2, 0]) and np.testing.assert_allclose(np.exp(r1[0][0]), [0.8, 1.2])


def test_golden_6_2_boltzmann_coherent_mountain_race_fixed_point():
    """δ = 1 (the value missing in the tex); the fixed point root is (4/7, 3/7), S = 25/28."""
    m = envs.mountain_race()
    it1 = iterated_coherence(m, uniform_policy(m), 1.0, 1)
    it2 = iterated_coherence(m, uniform_policy(m), 1.0, 2)
    np.testing.assert_allclose(it1[0][0], [2 / 5, 3 / 5]) and np.testing.assert_allclose(it1[1], [[1, 0], [.5, .5]])
    np.testing.assert_allclose(it2[0][0], [4 / 7, 3 / 7])
    assert abs(success_probability(m, it2) - 25 / 28) < 1e-15 and abs(incoherence(m, it2, 1.0)) < 1e-15
    assert abs(incoherence(m, it1, 1.0) - 0.059213) < TOL
    for d, c in ((2, 0.75), (3, 0.6), (4, 0.3)):  # root 1/(1+c) independent of depth
        deep = envs.deep_mountain_race(d, c)
        fixed = iterated_coherence(deep, uniform_policy(deep), 1.0, deep.horizon)
        assert abs(fixed[0][0, 0] - 1 / (1 + c)) < 1e-12


def test_golden_6_3_and_T15_stochastic_counterexample_temperature_differs_from_retraining():
    m = envs.stochastic_counterexample()
    p = uniform_policy(m)
    seq = retrain_sequence(m, p, 4)
    assert abs(seq[1][0][0, 0] - 5 / 11) < 1e-12 and abs(seq[2][0][0, 0] - 25 / 61) < 1e-12
    assert abs(tempered(m, p, 2)[0][0, 0] - 7 / 17) < 1e-12
    for k in range(6):
        assert abs(retrain_sequence(m, p, k)[k][0][0, 0] - 1 / (1 + 1.2 ** k)) < 1e-12
    for a in (0.5, 1, 2, 3, 4, 7.5):
        assert abs(tempered(m, p, a)[0][0, 0] - (3 + 2 ** a) / (5 + 3 * 2 ** a)) < 1e-12
    np.testing.assert_allclose([tempered(m, p, a)[0][0, 0] for a in (3, 4)], [0.379310, 0.358491], atol=TOL)
    np.testing.assert_allclose([success_probability(m, x) for x in seq],
                               [0.458333, 0.462121, 0.465847, 0.469453, 0.472887], atol=TOL)
    hot = tempered(m, p, 200.0)  # limits: pi_alpha -> 1/3 with S = 17/36 < S* = 1/2, G -> 0
    assert abs(hot[0][0, 0] - 1 / 3) < 1e-12 and abs(success_probability(m, hot) - 17 / 36) < 1e-12
    assert abs(optimal_success(m) - 0.5) < 1e-15
    assert retrain_sequence(m, p, 200)[200][0][0, 0] < 1e-15
    np.testing.assert_allclose([fold(m, p, k, cumulative=True)[0][0, 0] for k in range(5)],
                               [0.5, 0.454545, 0.409836, 0.325351, 0.188686], atol=TOL)


def test_golden_6_5_success_improves_return_worsens():
    m = envs.success_vs_return_counterexample()
    seq = retrain_sequence(m, uniform_policy(m), 6)
    np.testing.assert_allclose([x[0][0, 0] for x in seq],
                               [0.5, 0.452899, 0.406626, 0.361953, 0.319545, 0.279926, 0.243461], atol=TOL)
    np.testing.assert_allclose([success_probability(m, x) for x in seq],
                               [0.552000, 0.556899, 0.561711, 0.566357, 0.570767, 0.574888, 0.578680], atol=TOL)
    np.testing.assert_allclose([expected_return(m, x) for x in seq],
                               [-1.267608, -1.321723, -1.374887, -1.426213, -1.474936, -1.520456, -1.562350],
                               atol=TOL)
    assert abs(optimal_success(m) - 0.604) < 1e-12 and abs(optimal_return(m) - np.log(0.5)) < 1e-12


@pytest.mark.parametrize("d, kappa", [(1, 0.059213), (2, 0.213042), (3, 0.396084), (4, 0.553979)])
def test_golden_6_6_deep_race_naive_incoherence_grows_with_depth(d, kappa):
    m = envs.deep_mountain_race(d, 0.75)
    assert abs(incoherence(m, retrain(m, uniform_policy(m)), 1.0) - kappa) < TOL


DEEP_S = {1: [0.625, 0.85, 0.8676, 0.9195, 0.9747, 0.9851],
          2: [0.5, 0.8125, 0.8269, 0.8783, 0.9540, 0.9719],
          3: [0.4375, 0.7857, 0.7955, 0.8363, 0.9224, 0.9495]}


@pytest.mark.parametrize("d", [1, 2, 3])
def test_golden_6_6_deep_race_closed_forms_and_success_table(d):
    c = 0.75
    m = envs.deep_mountain_race(d, c)
    seq = retrain_sequence(m, uniform_policy(m), 12)
    ks = [0, 1, 2, 5, 10, 12]
    np.testing.assert_allclose([success_probability(m, seq[k]) for k in ks], DEEP_S[d], atol=1e-4)
    for k in range(1, 13):
        risky = 2.0 ** -d / (2.0 ** -d + c ** k)
        assert abs(seq[k][0][0, 0] - risky) < 1e-12
        assert abs(tempered(m, uniform_policy(m), k)[0][0, 0] - risky) < 1e-12
        assert abs(success_probability(m, seq[k]) - (risky + (1 - risky) * c)) < 1e-12
        assert abs(expected_return(m, seq[k]) - (1 - risky) * np.log(c)) < 1e-12


def test_slip_variant_is_stochastic_and_splits_temperature_from_retraining():
    m = envs.deep_mountain_race(2, 0.75, slip=0.1)
    assert not m.is_deterministic()
    p = uniform_policy(m)
    assert np.max(np.abs(retrain_sequence(m, p, 3)[3][0] - tempered(m, p, 3)[0])) > 1e-4
