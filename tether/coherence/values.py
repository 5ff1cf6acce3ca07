"""Exact values of a policy on a `LayeredMDP`: soft Q/V, occupancy, success, return, entropy, optima.

Owns the backward (soft Q/V, optimal values) and forward (occupancy) layer sweeps, in log space where a
product of probabilities is involved. Does not own any operator on policies (see `operators.py`).

Two objectives are kept apart on purpose (the authors' early code conflated them; arXiv:2510.06545):
* success probability `S(pi) = P_pi(O_{1:T} = 1) = sum_s mu(s) exp V^pi_0(s)` (multiplicative in q);
* return `J(pi) = E_pi sum_t log q(s_t, a_t)`, which is `-inf` as soon as a `q = 0` step is reachable.
Soft Q/V follow Def. 4.1: the action expectation is under the policy itself, not a prior, so
`Q^pi(s,a) = log p_pi(O_{t:T} = 1 | s, a)` and `V^pi(s) = log p_pi(O_{t:T} = 1 | s)` (Prop. 4.2).

Errata (verdicts in docs/results/coherence.md): Prop. 5.4 ("strong return improvement", J monotone under
re-training) holds for S under any dynamics (the proof shows V^{G(pi)} >= V^pi at every state) but for J only
under deterministic dynamics (counterexample: `envs.success_vs_return_counterexample`). Prop. 5.5's "optimal"
limit maximises S, which is not the J-optimal policy in stochastic MDPs. The authors' early code used E[sum of
Bernoulli outcomes] as "return"; here J is always E sum log q and S is separate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tether.coherence.mdp import LayeredMDP, check_policy, log_expect_next, push_forward

__all__ = ["soft_q_v", "occupancy", "success_probability", "expected_return", "causal_entropy",
           "causal_kl", "kl_rows", "row_logsumexp", "optimal_values", "optimal_success", "optimal_return",
           "optimal_policy"]


def row_logsumexp(x: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis; rows that are all -inf give -inf (no NaN)."""
    m = x.max(axis=-1)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(m), np.log(np.exp(x - m_safe[..., None]).sum(-1)) + m_safe, m)


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


