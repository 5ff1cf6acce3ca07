"""LayeredMDP validation, builders and the per-layer kernels (reference vs fast)."""

import numpy as np
import pytest
import scipy.sparse as sp

from tether.coherence import LayeredMDP, check_policy, envs, uniform_policy, unroll
from tether.coherence.mdp import log_expect_next, push_forward


def _mountain_arrays():
    P0 = np.zeros((1, 2, 2))
    P0[0, 0, 0] = P0[0, 1, 1] = 1.0
    with np.errstate(divide="ignore"):
        lq1 = np.log([[1.0, 0.0], [0.75, 0.75]])
    return [P0, np.ones((2, 2, 1))], [np.zeros((1, 2)), lq1], np.ones(1)


def test_valid_input_builds_and_reports_shapes():
    m = LayeredMDP(*_mountain_arrays())
    assert m.horizon == 2 and m.n_states == [1, 2, 1] and m.n_actions == [2, 2] and m.is_deterministic()
    np.testing.assert_array_equal(m.dense_transitions(0), _mountain_arrays()[0][0])


@pytest.mark.parametrize("mutate, message", [
    (lambda P, q, mu: P[1].__setitem__((1, 0, 0), 0.9), "transitions[1]: row (state 1, action 0) sums to 0.9"),
    (lambda P, q, mu: P[0].__setitem__((0, 1, 0), -0.5), "transitions[0]: state 0, action 1, next 0 has value -0.5"),
    (lambda P, q, mu: P[1].__setitem__((0, 1, 0), np.nan), "transitions[1]: state 0, action 1, next 0 has value nan"),
    (lambda P, q, mu: q[1].__setitem__((1, 1), np.nan), "log_q[1]: state 1, action 1 has value nan"),
    (lambda P, q, mu: q[0].__setitem__((0, 1), np.inf), "log_q[0]: state 0, action 1 has value inf"),
    (lambda P, q, mu: mu.__setitem__(0, 0.5), "init sums to 0.5"),
])
def test_invalid_input_names_layer_state_and_value(mutate, message):
    P, q, mu = _mountain_arrays()
    mutate(P, q, mu)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        LayeredMDP(P, q, mu)


def test_shape_mismatch_and_terminal_layer_errors():
    P, q, mu = _mountain_arrays()
    with pytest.raises(ValueError, match=r"log_q\[1\] has 3 states but layer 1 should have 2"):
        LayeredMDP(P, [q[0], np.zeros((3, 2))], mu)
    with pytest.raises(ValueError, match="single terminal state"):
        LayeredMDP([P[0], np.full((2, 2, 2), 0.5)], q, mu)
    with pytest.raises(ValueError, match=r"transitions\[0\]: shape"):
        LayeredMDP([np.ones((1, 3, 2)) / 2, P[1]], q, mu)
    with pytest.raises(ValueError, match="2 layers and log_q has 1"):
        LayeredMDP(P, q[:1], mu)


def test_policy_validation_names_layer_and_state():
    m = envs.mountain_race()
    pol = uniform_policy(m)
    pol[1] = np.array([[0.5, 0.5], [0.7, 0.7]])
    with pytest.raises(ValueError, match=r"policy\[1\]: state 1 sums to 1.4"):
        check_policy(m, pol)


def test_sparse_input_equals_dense_input():
    P, q, mu = _mountain_arrays()
    sparse = [sp.csr_array(p.reshape(-1, p.shape[2])) for p in P]
    a, b = LayeredMDP(P, q, mu), LayeredMDP(sparse, q, mu)
    for t in range(2):
        np.testing.assert_array_equal(a.dense_transitions(t), b.dense_transitions(t))


def test_kernels_match_dense_loops():
    rng = np.random.default_rng(3)
    m = envs.random_dag(rng, horizon=3, n_actions=3, width=4, stochastic=True)
    for t, la in enumerate(m.layers):
        P = m.dense_transitions(t)
        v = rng.normal(size=la.n_next) * 30  # wide range: exercises the per-row max shift
        v[0] = -np.inf
        with np.errstate(divide="ignore"):
            ref = np.array([[np.log(np.sum(P[s, a] * np.exp(v))) for a in range(la.n_actions)]
                            for s in range(la.n_states)])
        np.testing.assert_allclose(log_expect_next(la, v), ref, rtol=1e-12)
        d = rng.dirichlet(np.ones(la.n_states))
        pi = rng.dirichlet(np.ones(la.n_actions), size=la.n_states)
        np.testing.assert_allclose(push_forward(la, d, pi), np.einsum("s,sa,san->n", d, pi, P), atol=1e-15)


def test_unroll_copies_dynamics_per_layer_and_folds_terminal_value():
    P = np.array([[[0.5, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    log_q = np.log([[0.9, 0.8], [1.0, 0.5]])
    m = unroll(P, log_q, np.array([1.0, 0.0]), 3, terminal_log_value=np.array([0.0, np.log(0.5)]))
    assert m.horizon == 3 and m.n_states == [2, 2, 2, 1]
    np.testing.assert_array_equal(m.dense_transitions(1), P)
    expect_last = log_q + np.log(np.einsum("san,n->sa", P, [1.0, 0.5]))
    np.testing.assert_allclose(m.log_q[2], expect_last)


def test_cliff_gridworld_is_a_dag_with_goal_reachable():
    m = envs.cliff_gridworld(height=3, width=5, horizon=8, slip=0.1)
    assert m.horizon == 8 and m.n_states[:-1] == [15] * 8 and not m.is_deterministic()
    # merging: some state at layer 2 has more than one parent (state, action) pair
    parents = np.bincount(m.layers[1].indices, minlength=15)
    assert parents.max() > 1
