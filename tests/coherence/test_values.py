"""Exact layer sweeps against brute-force trajectory enumeration (Prop. 4.2 and the objectives)."""

import itertools

import numpy as np

from tether.coherence import (
    causal_entropy,
    enumerate_trajectories,
    envs,
    expected_return,
    occupancy,
    optimal_policy,
    optimal_return,
    optimal_success,
    random_policy,
    soft_q_v,
    success_probability,
    tempered,
    uniform_policy,
)


def test_T1_prop_4_2_soft_v_is_log_success_probability(all_cases):
    """exp V^pi(s_0) = P_pi(all O = 1) and exp Q^pi(s, a) = P(O_{t:T} = 1 | s_t = s, a_t = a), by enumeration."""
    rng = np.random.default_rng(0)
    for name, m, _prior in all_cases:
        pi = random_policy(m, rng)
        Q, V = soft_q_v(m, pi)
        tr = enumerate_trajectories(m, pi)
        w = np.exp(tr.log_prob)
        assert abs(np.sum(w * np.exp(tr.log_q_sum)) - success_probability(m, pi)) < 1e-12, name
        np.testing.assert_allclose(np.exp(V[0][0]), np.sum(w * np.exp(tr.log_q_sum)), atol=1e-12)
        for t in range(m.horizon):  # future success given (s_t, a_t), from the suffix of log q
            suffix = sum(m.log_q[u][tr.states[:, u], tr.actions[:, u]] for u in range(t, m.horizon))
            cell = tr.states[:, t] * m.n_actions[t] + tr.actions[:, t]
            num = np.bincount(cell, weights=w * np.exp(suffix), minlength=Q[t].size)
            den = np.bincount(cell, weights=w, minlength=Q[t].size)
            seen = den > 0
            np.testing.assert_allclose(num[seen] / den[seen], np.exp(Q[t]).reshape(-1)[seen], atol=1e-12,
                                       err_msg=name)


def test_return_entropy_and_occupancy_match_enumeration(all_cases_with_zeros):
    rng = np.random.default_rng(1)
    for name, m, _ in all_cases_with_zeros:
        pi = random_policy(m, rng)
        tr = enumerate_trajectories(m, pi)
        w = np.exp(tr.log_prob)
        reachable_zero = np.any(np.isneginf(tr.log_q_sum))
        J = expected_return(m, pi)
        if reachable_zero:
            assert J == -np.inf, name
        else:
            np.testing.assert_allclose(J, np.sum(w * tr.log_q_sum), rtol=1e-12, err_msg=name)
        ent = -sum(np.sum(w * np.log(pi[t][tr.states[:, t], tr.actions[:, t]])) for t in range(m.horizon))
        np.testing.assert_allclose(causal_entropy(m, pi), ent, rtol=1e-12, err_msg=name)
        for t, d in enumerate(occupancy(m, pi)):
            np.testing.assert_allclose(d, np.bincount(tr.states[:, t], weights=w, minlength=len(d)), atol=1e-14)


def _deterministic_policies(m):
    """Every deterministic Markov policy of a tiny MDP."""
    cells = [(t, s) for t, la in enumerate(m.layers) for s in range(la.n_states)]
    for choice in itertools.product(*[range(m.n_actions[t]) for t, _ in cells]):
        pol = [np.zeros((la.n_states, la.n_actions)) for la in m.layers]
        for (t, s), a in zip(cells, choice, strict=True):
            pol[t][s, a] = 1.0
        yield pol


def test_optimal_success_and_return_match_brute_force(all_cases_with_zeros):
    def n_policies(m):
        return np.prod([float(a) ** s for a, s in zip(m.n_actions, m.n_states[:-1], strict=True)])

    small = [c for c in all_cases_with_zeros if n_policies(c[1]) <= 512]
    assert len(small) >= 4
    for name, m, _ in small:
        pols = list(_deterministic_policies(m))
        np.testing.assert_allclose(optimal_success(m), max(success_probability(m, p) for p in pols), atol=1e-12)
        assert optimal_return(m) == max(expected_return(m, p) for p in pols) or np.isclose(
            optimal_return(m), max(expected_return(m, p) for p in pols), atol=1e-12), name
        np.testing.assert_allclose(success_probability(m, optimal_policy(m, "success")), optimal_success(m),
                                   atol=1e-12)


def test_log_space_survives_extreme_temperature():
    """pi_alpha at alpha = 5000 stays finite and normalised (probability space underflows near k ~ 1e3)."""
    m = envs.deep_mountain_race(3, 0.75)
    pi = tempered(m, uniform_policy(m), 5000.0)
    assert all(np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1) for p in pi)
    assert pi[0][0, 0] > 1 - 1e-12  # risky branch: 2^-3 / (2^-3 + 0.75^5000)