def soft_q_v(mdp: LayeredMDP, policy: Sequence) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Policy-weighted soft Q and V (Def. 4.1), log space.

    Returns:
        Q: list of T arrays `(S_t, A_t)`, `Q[t] = log q + log E_{s'} exp V[t+1](s')`.
        V: list of T arrays `(S_t,)`, `V[t] = log E_{a ~ pi} exp Q[t]`; the terminal value is 0 and is
            not included. `-inf` marks states where success is impossible under the policy.
    """
    policy = check_policy(mdp, policy)
    Q: list[np.ndarray] = [None] * mdp.horizon  # type: ignore[list-item]
    V: list[np.ndarray] = [None] * mdp.horizon  # type: ignore[list-item]
    v_next = np.zeros(1)
    for t in reversed(range(mdp.horizon)):
        Q[t] = mdp.log_q[t] + log_expect_next(mdp.layers[t], v_next)  # (S_t, A_t)
        V[t] = row_logsumexp(_log(policy[t]) + Q[t])  # (S_t,); log 0 + Q = -inf drops unplayed actions
        v_next = V[t]
    return Q, V


def occupancy(mdp: LayeredMDP, policy: Sequence) -> list[np.ndarray]:
    """State marginals `d_t` under the policy, list of T arrays `(S_t,)` (each sums to 1)."""
    policy = check_policy(mdp, policy)
    d = [mdp.init]
    for t in range(mdp.horizon - 1):
        d.append(push_forward(mdp.layers[t], d[t], policy[t]))
    return d


def success_probability(mdp: LayeredMDP, policy: Sequence) -> float:
    """`S(pi) = P_pi(all O_t = 1) = sum_s mu(s) exp V^pi_0(s)` (exact; monotone under re-training)."""
    _, V = soft_q_v(mdp, policy)
    return float(np.dot(mdp.init, np.exp(V[0])))


def _occupancy_sum(mdp: LayeredMDP, policy: Sequence, per_action: list[np.ndarray]) -> float:
    """`sum_t sum_{s,a} d_t(s) pi(a|s) x_t(s,a)` with `0 * (+-inf) = 0`."""
    total = 0.0
    for d, pi, x in zip(occupancy(mdp, policy), policy, per_action, strict=True):
        w = d[:, None] * np.asarray(pi)  # (S_t, A_t) joint law of (s_t, a_t)
        total += float(np.sum(np.where(w > 0, w * np.where(w > 0, x, 0.0), 0.0)))
        if np.any((w > 0) & np.isinf(x)):
            return float(np.sign(x[(w > 0) & np.isinf(x)][0]) * np.inf)
    return total


def expected_return(mdp: LayeredMDP, policy: Sequence) -> float:
    """`J(pi) = E_pi sum_t log q(s_t, a_t)`; `-inf` if a `q = 0` step has positive probability."""
    policy = check_policy(mdp, policy)
    return _occupancy_sum(mdp, policy, mdp.log_q)


def causal_entropy(mdp: LayeredMDP, policy: Sequence) -> float:
    """`sum_t E_{d_t} H(pi(.|s_t))` in nats."""
    policy = check_policy(mdp, policy)
    return _occupancy_sum(mdp, policy, [-_log(np.asarray(p)) for p in policy])


def kl_rows(p: np.ndarray, log_r: np.ndarray) -> np.ndarray:
    """Per-row `KL(p || r)` from probabilities `p` and log-probabilities `log_r`, shape `(S,)`.

    `0 log 0 = 0`; `+inf` where `p > 0` and `r = 0` (no epsilon clipping, as the authors' later code).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (_log(p) - log_r), 0.0)  # (S, A); p>0, log_r=-inf gives +inf
    return terms.sum(axis=1)


def causal_kl(mdp: LayeredMDP, p1: Sequence, p2: Sequence) -> float:
    """`sum_t E_{d^{p1}_t} KL(p1(.|s) || p2(.|s))`, the trajectory KL in occupancy form (Prop. 4.7)."""
    p1, p2 = check_policy(mdp, p1, "p1"), check_policy(mdp, p2, "p2")
    total = 0.0
    for d, a, b in zip(occupancy(mdp, p1), p1, p2, strict=True):
        kl = kl_rows(a, _log(b))
        with np.errstate(invalid="ignore"):
            total += float(np.sum(np.where(d > 0, d * kl, 0.0)))  # unreachable states contribute 0 even if inf
    return total


def optimal_values(mdp: LayeredMDP, objective: str = "success") -> list[np.ndarray]:
    """Optimal Q per layer: max-product DP in log space ("success") or max-sum DP on log q ("return")."""
    if objective not in ("success", "return"):
        raise ValueError(f"objective: got {objective!r}, expected 'success' or 'return'")
    Q: list[np.ndarray] = [None] * mdp.horizon  # type: ignore[list-item]
    v_next = np.zeros(1)
    for t in reversed(range(mdp.horizon)):
        la = mdp.layers[t]
        if objective == "success":
            nxt = log_expect_next(la, v_next)
        else:  # E_{s'} v(s'): prob > 0 always, so -inf propagates without NaN
            nxt = np.add.reduceat(la.prob * v_next[la.indices], la.indptr[:-1]).reshape(la.n_states, la.n_actions)
        Q[t] = mdp.log_q[t] + nxt
        v_next = Q[t].max(axis=1)
    return Q


def optimal_success(mdp: LayeredMDP) -> float:
    """`S* = max_pi P_pi(all O = 1)`."""
    return float(np.dot(mdp.init, np.exp(optimal_values(mdp, "success")[0].max(axis=1))))


def optimal_return(mdp: LayeredMDP) -> float:
    """`J* = max_pi E_pi sum_t log q` (may be -inf)."""
    v0 = optimal_values(mdp, "return")[0].max(axis=1)
    w = mdp.init > 0
    return float(np.sum(mdp.init[w] * v0[w])) if np.all(np.isfinite(v0[w])) else -np.inf


def optimal_policy(mdp: LayeredMDP, objective: str = "success", tol: float = 1e-12) -> list[np.ndarray]:
    """Uniform over the optimal actions (within `tol`) of the chosen objective, at every state."""
    out = []
    for Q in optimal_values(mdp, objective):
        best = Q.max(axis=1, keepdims=True)
        mask = (Q >= best - tol) | (best == -np.inf)
        out.append(mask / mask.sum(axis=1, keepdims=True))
    return out
