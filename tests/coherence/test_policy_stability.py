"""Policy stability (App. D, T24): the repaired example is 1-stable and not 2-stable."""

import numpy as np
import pytest

from tether.coherence import LayeredMDP, envs, policy_stability, retrain, uniform_policy


def test_T24_repaired_example_is_1_stable_not_2_stable():
    m = envs.policy_stability_example()
    p = uniform_policy(m)
    assert policy_stability(m, p, 1) is True
    assert policy_stability(m, p, 2) is False
    np.testing.assert_allclose(retrain(m, p)[0][0], [3 / 5, 2 / 5])  # c-a-i root policy ∝ (1/2, 1/3)


def test_erratum_7_printed_weights_show_no_conflict():
    """As printed (2/3 on the R = 1 leaf at s'_2), both look-aheads prefer s'_1: no conflict."""
    m = envs.policy_stability_example()
    P2 = m.dense_transitions(2)
    P2[1] = 0.0
    P2[1, :2, 1] = 1.0  # two of three actions to the R = 1 leaf
    P2[1, 2, 2] = 1.0
    printed = LayeredMDP([m.dense_transitions(t) if t != 2 else P2 for t in range(4)], m.log_q, m.init)
    p = uniform_policy(printed)
    assert policy_stability(printed, p, 1) and policy_stability(printed, p, 2)
    assert retrain(printed, p)[0][0, 1] > 0.5


def test_stability_requires_deterministic_dynamics():
    m = envs.stochastic_counterexample()
    with pytest.raises(ValueError, match="deterministic"):
        policy_stability(m, uniform_policy(m), 1)
