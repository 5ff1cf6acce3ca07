"""Policy stability of the control-as-inference policy (Karwowski & Douglas, arXiv:2510.06545, App. D).

The c-a-i policy `pi(a_t|s_t) ∝ p(O_{t:T} | s_t, a_t)` (prior after a_t) is *n-policy-stable* if its
preference between two actions never contradicts the preference of an n-step look-ahead: whenever
`B_n(s, a1) > B_n(s, a2)` then `B_0(s, a1) > B_0(s, a2)`, where `B_n(s, a)` is the success probability
of a followed by its best n-step continuation (a_{t+1..t+n} chosen to maximise it), then the prior.
Deterministic dynamics only ("best continuation" of an open-loop sequence is ambiguous otherwise).

Erratum: the App. D figure's weights at s'_2 are swapped; as printed, 1- and 2-step criteria
agree. `envs.policy_stability_example()` is the repaired tree: 1-stable, not 2-stable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tether.coherence.mdp import LayeredMDP, check_policy
from tether.coherence.values import soft_q_v

__all__ = ["lookahead_values", "policy_stability"]


def lookahead_values(mdp: LayeredMDP, prior: Sequence, n: int) -> list[np.ndarray]:
    """`log B_n(s, a)` per layer `(S_t, A_t)`: a, then the best n actions, then the prior."""
    if not mdp.is_deterministic():
        raise ValueError("policy stability is defined for deterministic dynamics only")
    B, _ = soft_q_v(mdp, check_policy(mdp, prior, "prior"))  # B_0 = Q^p (log space)
    for _ in range(n):
        new = []
        for t, la in enumerate(mdp.layers):
            if t == mdp.horizon - 1:
                new.append(B[t])  # nothing left to look ahead
                continue
            best_next = B[t + 1].max(axis=1)[la.indices].reshape(la.n_states, la.n_actions)
            new.append(mdp.log_q[t] + best_next)
        B = new
    return B


def policy_stability(mdp: LayeredMDP, prior: Sequence, n: int, tol: float = 1e-12) -> bool:
    """True iff the c-a-i policy of `prior` is n-policy-stable at every state."""
    B0, Bn = lookahead_values(mdp, prior, 0), lookahead_values(mdp, prior, n)
    for b0, bn in zip(B0, Bn, strict=True):
        prefers_n = bn[:, :, None] > bn[:, None, :] + tol  # (S, A, A): a1 strictly better than a2
        prefers_0 = b0[:, :, None] > b0[:, None, :] + tol
        if np.any(prefers_n & ~prefers_0):
            return False
    return True
