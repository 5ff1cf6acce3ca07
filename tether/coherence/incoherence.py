"""Incoherence measures: Boltzmann-rational policies, kappa_delta, kappa_f and iterated coherence.

Karwowski & Douglas, arXiv:2510.06545, Defs. 4.4-4.12, Props. 4.7, 4.8, 4.10, 4.13, Cor. 4.15.
`kappa_f(pi) = KL(p_pi(xi) || p_{pi^{Q,f}}(xi))` is computed in the occupancy form of Prop. 4.7,
`sum_t E_{d^pi_t} KL(pi(.|s) || pi^{Q,f}(.|s))`, with the KL taken from log-probabilities so that small
delta does not underflow. `trajectory_kl` is the enumeration form, for cross-checks on small trees.

Conventions and errata (see docs/results/coherence.md):
* `0 log 0 = 0`; KL is `+inf` where pi puts mass on an action whose target probability is 0
  (`Q = -inf`); no epsilon clipping. If every `Q(s, .) = -inf`, the target is uniform at that state.
* Cor. 4.15's proof states finiteness iff `supp(pi*) subset supp(pi)`; the correct condition for
  `lim_{delta->0} kappa_delta(pi) < inf` is `supp(pi(.|s)) subset argmax_a Q^pi(s, a)` at reachable s.
* Cor. 5.11's joint limit `kappa_delta(G^i p) -> 0` as `(delta, i) -> (0, inf)` is false; it holds along
  `delta = 1/i` (unique optimum). `kappa_1(G^i p)` is not monotone in i.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tether.coherence.mdp import LayeredMDP, check_policy
from tether.coherence.trajectories import enumerate_trajectories
from tether.coherence.values import _log, kl_rows, occupancy, row_logsumexp, soft_q_v

__all__ = ["boltzmann_policy", "incoherence", "incoherence_f", "argmax_f", "softmax_f",
           "iterated_coherence", "trajectory_kl"]


def _log_boltzmann(Q: np.ndarray, delta: float) -> np.ndarray:
    """`log softmax(Q / delta)` per row, uniform on rows where every Q is -inf; shape `(S, A)`."""
    logits = Q / delta
    dead = np.all(np.isneginf(logits), axis=1, keepdims=True)
    logits = np.where(dead, 0.0, logits)
    return logits - row_logsumexp(logits)[:, None]


def _check_delta(delta: float) -> None:
    if not (delta > 0 and np.isfinite(delta)):
        raise ValueError(f"delta: got {delta!r}, expected a finite number > 0")


def boltzmann_policy(mdp: LayeredMDP, policy: Sequence, delta: float) -> list[np.ndarray]:
    """`pi^delta(a|s) ∝ exp(Q^pi(s,a) / delta)` (Def. 4.11); no prior factor."""
    _check_delta(delta)
    Q, _ = soft_q_v(mdp, policy)
    return [np.exp(_log_boltzmann(q, delta)) for q in Q]


def _occupancy_kl(mdp: LayeredMDP, policy: list[np.ndarray], log_targets: list[np.ndarray]) -> float:
    total = 0.0
    for d, pi, lt in zip(occupancy(mdp, policy), policy, log_targets, strict=True):
        kl = kl_rows(pi, lt)  # (S,)
        with np.errstate(invalid="ignore"):
            total += float(np.sum(np.where(d > 0, d * kl, 0.0)))  # 0 * inf = 0 at unreachable states
    return max(total, 0.0)  # KL >= 0; a -1e-17 is rounding, not information


def incoherence(mdp: LayeredMDP, policy: Sequence, delta: float) -> float:
    """Boltzmann incoherence `kappa_delta(pi)` (Def. 4.12); `+inf` when pi plays a `Q = -inf` action."""
    _check_delta(delta)
    policy = check_policy(mdp, policy)
    Q, _ = soft_q_v(mdp, policy)
    return _occupancy_kl(mdp, policy, [_log_boltzmann(q, delta) for q in Q])


def argmax_f(Q: np.ndarray) -> np.ndarray:
    """Order-respecting argmax indicator (Def. 4.4): 1 on the maximisers of each row."""
    return (Q >= Q.max(axis=1, keepdims=True)).astype(np.float64)


def softmax_f(delta: float) -> Callable[[np.ndarray], np.ndarray]:
    """`f(x) = exp(x / delta)` as an order-respecting f (unnormalised is fine; rows are normalised)."""
    _check_delta(delta)
    return lambda Q: np.exp(_log_boltzmann(Q, delta))


def incoherence_f(mdp: LayeredMDP, policy: Sequence, f: Callable[[np.ndarray], np.ndarray]) -> float:
    """f-incoherence `kappa_f(pi)` (Def. 4.6) for an order-respecting `f` applied row-wise to `Q (S, A)`.

    `f` returns non-negative weights of the same shape; rows are normalised, all-zero rows become uniform.
    """
    policy = check_policy(mdp, policy)
    Q, _ = soft_q_v(mdp, policy)
    logs = []
    for q in Q:
        w = np.asarray(f(q), dtype=np.float64)
        if w.shape != q.shape or np.any(~(w >= 0)):
            raise ValueError(f"f must return non-negative weights of shape {q.shape}")
        w = np.where(w.sum(axis=1, keepdims=True) > 0, w, 1.0)
        logs.append(_log(w / w.sum(axis=1, keepdims=True)))
    return _occupancy_kl(mdp, policy, logs)


def iterated_coherence(mdp: LayeredMDP, policy: Sequence, delta: float, n: int) -> list[np.ndarray]:
    """The n-th iterate `pi^B_n` of `pi^B_{i+1} = boltzmann_policy(pi^B_i, delta)` (Def. 4.9).

    Prop. 4.10: `pi^B_T` is delta-coherent (a fixed point) for horizon T.
    """
    pi = check_policy(mdp, policy)
    for _ in range(n):
        pi = boltzmann_policy(mdp, pi, delta)
    return pi


def trajectory_kl(mdp: LayeredMDP, p1: Sequence, p2: Sequence, max_paths: int = 1_000_000) -> float:
    """`KL(p_{p1}(xi) || p_{p2}(xi))` by enumerating every trajectory (small trees/DAGs only)."""
    p1, p2 = check_policy(mdp, p1, "p1"), check_policy(mdp, p2, "p2")
    tr = enumerate_trajectories(mdp, p1, max_paths=max_paths)
    t_idx = np.arange(mdp.horizon)
    logp1 = np.zeros(len(tr.log_prob))
    logp2 = np.zeros(len(tr.log_prob))
    for t in t_idx:
        s, a = tr.states[:, t], tr.actions[:, t]
        logp1 += _log(p1[t][s, a])
        logp2 += _log(p2[t][s, a])
    w = np.exp(tr.log_prob)  # (N,) includes dynamics, which cancel in the ratio
    keep = w > 0
    with np.errstate(invalid="ignore"):
        return float(np.sum(w[keep] * (logp1[keep] - logp2[keep])))
