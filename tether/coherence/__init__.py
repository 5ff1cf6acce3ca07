"""Exact tabular coherence engine for Karwowski & Douglas, arXiv:2510.06545 (see docs/results/coherence.md).

Each module docstring lists the paper errata it implements (the printed claim vs what is true).
"""

from tether.coherence import envs
from tether.coherence.horizon import gorp, gorp_horizon, gorp_success, horizon_bound, min_k_qvi
from tether.coherence.incoherence import (
    argmax_f,
    boltzmann_policy,
    incoherence,
    incoherence_f,
    iterated_coherence,
    softmax_f,
    trajectory_kl,
)
from tether.coherence.mdp import LayeredMDP, check_policy, random_policy, uniform_policy, unroll
from tether.coherence.operators import fold, folded_log_q, retrain, retrain_sequence, tempered
from tether.coherence.policy_stability import policy_stability
from tether.coherence.trajectories import (
    Trajectories,
    enumerate_trajectories,
    rejection_sample,
    retrain_mc,
    sample_trajectories,
)
from tether.coherence.values import (
    causal_entropy,
    causal_kl,
    expected_return,
    occupancy,
    optimal_policy,
    optimal_return,
    optimal_success,
    soft_q_v,
    success_probability,
)

__all__ = [
    "LayeredMDP", "unroll", "uniform_policy", "random_policy", "check_policy", "envs",
    "soft_q_v", "occupancy", "success_probability", "expected_return", "causal_entropy", "causal_kl",
    "optimal_success", "optimal_return", "optimal_policy",
    "retrain", "retrain_sequence", "tempered", "fold", "folded_log_q",
    "boltzmann_policy", "incoherence", "incoherence_f", "argmax_f", "softmax_f", "iterated_coherence", "trajectory_kl",
    "min_k_qvi", "horizon_bound", "gorp", "gorp_success", "gorp_horizon",
    "Trajectories", "enumerate_trajectories", "sample_trajectories", "rejection_sample", "retrain_mc",
    "policy_stability",
]
