"""Re-training G, tempering and folding: Prop. 4.3, 4.16, 5.4 (corrected), 5.5, Thm. 5.9 (corrected), Cor. 5.10."""

import numpy as np

from tether.coherence import (
    boltzmann_policy,
    causal_kl,
    enumerate_trajectories,
    envs,
    expected_return,
    fold,
    folded_log_q,
    optimal_success,
    random_policy,
    retrain,
    retrain_sequence,
    soft_q_v,
    success_probability,
    tempered,
    uniform_policy,
)
from tether.coherence.operators import scaled_log_q


def _maxdiff(p1, p2):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(p1, p2, strict=True))


def test_T2_prop_4_3_goal_conditioning_equals_posterior_only_for_deterministic(all_cases, law, tv_distance):
    gaps = {}
    for name, m, prior in all_cases:
        tr = enumerate_trajectories(m, prior)
        w = np.exp(tr.log_prob + tr.log_q_sum)
        post = {tuple(s) + tuple(a): x / w.sum() for s, a, x in zip(tr.states, tr.actions, w, strict=True)}
        g = law(m, retrain(m, prior))
        gap = max(abs(post.get(k, 0) - g.get(k, 0)) for k in set(post) | set(g))
        if m.is_deterministic():
            assert gap < 1e-12, name
        else:
            gaps[name] = gap
    assert max(gaps.values()) > 1e-3  # the global posterior also tilts the dynamics (optimism)


def test_T8_prop_4_16_goal_conditioned_policy_maximises_reward_minus_kl_at_T1(all_cases):
    """At T = 1, G(p) = argmax E_pi[log q] - KL(pi || p). Caveat (erratum 9): it is the Boltzmann policy of
    its own Q only for a uniform prior."""
    rng = np.random.default_rng(0)
    one_step = [c for c in all_cases if c[1].horizon == 1]
    assert one_step
    for name, m, prior in one_step:
        def objective(pi, m=m, prior=prior):
            return expected_return(m, pi) - causal_kl(m, pi, prior)
        best = retrain(m, prior)
        for _ in range(20):
            other = random_policy(m, rng, floor=0.0)
            mix = [0.7 * b + 0.3 * o for b, o in zip(best, other, strict=True)]
            assert objective(best) >= max(objective(other), objective(mix)) - 1e-10, name
    m = envs.random_tree(rng, horizon=1, n_actions=3)
    skewed = [np.array([[0.6, 0.3, 0.1]])]
    assert _maxdiff(retrain(m, uniform_policy(m)), boltzmann_policy(m, uniform_policy(m), 1.0)) < 1e-12
    assert _maxdiff(retrain(m, skewed), boltzmann_policy(m, skewed, 1.0)) > 1e-3


def test_T10_prop_5_4_corrected_success_and_every_state_value_monotone(all_cases_with_zeros, all_cases):
    """Erratum 1: the proof shows V^{G(pi)}(s) >= V^pi(s) at every state (so S is monotone) under any
    dynamics; J = E sum log q is monotone only for deterministic dynamics."""
    checked = 0
    for name, m, prior in all_cases_with_zeros + all_cases:
        seq = retrain_sequence(m, prior, 8)
        for k in range(8):
            _, v0 = soft_q_v(m, seq[k])
            _, v1 = soft_q_v(m, seq[k + 1])
            for a, b in zip(v0, v1, strict=True):
                with np.errstate(invalid="ignore"):
                    assert np.all((b >= a - 1e-12) | (np.isneginf(a) & np.isneginf(b))), name
                checked += 1
            assert success_probability(m, seq[k + 1]) >= success_probability(m, seq[k]) - 1e-12
            if m.is_deterministic():
                assert expected_return(m, seq[k + 1]) >= expected_return(m, seq[k]) - 1e-12, name
    assert checked > 1000


def test_T10_erratum_return_falls_while_success_rises_under_stochastic_dynamics():
    """Prop. 5.4 as printed ("strong return improvement") fails for J in the §6.5 counterexample."""
    m = envs.success_vs_return_counterexample()
    seq = retrain_sequence(m, uniform_policy(m), 6)
    S = [success_probability(m, p) for p in seq]
    J = [expected_return(m, p) for p in seq]
    assert all(np.diff(S) > 0) and all(np.diff(J) < 0)
    assert J[1] < J[0]


def test_T11_prop_5_5_retraining_converges_to_success_optimal_policy(all_cases):
    """Full-support prior: S* - S(G^400 p) < 5e-4 (optimal means maximal success probability S)."""
    for name, m, prior in all_cases:
        pi = prior
        for _ in range(400):
            pi = retrain(m, pi)
        assert optimal_success(m) - success_probability(m, pi) < 5e-4, name


def test_T12_thm_5_9_i_retraining_equals_temperature_for_deterministic(det_cases):
    for name, m, prior in det_cases:
        seq = retrain_sequence(m, prior, 6)
        for k in range(1, 7):
            assert _maxdiff(seq[k], tempered(m, prior, k)) < 1e-10, (name, k)


def test_T13_thm_5_9_ii_folding_equals_retraining_for_any_dynamics(all_cases):
    for name, m, prior in all_cases:
        seq = retrain_sequence(m, prior, 6)
        for k in range(7):
            assert _maxdiff(fold(m, prior, k), seq[k]) < 1e-10, (name, k)


