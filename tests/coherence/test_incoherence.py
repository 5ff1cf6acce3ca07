"""Incoherence: Prop. 4.7, 4.8, 4.10, 4.13, Cor. 4.15 (corrected), Prop. 5.2, Cor. 5.11 (corrected)."""

import numpy as np
import pytest

from tether.coherence import (
    argmax_f,
    boltzmann_policy,
    envs,
    incoherence,
    incoherence_f,
    iterated_coherence,
    optimal_policy,
    random_policy,
    retrain,
    retrain_sequence,
    soft_q_v,
    softmax_f,
    success_probability,
    trajectory_kl,
    uniform_policy,
)


def _maxdiff(p1, p2):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(p1, p2, strict=True))


def test_T3_prop_4_7_trajectory_kl_equals_occupancy_form(all_cases):
    rng = np.random.default_rng(0)
    for name, m, _ in all_cases:
        pi = random_policy(m, rng)
        for delta in (0.3, 1.0, 2.5):
            target = boltzmann_policy(m, pi, delta)
            assert abs(trajectory_kl(m, pi, target) - incoherence(m, pi, delta)) < 1e-12, name
            assert abs(incoherence_f(m, pi, softmax_f(delta)) - incoherence(m, pi, delta)) < 1e-12


def test_T4_prop_4_8_argmax_coherent_iff_greedy_on_own_q(det_cases):
    for name, m, _ in det_cases:
        greedy = optimal_policy(m, "success")  # deterministic a.s. (continuous q), greedy on its own Q
        assert incoherence_f(m, greedy, argmax_f) == 0.0, name
        Q, _ = soft_q_v(m, greedy)
        assert all(np.all((g > 0) <= (q >= q.max(1, keepdims=True))) for g, q in zip(greedy, Q, strict=True))
        soft = [0.99 * g + 0.01 / g.shape[1] for g in greedy]  # mass off the argmax: not greedy
        assert incoherence_f(m, soft, argmax_f) > 0, name
    m = envs.mountain_race()
    bad = [np.array([[0.0, 1.0]]), np.array([[0.5, 0.5], [0.5, 0.5]])]
    assert incoherence_f(m, bad, argmax_f) == 0.0  # greedy at reachable states (ties at the forest)


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.0])
def test_T5_prop_4_10_iterated_boltzmann_is_coherent_after_T_steps(all_cases, delta):
    for name, m, prior in all_cases:
        pb = iterated_coherence(m, prior, delta, m.horizon)
        assert _maxdiff(pb, boltzmann_policy(m, pb, delta)) < 1e-12, name
        assert abs(incoherence(m, pb, delta)) < 1e-12, name
        assert _maxdiff(iterated_coherence(m, prior, delta, m.horizon + 1), pb) < 1e-12


def test_T6_prop_4_13_boltzmann_tends_to_uniform_on_argmax_with_ties():
    m = envs.mountain_race()  # forest: Q tied at (3/4, 3/4); mountain: unique argmax
    tied = envs.random_tree(np.random.default_rng(1), horizon=2, n_actions=3)
    tied.log_q[1][:, 1] = tied.log_q[1][:, 0]  # build ties at the leaves
    for mdp in (m, tied):
        pi = random_policy(mdp, np.random.default_rng(2))
        Q, _ = soft_q_v(mdp, pi)
        limit = [(q >= q.max(1, keepdims=True) - 1e-12) / (q >= q.max(1, keepdims=True) - 1e-12).sum(1, keepdims=True)
                 for q in Q]
        assert _maxdiff(boltzmann_policy(mdp, pi, 1e-3), limit) < 1e-6


def test_T7_cor_4_15_optimal_policy_keeps_bounded_incoherence_as_delta_to_zero(all_cases):
    for name, m, _ in all_cases:
        star = optimal_policy(m, "success")
        vals = [incoherence(m, star, d) for d in (1e-1, 1e-2, 1e-3, 1e-4)]  # KL = -log pi^delta(a*) falls
        assert np.all(np.isfinite(vals)) and np.all(np.diff(vals) <= 1e-12), name


def test_T7_cor_4_15_not_sufficient_mountain_race_bad_policy():
    """§6.1(e): lim kappa_delta(pi_bad) = 0 although S(pi_bad) = 3/4 < S* = 1."""
    m = envs.mountain_race()
    bad = [np.array([[0.0, 1.0]]), np.array([[0.5, 0.5], [0.5, 0.5]])]
    assert incoherence(m, bad, 1e-3) < 1e-12 and abs(success_probability(m, bad) - 0.75) < 1e-15


