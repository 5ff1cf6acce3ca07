"""Effective horizon (Laidlaw et al. 2023, arXiv:2304.09853): k-QVI solvability, a closed-form bound, GORP.

Reward convention (as in Laidlaw's code): Laidlaw's quantities are ordinary *additive* expected returns.
Every function takes `reward=` explicitly: `"q"` (r := q, the convention of the incoherence authors'
experiments), `"log_q"` (r := log q, must be finite) or an explicit list of `(S_t, A_t)` reward arrays.
This is not the multiplicative control-as-inference objective of the rest of the package.

* `min_k_qvi`: smallest k such that every policy greedy on `Q^k` is optimal, where `Q^1 = Q^{random}` and
  `Q^{i+1}_t = r + E max Q^i_{t+1}` (the last layer is never backed up), checked on states reachable under
  greedy actions with tolerance 1e-4. Always <= T.
* `horizon_bound`: our paraphrase of Laidlaw's Thm. 5.4 bound (`compute_simple_effective_horizon`);
  reconstructed, medium confidence. It is vacuous (= T) on tiny MDPs.
* `gorp`, `gorp_success`, `gorp_horizon`: Greedy Over Random Policy and the Monte-Carlo estimate
  `H_hat = min_k k + log_A m_k`, with "success probability >= threshold" (inclusive) as the criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from tether.coherence.mdp import LayeredMDP
from tether.coherence.trajectories import _sample_next

__all__ = ["additive_reward", "additive_q", "qvi_q", "min_k_qvi", "horizon_bound", "gorp", "gorp_success",
           "gorp_horizon"]

Reward = Literal["q", "log_q"] | Sequence[np.ndarray]


def additive_reward(mdp: LayeredMDP, reward: Reward) -> list[np.ndarray]:
    """Resolve the reward convention into a list of finite `(S_t, A_t)` additive rewards."""
    if isinstance(reward, str):
        if reward not in ("q", "log_q"):
            raise ValueError(f"reward: got {reward!r}, expected 'q', 'log_q' or a list of arrays")
        r = [np.exp(lq) if reward == "q" else lq.copy() for lq in mdp.log_q]
    else:
        r = [np.asarray(x, dtype=np.float64) for x in reward]
    for t, (x, lq) in enumerate(zip(r, mdp.log_q, strict=True)):
        if x.shape != lq.shape or not np.all(np.isfinite(x)):
            raise ValueError(f"reward[{t}]: must be finite with shape {lq.shape}")
    return r


def _expect(mdp: LayeredMDP, t: int, v_next: np.ndarray) -> np.ndarray:
    la = mdp.layers[t]
    return np.add.reduceat(la.prob * v_next[la.indices], la.indptr[:-1]).reshape(la.n_states, la.n_actions)


def additive_q(mdp: LayeredMDP, r: list[np.ndarray], mode: Literal["random", "max", "min"]) -> list[np.ndarray]:
    """Additive Q of the uniform ("random"), best ("max") or worst ("min") policy, per layer."""
    reduce = {"random": np.mean, "max": np.max, "min": np.min}[mode]
    Q, v = [None] * mdp.horizon, np.zeros(1)
    for t in reversed(range(mdp.horizon)):
        Q[t] = r[t] + _expect(mdp, t, v)
        v = reduce(Q[t], axis=1)
    return Q


def qvi_q(mdp: LayeredMDP, r: list[np.ndarray], k: int) -> list[np.ndarray]:
    """`Q^k`: `Q^1 = Q^random`, then k-1 Bellman optimality backups (the last layer is never backed up)."""
    Q = additive_q(mdp, r, "random")
    for _ in range(k - 1):
        Q = [r[t] + _expect(mdp, t, Q[t + 1].max(axis=1)) for t in range(mdp.horizon - 1)] + [Q[-1]]
    return Q


def _greedy_reachable(mdp: LayeredMDP, Qk: list[np.ndarray], tol: float):
    """Yield (t, reachable mask (S_t,), greedy mask (S_t, A_t)) following every greedy action."""
    reach = mdp.init > 0
    for t, la in enumerate(mdp.layers):
        greedy = Qk[t] >= Qk[t].max(axis=1, keepdims=True) - tol
        yield t, reach, greedy
        w = (reach[:, None] & greedy).reshape(-1).astype(np.float64)
        reach = np.bincount(la.indices, weights=np.repeat(w, la.counts), minlength=la.n_next) > 0


def _solvable(mdp: LayeredMDP, Qk, Qstar, tol: float) -> bool:
    for t, reach, greedy in _greedy_reachable(mdp, Qk, tol):
        bad = greedy & (Qstar[t] < Qstar[t].max(axis=1, keepdims=True) - tol)
        if np.any(reach[:, None] & bad):
            return False
    return True


def min_k_qvi(mdp: LayeredMDP, reward: Reward = "q", tol: float = 1e-4) -> int:
    """Smallest k for which the MDP is k-QVI-solvable under the additive `reward` convention."""
    r = additive_reward(mdp, reward)
    Qstar = additive_q(mdp, r, "max")
    for k in range(1, mdp.horizon + 1):
        if _solvable(mdp, qvi_q(mdp, r, k), Qstar, tol):
            return k
    return mdp.horizon  # unreachable in exact arithmetic: Q^T = Q*


def horizon_bound(mdp: LayeredMDP, reward: Reward = "q", tol: float = 1e-4) -> float:
    """Closed-form effective-horizon upper bound `min(T, min_k k + log_A m_k)` (Laidlaw's Thm. 5.4; reconstructed)."""
    r = additive_reward(mdp, reward)
    T, A = mdp.horizon, max(mdp.n_actions)
    Qs, Qr, Qw = (additive_q(mdp, r, m) for m in ("max", "random", "min"))
    local = [np.max((qr - qw) * (qs - qw), axis=1) for qr, qs, qw in zip(Qr, Qs, Qw, strict=True)]  # (S_t,) sigma^2
    best = T
    for k in range(1, T + 1):
        Qk = qvi_q(mdp, r, k)
        if not _solvable(mdp, Qk, Qs, tol):
            continue
        m_k = 1.0
        for t, reach, _ in _greedy_reachable(mdp, Qk, tol):
            sigma2 = _max_ahead(mdp, local, t, k - 1)  # random rollouts start k-1 layers ahead
            opt = Qs[t] >= Qs[t].max(axis=1, keepdims=True) - tol
            sub = np.where(opt, -np.inf, Qk[t]).max(axis=1)
            gap = Qk[t].max(axis=1) - sub
            ok = reach & np.isfinite(sub) & (gap > 0)
            if np.any(ok):
                need = np.ceil(16 * sigma2[ok] / gap[ok] ** 2 * np.log(2 * T * A ** k))
                m_k = max(m_k, float(need.max()))
        best = min(best, k + np.log(m_k) / np.log(A))
    return float(min(T, best))


def _max_ahead(mdp: LayeredMDP, local: list[np.ndarray], t: int, steps: int) -> np.ndarray:
    """`max` of `local[t + steps]` over states reachable from each layer-t state within `steps` moves."""
    steps = min(steps, mdp.horizon - 1 - t)
    v = local[t + steps]
    for u in reversed(range(t, t + steps)):
        la = mdp.layers[u]
        v = np.maximum.reduceat(v[la.indices], la.indptr[:-1]).reshape(la.n_states, la.n_actions).max(axis=1)
    return v


def _rollout_returns(mdp, r, prefix, seqs, i, m, rng, sampled):
    """Returns from step i of episodes: open-loop `prefix` (R, i), then `seqs` (J, k), then uniform actions."""
    R, J, k = prefix.shape[0], seqs.shape[0], seqs.shape[1]
    n = R * J * m
    s = rng.choice(len(mdp.init), size=n, p=mdp.init)
    ret = np.zeros(n)
    for t, la in enumerate(mdp.layers):
        if t < i:
            a = np.repeat(prefix[:, t], J * m)
        elif t < i + k:
            a = np.tile(np.repeat(seqs[:, t - i], m), R)
        else:
            a = rng.integers(0, la.n_actions, size=n)
        if t >= i:
            q = r[t][s, a]
            ret += (rng.random(n) < q) if sampled else q
        s = _sample_next(la, s * la.n_actions + a, rng.random(n))
    return ret.reshape(R, J, m).mean(axis=2)  # (R, J)


def gorp(mdp: LayeredMDP, k: int, m: int, rng: np.random.Generator, *, n_runs: int = 1,
         reward: Reward = "q", sampled: bool = False) -> np.ndarray:
    """GORP(k, m) run `n_runs` times in parallel; returns the open-loop action sequences `(n_runs, T)`.

    `sampled=True` draws Bernoulli(r) step rewards (the incoherence authors' estimator; needs r in [0, 1]);
    otherwise each step earns its expected reward r. Ties between sequences are broken uniformly at random.
    """
    r = additive_reward(mdp, reward)
    T = mdp.horizon
    prefix = np.zeros((n_runs, 0), dtype=np.int64)
    for i in range(T):
        kk = min(k, T - i)
        seqs = np.stack(np.meshgrid(*[np.arange(mdp.n_actions[i + j]) for j in range(kk)], indexing="ij"),
                        -1).reshape(-1, kk)  # (J, kk) every action sequence
        vals = _rollout_returns(mdp, r, prefix, seqs, i, m, rng, sampled)  # (R, J)
        top = vals >= vals.max(axis=1, keepdims=True)
        pick = np.argmax(np.where(top, rng.random(vals.shape), -1.0), axis=1)
        prefix = np.concatenate([prefix, seqs[pick, :1]], axis=1)
    return prefix


def _open_loop_value(mdp: LayeredMDP, r: list[np.ndarray], actions: np.ndarray) -> float:
    d, total = mdp.init, 0.0
    for t, la in enumerate(mdp.layers):
        pi = np.zeros((la.n_states, la.n_actions))
        pi[:, actions[t]] = 1.0
        total += float(d @ r[t][:, actions[t]])
        w = (d[:, None] * pi).reshape(-1)
        d = np.bincount(la.indices, weights=np.repeat(w, la.counts) * la.prob, minlength=la.n_next)
    return total


def gorp_success(mdp: LayeredMDP, k: int, m: int, n_runs: int, rng: np.random.Generator, *,
                 reward: Reward = "q", sampled: bool = False, tol: float = 1e-4) -> float:
    """Fraction of GORP(k, m) runs whose action sequence attains the optimal additive return."""
    r = additive_reward(mdp, reward)
    v_star = float(mdp.init @ additive_q(mdp, r, "max")[0].max(axis=1))
    seqs = gorp(mdp, k, m, rng, n_runs=n_runs, reward=reward, sampled=sampled)
    return float(np.mean([_open_loop_value(mdp, r, a) >= v_star - tol for a in seqs]))


def gorp_horizon(mdp: LayeredMDP, rng: np.random.Generator, *, reward: Reward = "q", sampled: bool = True,
                 ks: Sequence[int] = (1, 2, 3, 4), ms: Sequence[int] = tuple(2 ** i for i in range(9)),
                 n_runs: int = 500, threshold: float = 0.5) -> float:
    """Monte-Carlo effective horizon `min_k k + log_A m_k` (inf if no (k, m) reaches `threshold`)."""
    A, best = max(mdp.n_actions), np.inf
    for k in ks:
        if k > mdp.horizon:
            break
        for m in ms:
            if gorp_success(mdp, k, m, n_runs, rng, reward=reward, sampled=sampled) >= threshold:
                best = min(best, k + np.log(m) / np.log(A))
                break
    return float(min(best, mdp.horizon))  # Laidlaw: H never exceeds T
