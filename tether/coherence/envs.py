"""Reference environments for the coherence engine, all as `LayeredMDP`s with a uniform prior in mind.

Karwowski & Douglas, arXiv:2510.06545: Ex. 1 (mountain race), Ex. 3 / App. B (stochastic counterexample),
App. D (policy stability, repaired: the printed figure's weights at s'_2 are swapped and show no conflict).
Not in the paper (ours unless noted): the deep mountain race family (d, c, slip), the success-vs-return
counterexample (from the authors' later tests), random trees/DAGs and a cliff gridworld.
Every reward is a success potential `q` stored as `log q`; "success" means every step's O_t = 1.

Errata: Fig. 2 / App. C print leaf labels "P(R) = 1/4" (gold) and "3/4" (skull); the printed
policies are only consistent with gold = 1 and skull = 0, which `mountain_race` uses. Ex. 2's delta is
missing in the tex; delta = 1 reproduces the figure (fixed point root (4/7, 3/7)).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp

from tether.coherence.mdp import LayeredMDP, unroll

__all__ = ["mountain_race", "easy_mountain_race", "deep_mountain_race", "stochastic_counterexample",
           "success_vs_return_counterexample", "policy_stability_example", "random_tree", "random_dag",
           "cliff_gridworld", "ENVS", "EnvName"]


def _log(x) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(x, dtype=np.float64))


def _binary_layer(n_states: int, slip: float) -> np.ndarray:
    """Each state s has children 2s, 2s+1; action a goes to child a w.p. 1-slip, the other w.p. slip."""
    P = np.zeros((n_states, 2, 2 * n_states))
    for a in (0, 1):
        P[np.arange(n_states), a, 2 * np.arange(n_states) + a] += 1 - slip
        P[np.arange(n_states), a, 2 * np.arange(n_states) + 1 - a] += slip
    return P


def deep_mountain_race(depth: int = 3, safe_payoff: float = 0.75, slip: float = 0.0) -> LayeredMDP:
    """Root action 0 = risky subtree, 1 = safe subtree, each a binary tree of `depth` decisions (ours, not the paper's).

    Risky: only the all-0 path has q = 1, every other leaf q = 0. Safe: every leaf q = `safe_payoff`.
    T = depth + 1. `slip` > 0 makes every non-final move land on the other child with that probability
    (a stochastic variant; the final gold/skull choice stays deterministic). depth = 1 is the mountain race.
    """
    if depth < 1 or not 0 <= safe_payoff <= 1 or not 0 <= slip <= 1:
        raise ValueError(f"need depth >= 1, safe_payoff and slip in [0, 1]; got {depth}, {safe_payoff}, {slip}")
    transitions, log_q = [_binary_layer(1, slip)], [np.zeros((1, 2))]
    for t in range(1, depth + 1):
        n = 2 ** t  # two subtrees of 2^(t-1) nodes; risky ones first
        if t < depth:
            transitions.append(_binary_layer(n, slip))
            log_q.append(np.zeros((n, 2)))
        else:
            transitions.append(np.ones((n, 2, 1)))
            q = np.zeros((n, 2))
            q[0, 0] = 1.0  # the all-0 path of the risky subtree
            q[n // 2:, :] = safe_payoff
            log_q.append(_log(q))
    return LayeredMDP(transitions, log_q, np.ones(1))


def mountain_race() -> LayeredMDP:
    """Ex. 1 / Fig. 1: root (mountain, forest); mountain -> gold q=1 / skull q=0; forest -> silver q=3/4."""
    return deep_mountain_race(1, 0.75)


def easy_mountain_race(safe_payoff: float = 0.45) -> LayeredMDP:
    """Mountain race with silver `c < 1/2`: greedy on the prior's Q is optimal (1-QVI-solvable)."""
    return deep_mountain_race(1, safe_payoff)


def stochastic_counterexample() -> LayeredMDP:
    """Ex. 3 / App. B: a_1 -> s_1 w.p. 3/4 (else s_2); a_2 -> s_1, s_2 w.p. 1/2; q(s_1)=1/3, q(s_2)=2/3."""
    P0 = np.array([[[0.75, 0.25], [0.5, 0.5]]])
    return LayeredMDP([P0, np.ones((2, 1, 1))], [np.zeros((1, 2)), _log([[1 / 3], [2 / 3]])], np.ones(1))


def success_vs_return_counterexample() -> LayeredMDP:
    """The authors' later-code counterexample: A -> a (q = 0.5); B -> good (q = 1) w.p. 0.6 or bad (q = 0.01) w.p. 0.4.

    Re-training raises S but lowers J = E sum log q here (Prop. 5.4 erratum).
    """
    P0 = np.array([[[1.0, 0.0, 0.0], [0.0, 0.6, 0.4]]])
    return LayeredMDP([P0, np.ones((3, 1, 1))], [np.zeros((1, 2)), _log([[0.5], [1.0], [0.01]])], np.ones(1))


def policy_stability_example() -> LayeredMDP:
    """App. D, repaired (the printed weights at s'_2 are swapped), with a uniform prior.

    s_0 -> s_1 -> s_2 -> s_3 (q = 1/2), or s_0 -> s'_1 -> s'_2 -> {s'_3 (q = 1), s''_3 (q = 0)}. The prior's
    1/3 vs 2/3 split at s'_2 is encoded as 3 actions (one to s'_3, two to s''_3), so the prior is uniform.
    """
    P0 = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    P1 = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    P2 = np.zeros((2, 3, 3))
    P2[0, :, 0] = 1.0
    P2[1, 0, 1] = 1.0
    P2[1, 1:, 2] = 1.0
    log_q = [np.zeros((1, 2)), np.zeros((2, 1)), np.zeros((2, 3)), _log([[0.5], [1.0], [0.0]])]
    return LayeredMDP([P0, P1, P2, np.ones((3, 1, 1))], log_q, np.ones(1))


def _random_q(rng: np.random.Generator, shape, zero_frac: float) -> np.ndarray:
    q = rng.uniform(0.0, 1.0, size=shape)
    return np.where(rng.random(shape) < zero_frac, 0.0, q)


def random_tree(rng: np.random.Generator, horizon: int = 3, n_actions: int = 2, stochastic: bool = False,
                n_children: int = 2, zero_frac: float = 0.0, leaf_only: bool = False) -> LayeredMDP:
    """Random tree MDP (state = history), q ~ U(0,1) at every (s, a) (only at the last layer if `leaf_only`).

    Deterministic: action a leads to its own child. Stochastic: each (s, a) has `n_children` own children
    with U(0,1)-normalised weights. A fraction `zero_frac` of the q's is set to exactly 0.
    """
    transitions, log_q, n = [], [], 1
    branch = n_children if stochastic else 1
    for t in range(horizon):
        last = t == horizon - 1
        n_next = 1 if last else n * n_actions * branch
        w = rng.uniform(0.0, 1.0, size=(n * n_actions, branch)) + 1e-3 if stochastic else np.ones((n * n_actions, 1))
        w = w / w.sum(axis=1, keepdims=True)
        rows = np.repeat(np.arange(n * n_actions), branch)
        cols = np.zeros_like(rows) if last else np.arange(n * n_actions * branch)
        transitions.append(sp.csr_array((w.reshape(-1), (rows, cols)), shape=(n * n_actions, n_next)))
        q = _random_q(rng, (n, n_actions), zero_frac) if (last or not leaf_only) else np.ones((n, n_actions))
        log_q.append(_log(q))
        n = n_next
    return LayeredMDP(transitions, log_q, np.ones(1))


def random_dag(rng: np.random.Generator, horizon: int = 3, n_actions: int = 2, width: int = 3,
               stochastic: bool = True, zero_frac: float = 0.0) -> LayeredMDP:
    """Random layered DAG: one start state, then `width` states per layer, states merge across paths.

    Deterministic: each (s, a) goes to a uniformly random next state. Stochastic: U(0,1)-normalised
    weights over all next-layer states. q ~ U(0,1) at every (s, a).
    """
    transitions, log_q, n = [], [], 1
    for t in range(horizon):
        n_next = 1 if t == horizon - 1 else width
        if stochastic:
            P = rng.uniform(0.0, 1.0, size=(n, n_actions, n_next)) + 1e-3
        else:
            P = np.zeros((n, n_actions, n_next))
            P[np.arange(n)[:, None], np.arange(n_actions)[None, :], rng.integers(0, n_next, (n, n_actions))] = 1
        transitions.append(P / P.sum(axis=2, keepdims=True))
        log_q.append(_log(_random_q(rng, (n, n_actions), zero_frac)))
        n = n_next
    return LayeredMDP(transitions, log_q, np.ones(1))


def cliff_gridworld(height: int = 3, width: int = 5, horizon: int = 10, slip: float = 0.1) -> LayeredMDP:
    """A small cliff walk unrolled in time (a DAG: states merge), actions up/right/down/left.

    Start bottom-left, goal bottom-right, cliff cells between them on the bottom row. Cliff cells are
    absorbing with q = 0 (success impossible); the goal is absorbing; success = being at the goal after
    `horizon` steps. With prob. `slip` a move goes in a uniformly random direction.
    """
    S = height * width
    rc = [(s // width, s % width) for s in range(S)]
    start, goal = (height - 1) * width, S - 1
    cliff = [(height - 1) * width + c for c in range(1, width - 1)]
    moves = [(-1, 0), (0, 1), (1, 0), (0, -1)]
    P = np.zeros((S, 4, S))
    for s, (r, c) in enumerate(rc):
        for a in range(4):
            if s == goal or s in cliff:
                P[s, a, s] = 1.0
                continue
            for b, (dr, dc) in enumerate(moves):
                p = (1 - slip) * (a == b) + slip / 4
                nr, nc = min(max(r + dr, 0), height - 1), min(max(c + dc, 0), width - 1)
                P[s, a, nr * width + nc] += p
    log_q = np.zeros((S, 4))
    log_q[cliff] = -np.inf
    terminal = np.full(S, -np.inf)
    terminal[goal] = 0.0
    init = np.zeros(S)
    init[start] = 1.0
    return unroll(P, log_q, init, horizon, terminal_log_value=terminal)


EnvName = Literal["mountain-race", "easy-mountain-race", "deep-mountain-race", "stochastic-counterexample",
                  "success-vs-return", "policy-stability", "random-tree", "random-dag", "cliff-gridworld"]
"""Environment names accepted by the CLI (`tether coherence sweep --env NAME`)."""
ENVS: tuple[str, ...] = get_args(EnvName)