def test_erratum_8_cor_4_15_support_condition_is_support_within_argmax():
    """kappa_delta -> inf as delta -> 0 when pi puts mass off argmax Q^pi (the printed proof reverses it)."""
    m = envs.mountain_race()
    g1 = retrain(m, uniform_policy(m))  # full support at the root, unique argmax there
    vals = [incoherence(m, g1, d) for d in (1.0, 0.1, 0.01, 0.001)]
    assert np.all(np.diff(vals) > 0) and vals[-1] > 100


def test_T9_prop_5_2_goal_conditioned_policy_is_boltzmann_incoherent_for_every_delta():
    m = envs.mountain_race()
    g1 = retrain(m, uniform_policy(m))
    kappas = [incoherence(m, g1, d) for d in np.logspace(-3, 3, 200)]
    assert min(kappas) > 0.01
    np.testing.assert_allclose(g1[0][0], [2 / 5, 3 / 5])


MOUNTAIN_KAPPA_INV_K = [0.0592, 0.0595, 0.0574, 0.0532, 0.0476, 0.0413, 0.0347, 0.0285]
MOUNTAIN_KAPPA_1 = [0.0592, 0.0205, 0.0017, 0.0035, 0.0239, 0.0595, 0.105, 0.157]


def test_T18_cor_5_11_corrected_kappa_along_delta_1_over_k_vanishes():
    """Erratum 2: kappa_{1/k}(G^k p) -> 0 along delta = 1/k (unique optimum); fixed delta is not monotone."""
    measured = {1: 1.2e-8, 2: 8.1e-8, 3: 3.1e-7}
    at20 = {1: 1.2e-3, 2: 7.9e-3, 3: 3.0e-2}
    for d in (1, 2, 3):
        m = envs.deep_mountain_race(d, 0.75)
        seq = retrain_sequence(m, uniform_policy(m), 60)
        k60 = incoherence(m, seq[60], 1 / 60)
        assert k60 < 1e-3 and abs(k60 - measured[d]) < 0.05 * measured[d], (d, k60)
        assert abs(incoherence(m, seq[20], 1 / 20) - at20[d]) < 0.05 * at20[d]
    m = envs.mountain_race()
    seq = retrain_sequence(m, uniform_policy(m), 8)
    np.testing.assert_allclose([incoherence(m, seq[k], 1 / k) for k in range(1, 9)], MOUNTAIN_KAPPA_INV_K, atol=1e-4)
    kappa1 = [incoherence(m, seq[k], 1.0) for k in range(1, 9)]
    np.testing.assert_allclose(kappa1, MOUNTAIN_KAPPA_1, atol=6e-4)
    assert kappa1[3] > kappa1[2]  # "re-training decreases incoherence" fails at fixed delta


def test_T18_erratum_joint_limit_fails_for_fixed_iteration():
    m = envs.mountain_race()
    g5 = retrain_sequence(m, uniform_policy(m), 5)[5]
    k3, k4 = incoherence(m, g5, 1e-3), incoherence(m, g5, 1e-4)
    assert k3 > 50 and k4 > 9 * k3  # grows like 1/delta at fixed i: the joint limit is not 0


def test_no_epsilon_clipping_kl_to_deterministic_limit_is_infinite():
    m = envs.mountain_race()
    p = uniform_policy(m)
    assert incoherence(m, p, 1.0) == np.inf  # the prior plays the skull, Q = -inf there
    det = optimal_policy(m, "success")
    assert trajectory_kl(m, p, det) == np.inf


def test_cor_4_14_boltzmann_limit_of_optimal_prior_is_optimal_but_not_of_others(all_cases):
    for name, m, _ in all_cases:
        star = optimal_policy(m, "success")
        limit = boltzmann_policy(m, star, 1e-4)
        assert abs(success_probability(m, limit) - success_probability(m, star)) < 1e-6, name
    m = envs.mountain_race()
    bad = [np.array([[0.0, 1.0]]), np.array([[0.5, 0.5], [0.5, 0.5]])]
    assert success_probability(m, boltzmann_policy(m, bad, 1e-4)) < 0.76  # limit of a non-optimal prior