def test_T14_thm_5_9_iii_off_by_one_cumulative_fold_is_alpha_2_pow_k_minus_1(det_cases, stoch_cases):
    """Erratum 4: with Def. 5.8's indexing pi^H_k = pi_{alpha=2^(k-1)} (the theorem prints 2^k)."""
    for name, m, prior in det_cases:
        for k in range(1, 6):
            assert _maxdiff(fold(m, prior, k, cumulative=True), tempered(m, prior, 2 ** (k - 1))) < 1e-10, name
        assert _maxdiff(fold(m, prior, 3, cumulative=True), tempered(m, prior, 8)) > 1e-6 or m.horizon == 1
    multi = [c for c in stoch_cases if c[1].horizon > 1]
    gaps = [_maxdiff(fold(m, p, 3, cumulative=True), retrain_sequence(m, p, 4)[4]) for _, m, p in multi]
    assert max(gaps) > 1e-3  # cumulative folding != re-training under stochastic dynamics


def _variance_of_return(m, pi):
    tr = enumerate_trajectories(m, pi)
    w = np.exp(tr.log_prob)
    mean = np.sum(w * tr.log_q_sum)
    return float(np.sum(w * (tr.log_q_sum - mean) ** 2))


def test_T16_cor_5_10_exact_form_dJ_dalpha_is_return_variance(det_cases):
    """Erratum 3: replace the heuristic rate by dJ(pi_alpha)/dalpha = Var_{pi_alpha}[R] (deterministic)."""
    for name, m, prior in det_cases[:8]:
        def J(a, m=m, prior=prior):
            return expected_return(m, tempered(m, prior, a))
        for alpha in (0.5, 1.0, 3.0):
            h = 1e-5
            deriv = (J(alpha + h) - J(alpha - h)) / (2 * h)
            var = _variance_of_return(m, tempered(m, prior, alpha))
            assert abs(deriv - var) <= 1e-6 * max(abs(var), 1e-3), (name, alpha)
        k = 3
        nodes = np.linspace(k - 1, k, 201)  # Simpson on 200 intervals
        vals = np.array([_variance_of_return(m, tempered(m, prior, a)) for a in nodes])
        simpson = (nodes[1] - nodes[0]) / 3 * (vals[0] + vals[-1] + 4 * vals[1:-1:2].sum() + 2 * vals[2:-1:2].sum())
        assert abs((J(k) - J(k - 1)) - simpson) < 1e-6, name


def test_T17_tempered_policy_maximises_return_minus_scaled_kl(det_cases):
    rng = np.random.default_rng(2)
    for name, m, prior in det_cases:
        for alpha in (0.5, 2.0):
            best = tempered(m, prior, alpha)

            def objective(pi, m=m, prior=prior, alpha=alpha):
                return expected_return(m, pi) - causal_kl(m, pi, prior) / alpha
            for _ in range(20):
                other = random_policy(m, rng, floor=0.0)
                mix = [0.5 * b + 0.5 * o for b, o in zip(best, other, strict=True)]
                assert objective(best) >= max(objective(other), objective(mix)) - 1e-10, name


def test_T20_prior_handling_zero_prior_support_and_neutral_reward():
    rng = np.random.default_rng(4)
    m = envs.random_tree(rng, horizon=3, n_actions=3, stochastic=True)
    prior = random_policy(m, rng)
    for p in prior:
        p[:, 2] = 0.0
        p /= p.sum(axis=1, keepdims=True)
    for k in range(4):
        for cum in (False, True):
            assert all(np.all(x[:, 2] == 0.0) for x in fold(m, prior, k, cumulative=cum))
    neutral = m.with_log_q([np.zeros_like(lq) for lq in m.log_q])
    for cum in (False, True):
        assert _maxdiff(fold(neutral, prior, 3, cumulative=cum), prior) < 1e-15


def test_erratum_10_adding_log_prior_at_every_fold_breaks_folding_equals_retraining():
    """The proofs' "w.l.o.g. uniform prior": folding log p into the reward at every fold is not G^k."""
    rng = np.random.default_rng(5)
    m = envs.random_tree(rng, horizon=3, n_actions=2)
    prior = random_policy(m, rng)
    uni = uniform_policy(m)
    r = [lq + np.log(p) for lq, p in zip(m.log_q, prior, strict=True)]  # r_0 with the prior folded in
    naive = None
    for _ in range(2):  # naive: condition the uniform base on r_k, then add log p again every fold
        naive = retrain(m.with_log_q(r), uni)
        r = [lq + np.log(p) + np.log(n) for lq, p, n in zip(m.log_q, prior, naive, strict=True)]
    naive = retrain(m.with_log_q(r), uni)
    correct = retrain_sequence(m, prior, 3)[3]
    assert _maxdiff(fold(m, prior, 3), correct) < 1e-12
    assert _maxdiff(naive, correct) > 1e-3


def test_retrain_keeps_policy_where_success_is_impossible():
    m = envs.mountain_race()
    pi = [np.array([[0.5, 0.5]]), np.array([[0.0, 1.0], [0.5, 0.5]])]  # mountain: always skull, V = -inf
    g = retrain(m, pi)
    np.testing.assert_array_equal(g[1][0], [0.0, 1.0])
    np.testing.assert_allclose(g[0][0], [0.0, 1.0])


def test_folded_rewards_leave_unit_interval_and_temperature_zero_is_prior():
    m = envs.mountain_race()
    r1 = folded_log_q(m, uniform_policy(m), 1, cumulative=True)
    np.testing.assert_allclose(np.exp(r1[1][0]), [2.0, 0.0])
    np.testing.assert_allclose(np.exp(r1[0][0]), [0.8, 1.2])
    assert _maxdiff(tempered(m, uniform_policy(m), 0.0), uniform_policy(m)) == 0.0
    assert np.all(np.isneginf(scaled_log_q(m, 2.0).log_q[1][0, 1]))
