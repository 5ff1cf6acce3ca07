"""Finite-horizon layered MDPs: the data model every exact coherence computation runs on.

Owns `LayeredMDP` (validated transitions, log success potentials, initial law), the time-unrolling
builder `unroll`, policies as lists of `(S_t, A_t)` arrays, and the two per-layer kernels all algorithms
share: the log-expectation of a next-layer value (`log_expect_next`) and the push-forward of a state
law (`push_forward`). It knows nothing about re-training or incoherence.

Transitions are stored per layer as a CSR matrix of shape `(S_t * A_t, S_{t+1})`, so the cost of every
operation is linear in the number of (state, action, next-state) entries and a layered MDP with 1e5
states per layer fits in memory (a dense `(S_t, A_t, S_{t+1})` float64 tensor would not: 80 GB per action at
1e5 states per layer). Rewards are log-potentials `log_q` in `[-inf, +inf)`
(Karwowski & Douglas, arXiv:2510.06545, Sec. 3: `r = log q`); they may exceed 0 after folding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["LayeredMDP", "Layer", "unroll", "uniform_policy", "random_policy", "check_policy", "log_expect_next",
           "push_forward", "segment_logsumexp"]

ROW_TOL = 1e-9  # rows of transitions and policies must sum to 1 within this


@dataclass(frozen=True)
class Layer:
    """One layer's transitions as CSR over rows `s * A + a`; every row has at least one entry."""

    n_states: int
    n_actions: int
    n_next: int
    indptr: np.ndarray  # (S*A + 1,) int64
    indices: np.ndarray  # (nnz,) next-state ids
    prob: np.ndarray  # (nnz,) > 0
    log_prob: np.ndarray  # (nnz,)
    counts: np.ndarray  # (S*A,) entries per row, np.diff(indptr), cached: every sweep needs it


def _layer_from_any(t: int, P, n_states: int, n_actions: int) -> Layer:
    """Convert a dense `(S, A, S')` array or a scipy sparse `(S*A, S')` matrix into a validated Layer."""
    if sp.issparse(P):
        csr = sp.csr_array(P, dtype=np.float64)
        if csr.ndim != 2 or csr.shape[0] != n_states * n_actions:
            raise ValueError(f"transitions[{t}]: sparse shape {csr.shape} must be (S_t*A_t, S_next) = "
                             f"({n_states * n_actions}, S_next) with S_t={n_states}, A_t={n_actions} from log_q[{t}]")
        csr.sum_duplicates()
        n_next = csr.shape[1]
        indptr, indices, data = csr.indptr.astype(np.int64), csr.indices, csr.data
    else:
        dense = np.asarray(P, dtype=np.float64)
        if dense.ndim != 3 or dense.shape[:2] != (n_states, n_actions):
            raise ValueError(f"transitions[{t}]: shape {dense.shape} must be (S_t, A_t, S_next) with "
                             f"(S_t, A_t) = {(n_states, n_actions)} from log_q[{t}]")
        n_next = dense.shape[2]
        flat = dense.reshape(n_states * n_actions, n_next)
        _check_values(t, flat, n_actions)
        rows, indices = np.nonzero(flat)
        data = flat[rows, indices]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=flat.shape[0]))]).astype(np.int64)
    _check_values(t, data[None, :], n_actions, sparse_rows=None)
    keep = data > 0  # explicit zeros would give log 0 entries; drop them
    if not keep.all():
        row_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        indices, data = indices[keep], data[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=len(indptr) - 1))])
    counts = np.diff(indptr)
    sums = np.zeros(len(counts))
    nonempty = counts > 0
    sums[nonempty] = np.add.reduceat(data, indptr[:-1][nonempty])
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_TOL)
    if bad.size:
        r = bad[0]
        raise ValueError(f"transitions[{t}]: row (state {r // n_actions}, action {r % n_actions}) sums to "
                         f"{float(sums[r])}; every row must sum to 1 within {ROW_TOL}")
    return Layer(n_states, n_actions, n_next, indptr.astype(np.int64), indices.astype(np.int64),
                 data.copy(), np.log(data), counts)


def _check_values(t: int, arr: np.ndarray, n_actions: int, sparse_rows=True) -> None:
    """Reject NaN and negative transition entries, naming the layer, the row and the value."""
    bad = np.argwhere(np.isnan(arr) | (arr < 0) | np.isinf(arr))
    if bad.size:
        r, c = bad[0]
        where = f"state {r // n_actions}, action {r % n_actions}, next {c}" if sparse_rows else f"entry {c}"
        raise ValueError(f"transitions[{t}]: {where} has value {float(arr[r, c])}; entries must be finite and >= 0")


