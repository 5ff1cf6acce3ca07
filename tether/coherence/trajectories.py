"""Trajectories: exact enumeration (small MDPs) and vectorised sampling, plus the sampling-based routes.

Owns `enumerate_trajectories` (the brute-force oracle the exact layer sweeps are tested against),
`sample_trajectories`, the inference-time route `rejection_sample` (accept a prior sample with probability
`q(xi)^k`, Karwowski & Douglas arXiv:2510.06545 end of §5) and the training-time route `retrain_mc`
(filtered behaviour cloning, a Monte-Carlo estimate of G, as the authors' code does).

In a tabular model the "goal-conditioned refit" form of G (fit p(a | s, O) on all rollouts with their
outcome labels, then condition on O = 1) gives exactly the same estimator as filtered behaviour cloning
(count actions in successful rollouts), so `retrain_mc` implements the latter only.
Rejection sampling yields the law of `pi_{alpha=k}`, which equals `G^k(p)` only for deterministic dynamics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tether.coherence.mdp import Layer, LayeredMDP, check_policy

__all__ = ["Trajectories", "enumerate_trajectories", "sample_trajectories", "rejection_sample", "retrain_mc"]


class Trajectories(NamedTuple):
    """A batch of N trajectories; `states[:, T]` is the terminal state 0."""

    states: np.ndarray  # (N, T+1) int
    actions: np.ndarray  # (N, T) int
    log_prob: np.ndarray  # (N,) log probability of the path (init, policy, dynamics); 0 for samples
    log_q_sum: np.ndarray  # (N,) sum_t log q(s_t, a_t)


def enumerate_trajectories(mdp: LayeredMDP, policy: Sequence, max_paths: int = 1_000_000) -> Trajectories:
    """Every trajectory with positive probability under `policy`, with its exact log probability."""
    policy = check_policy(mdp, policy)
    s = np.flatnonzero(mdp.init > 0)
    with np.errstate(divide="ignore"):
        logp = np.log(mdp.init[s])
    hist_s, hist_a, lq = [s], [], np.zeros(len(s))
    for t, la in enumerate(mdp.layers):
        pi = policy[t]
        path, a = np.nonzero(pi[s] > 0)  # expand each path by its played actions
        row = s[path] * la.n_actions + a
        counts = la.counts[row]
        if counts.sum() > max_paths:
            raise ValueError(f"enumeration needs more than max_paths={max_paths} paths at layer {t}")
        path2 = np.repeat(path, counts)
        row2 = np.repeat(row, counts)
        entry = la.indptr[row2] + (np.arange(len(row2)) - np.repeat(np.cumsum(counts) - counts, counts))
        a2 = np.repeat(a, counts)
        logp = logp[path2] + np.log(pi[s[path2], a2]) + la.log_prob[entry]
        lq = lq[path2] + mdp.log_q[t][s[path2], a2]
        hist_s = [h[path2] for h in hist_s]
        hist_a = [h[path2] for h in hist_a] + [a2]
        s = la.indices[entry]
        hist_s.append(s)
    return Trajectories(np.stack(hist_s, 1), np.stack(hist_a, 1), logp, lq)


def _sample_next(la: Layer, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of next states for CSR rows `row` `(N,)` with uniforms `u` `(N,)`."""
    row_of = np.repeat(np.arange(len(la.counts)), la.counts)
    cum = np.cumsum(la.prob)
    start_cum = np.concatenate([[0.0], cum])[la.indptr[:-1]]
    within = cum - np.repeat(start_cum, la.counts)  # (nnz,) cumulative inside each row
    key = row_of + within  # globally sorted: row r spans (r, r + 1]
    idx = np.searchsorted(key, row + u, side="right")
    idx = np.clip(idx, la.indptr[row], la.indptr[row + 1] - 1)  # guard rows summing to 1 - 1e-9
    return la.indices[idx]


def sample_trajectories(mdp: LayeredMDP, policy: Sequence, n: int, rng: np.random.Generator) -> Trajectories:
    """n i.i.d. trajectories of the policy, vectorised per layer."""
    policy = check_policy(mdp, policy)
    s = rng.choice(len(mdp.init), size=n, p=mdp.init)
    states, actions, lq = [s], [], np.zeros(n)
    for t, la in enumerate(mdp.layers):
        cdf = np.cumsum(policy[t][s], axis=1)  # (n, A)
        a = np.minimum((rng.random(n)[:, None] >= cdf).sum(axis=1), la.n_actions - 1)
        lq = lq + mdp.log_q[t][s, a]
        s = _sample_next(la, s * la.n_actions + a, rng.random(n))
        states.append(s)
        actions.append(a)
    return Trajectories(np.stack(states, 1), np.stack(actions, 1), np.zeros(n), lq)


def _require_probabilities(mdp: LayeredMDP) -> None:
    for t, lq in enumerate(mdp.log_q):
        if np.any(lq > 0):
            s, a = np.argwhere(lq > 0)[0]
            raise ValueError(f"log_q[{t}]: state {s}, action {a} has value {float(lq[s, a])} > 0; sampling "
                             "outcomes needs q <= 1 (rescale folded rewards first)")


def rejection_sample(mdp: LayeredMDP, prior: Sequence, k: float, n: int,
                     rng: np.random.Generator) -> tuple[Trajectories, float]:
    """Inference-time route: draw n prior trajectories, keep each with probability `q(xi)^k`.

    Returns the accepted trajectories and the acceptance rate (an estimate of `Z_k = E_p q(xi)^k`). The
    accepted law is that of `pi_{alpha=k}` (= `G^k p` under deterministic dynamics).
    """
    _require_probabilities(mdp)
    tr = sample_trajectories(mdp, prior, n, rng)
    with np.errstate(invalid="ignore"):
        log_accept = np.where(np.isneginf(tr.log_q_sum), -np.inf, k * tr.log_q_sum)
    keep = np.log(rng.random(n)) < log_accept
    return Trajectories(*(x[keep] for x in tr)), float(keep.mean())


def retrain_mc(mdp: LayeredMDP, policy: Sequence, n: int, rng: np.random.Generator,
               prior_strength: float = 0.0) -> list[np.ndarray]:
    """Monte-Carlo re-training: n on-policy rollouts, outcome `O ~ Bernoulli(prod q)`, refit on successes.

    New `pi(a|s) = (count(s, a | success) + eps * pi(a|s)) / (count(s | success) + eps)` with
    `eps = prior_strength` (a Dirichlet prior centred on pi); states without successful data keep pi.
    Converges to `G(pi)` as n grows (any dynamics).
    """
    policy = check_policy(mdp, policy)
    _require_probabilities(mdp)
    tr = sample_trajectories(mdp, policy, n, rng)
    ok = np.log(rng.random(n)) < tr.log_q_sum  # realised success of each rollout
    out = []
    for t, la in enumerate(mdp.layers):
        cell = tr.states[ok, t] * la.n_actions + tr.actions[ok, t]
        counts = np.bincount(cell, minlength=la.n_states * la.n_actions).reshape(la.n_states, la.n_actions)
        num = counts + prior_strength * policy[t]
        den = num.sum(axis=1, keepdims=True)
        out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), policy[t]))
    return out
