"""Hypothesis-driven properties on random trees and DAGs (small max_examples, no deadline).

Mirrors the package `tether.coherence`: it cross-checks its public API (operators, incoherence, values) on
generated MDPs.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.coherence import (
    boltzmann_policy,
    fold,
    incoherence,
    optimal_success,
    random_policy,
    retrain_sequence,
    success_probability,
    tempered,
    trajectory_kl,
    uniform_policy,
)
from tether.coherence.envs import random_dag, random_tree

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def mdps(draw):
    seed = draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    T, A = draw(st.integers(1, 4)), draw(st.integers(2, 3))
    stochastic, zero_frac = draw(st.booleans()), draw(st.sampled_from([0.0, 0.25]))
    if draw(st.booleans()) and (A ** T) * (4 if stochastic else 1) ** T <= 2000:
        m = random_tree(rng, horizon=T, n_actions=A, stochastic=stochastic, zero_frac=zero_frac)
    else:
        m = random_dag(rng, horizon=T, n_actions=A, width=3, stochastic=stochastic, zero_frac=zero_frac)
    prior = uniform_policy(m) if draw(st.booleans()) else random_policy(m, rng)
    return m, prior


def _maxdiff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@SETTINGS
@given(mdps())
def test_folding_equals_retraining_and_success_is_monotone(case):
    m, prior = case
    seq = retrain_sequence(m, prior, 4)
    S = [success_probability(m, p) for p in seq]
    assert all(b >= a - 1e-12 for a, b in zip(S, S[1:], strict=False)) and S[-1] <= optimal_success(m) + 1e-12
    assert _maxdiff(fold(m, prior, 4), seq[4]) < 1e-10
    if m.is_deterministic():
        assert _maxdiff(tempered(m, prior, 4), seq[4]) < 1e-10
        assert _maxdiff(fold(m, prior, 3, cumulative=True), tempered(m, prior, 4)) < 1e-10


@SETTINGS
@given(mdps(), st.sampled_from([0.25, 1.0, 4.0]))
def test_trajectory_kl_equals_occupancy_incoherence(case, delta):
    m, prior = case
    seq = retrain_sequence(m, prior, 1)
    for pi in seq:
        assert abs(trajectory_kl(m, pi, boltzmann_policy(m, pi, delta)) - incoherence(m, pi, delta)) < 1e-11 \
            or incoherence(m, pi, delta) == trajectory_kl(m, pi, boltzmann_policy(m, pi, delta)) == np.inf