class LayeredMDP:
    """A finite-horizon layered MDP (trees, DAGs and time-unrolled MDPs alike).

    Args:
        transitions: list of T layers; `transitions[t]` is a dense `(S_t, A_t, S_{t+1})` array or a scipy
            sparse matrix of shape `(S_t * A_t, S_{t+1})` (row `s * A_t + a`); rows sum to 1.
        log_q: list of T arrays `(S_t, A_t)`, log success potentials in `[-inf, +inf)`.
        init: `(S_0,)` initial state law.
    The last layer must map to a single terminal state (`S_T = 1`). Invalid input raises `ValueError`
    naming the layer, the state and the value.
    """

    def __init__(self, transitions: Sequence, log_q: Sequence, init) -> None:
        if len(transitions) != len(log_q) or len(transitions) == 0:
            raise ValueError(f"transitions has {len(transitions)} layers and log_q has {len(log_q)}; "
                             "they must be equal and >= 1")
        self.init = np.asarray(init, dtype=np.float64)
        self.log_q = [self._check_log_q(t, lq) for t, lq in enumerate(log_q)]
        self.layers: list[Layer] = []
        n_prev = self.init.shape[0] if self.init.ndim == 1 else -1
        for t, P in enumerate(transitions):
            S, A = self.log_q[t].shape
            if S != n_prev:
                raise ValueError(f"log_q[{t}] has {S} states but layer {t} should have {n_prev} "
                                 f"(from {'init' if t == 0 else f'transitions[{t - 1}]'})")
            layer = _layer_from_any(t, P, S, A)
            self.layers.append(layer)
            n_prev = layer.n_next
        if n_prev != 1:
            raise ValueError(f"transitions[{len(transitions) - 1}] maps to {n_prev} states; the last layer "
                             "must map to a single terminal state (S_T = 1)")
        self._check_init()
        self.transitions = list(transitions)

    @staticmethod
    def _check_log_q(t: int, lq) -> np.ndarray:
        lq = np.asarray(lq, dtype=np.float64)
        if lq.ndim != 2:
            raise ValueError(f"log_q[{t}]: shape {lq.shape} must be (S_t, A_t)")
        bad = np.argwhere(np.isnan(lq) | (lq == np.inf))
        if bad.size:
            s, a = bad[0]
            raise ValueError(f"log_q[{t}]: state {s}, action {a} has value {float(lq[s, a])}; "
                             "log_q must lie in [-inf, +inf)")
        return lq

    def _check_init(self) -> None:
        mu = self.init
        bad = np.flatnonzero(np.isnan(mu) | (mu < 0) | np.isinf(mu))
        if bad.size:
            raise ValueError(f"init: state {bad[0]} has value {float(mu[bad[0]])}; entries must be finite and >= 0")
        if abs(mu.sum() - 1.0) > ROW_TOL:
            raise ValueError(f"init sums to {float(mu.sum())}; it must sum to 1 within {ROW_TOL}")

    @property
    def horizon(self) -> int:
        return len(self.layers)

    @property
    def n_states(self) -> list[int]:
        """States per layer, `S_0 .. S_T` (the last is the terminal layer, 1)."""
        return [la.n_states for la in self.layers] + [1]

    @property
    def n_actions(self) -> list[int]:
        return [la.n_actions for la in self.layers]

    @property
    def n_entries(self) -> int:
        """Number of stored (state, action, next-state) entries."""
        return int(sum(la.prob.size for la in self.layers))

    def is_deterministic(self) -> bool:
        return all(np.all(la.counts == 1) for la in self.layers)

    def with_log_q(self, log_q: Sequence) -> LayeredMDP:
        """Same dynamics and init, new rewards (no re-validation of the dynamics)."""
        new = object.__new__(LayeredMDP)
        new.init, new.layers, new.transitions = self.init, self.layers, self.transitions
        new.log_q = [self._check_log_q(t, lq) for t, lq in enumerate(log_q)]
        for t, (lq, la) in enumerate(zip(new.log_q, self.layers, strict=True)):
            if lq.shape != (la.n_states, la.n_actions):
                raise ValueError(f"log_q[{t}]: shape {lq.shape} must be {(la.n_states, la.n_actions)}")
        return new

    def dense_transitions(self, t: int) -> np.ndarray:
        """Layer t as a dense `(S_t, A_t, S_{t+1})` array (small MDPs only)."""
        la = self.layers[t]
        out = np.zeros((la.n_states * la.n_actions, la.n_next))
        rows = np.repeat(np.arange(la.n_states * la.n_actions), la.counts)
        out[rows, la.indices] = la.prob
        return out.reshape(la.n_states, la.n_actions, la.n_next)


def unroll(P, log_q, init, horizon: int, *, terminal_log_value=None) -> LayeredMDP:
    """Time-unroll a stationary finite MDP into a `LayeredMDP` with `horizon` decision layers.

    Args:
        P: `(S, A, S)` dense array or scipy sparse `(S*A, S)` transition matrix.
        log_q: `(S, A)` per-step log success potential.
        init: `(S,)` initial law.
        horizon: number of decisions T.
        terminal_log_value: optional `(S,)` log success potential of the state reached after the last
            decision (e.g. 0 at a goal, -inf elsewhere); it is folded into the last layer's `log_q`.
    """
    log_q = np.asarray(log_q, dtype=np.float64)
    S, A = log_q.shape
    flat = sp.csr_array(P.reshape(S * A, S) if not sp.issparse(P) else P, dtype=np.float64)
    to_terminal = sp.csr_array(np.ones((S * A, 1)))
    layers = [flat] * (horizon - 1) + [to_terminal]
    lqs = [log_q] * horizon
    if terminal_log_value is not None:
        v = np.asarray(terminal_log_value, dtype=np.float64)
        lqs[-1] = log_q + log_expect_next(_layer_from_any(horizon - 1, flat, S, A), v)
    return LayeredMDP(layers, lqs, init)


def uniform_policy(mdp: LayeredMDP) -> list[np.ndarray]:
    """The uniform policy, `policy[t]` of shape `(S_t, A_t)`."""
    return [np.full((la.n_states, la.n_actions), 1.0 / la.n_actions) for la in mdp.layers]


def random_policy(mdp: LayeredMDP, rng: np.random.Generator, floor: float = 0.05) -> list[np.ndarray]:
    """A random full-support policy, `U(0,1) + floor` per entry, normalised per state."""
    out = []
    for la in mdp.layers:
        w = rng.uniform(0.0, 1.0, size=(la.n_states, la.n_actions)) + floor
        out.append(w / w.sum(axis=1, keepdims=True))
    return out


def check_policy(mdp: LayeredMDP, policy: Sequence, name: str = "policy") -> list[np.ndarray]:
    """Validate a policy against the MDP; raise `ValueError` naming layer, state and value."""
    if len(policy) != mdp.horizon:
        raise ValueError(f"{name} has {len(policy)} layers; the MDP has {mdp.horizon}")
    out = []
    for t, (pi, la) in enumerate(zip(policy, mdp.layers, strict=True)):
        pi = np.asarray(pi, dtype=np.float64)
        if pi.shape != (la.n_states, la.n_actions):
            raise ValueError(f"{name}[{t}]: shape {pi.shape} must be {(la.n_states, la.n_actions)}")
        sums = pi.sum(axis=1)
        if not (pi.min() >= 0 and np.all(np.abs(sums - 1.0) <= ROW_TOL)):  # fast path; locate only on failure
            bad = np.argwhere(~(pi >= 0) | np.isinf(pi))
            if bad.size:
                s, a = bad[0]
                raise ValueError(f"{name}[{t}]: state {s}, action {a} has value {float(pi[s, a])}")
            off = np.flatnonzero(~(np.abs(sums - 1.0) <= ROW_TOL))
            raise ValueError(f"{name}[{t}]: state {off[0]} sums to {float(sums[off[0]])}; rows must sum to 1")
        out.append(pi)
    return out


def segment_logsumexp(x: np.ndarray, indptr: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """logsumexp of each CSR row segment of `x` (every segment non-empty); -inf stays -inf."""
    starts = indptr[:-1]
    m = np.maximum.reduceat(x, starts)  # (rows,) per-row max keeps large-alpha values exact
    m_safe = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - np.repeat(m_safe, np.diff(indptr) if counts is None else counts))
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(m), np.log(np.add.reduceat(e, starts)) + m_safe, m)


def log_expect_next(layer: Layer, v_next: np.ndarray) -> np.ndarray:
    """`log E_{s' ~ P(.|s,a)} exp v_next(s')`, shape `(S_t, A_t)` from `v_next` `(S_{t+1},)`."""
    x = layer.log_prob + v_next[layer.indices]  # (nnz,)
    return segment_logsumexp(x, layer.indptr, layer.counts).reshape(layer.n_states, layer.n_actions)


def push_forward(layer: Layer, d: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Next-layer state law `d'(s') = sum_{s,a} d(s) pi(a|s) P(s'|s,a)`, shape `(S_{t+1},)`."""
    w = (d[:, None] * pi).reshape(-1)  # (S*A,)
    contrib = np.repeat(w, layer.counts) * layer.prob  # (nnz,)
    return np.bincount(layer.indices, weights=contrib, minlength=layer.n_next)
