"""Operators that sharpen a prior toward success: re-training G, tempering pi_alpha and folding F / H.

Karwowski & Douglas, arXiv:2510.06545, Def. 5.3 (G), Def. 5.6 (pi_alpha), Def. 5.7 (F), Def. 5.8 (H),
Thm. 5.9. Everything is computed exactly from the soft Q/V of `values.py`, in log space.

Errata implemented here (paper claim -> what is true; verdicts in docs/results/coherence.md):
* Thm. 5.9 (iii) prints `pi^H_k = pi_{alpha=2^k}`; with Def. 5.8's own indexing (`pi^H_{k+1}` is computed
  from `r_k`) it is `pi^H_k = pi_{alpha=2^(k-1)}` for k >= 1 (the authors' regression test agrees:
  `retrain[2^(i-1)] == fold[i]`). `fold(..., cumulative=True)` follows the definition.
* The proofs take the prior uniform "w.l.o.g."; with a non-uniform prior p the fold must add
  `log pi_k - log p` (prior entered once) and keep conditioning on p. Adding `log p` at every fold is wrong.
* Folded rewards leave `[-inf, 0]` (mountain race: q = 2 at the gold leaf after one fold); they are kept
  as log-potentials, never clipped or renormalised per state.
* Cumulative folding equals tempering at alpha = 2^(k-1) only for deterministic dynamics; F = G holds for
  any dynamics; tempering differs from G under stochastic dynamics (it conditions the dynamics).
* Cor. 5.10's return-improvement rate is a heuristic with an inconsistent step; the exact statement
  (deterministic dynamics) is `dJ(pi_alpha)/dalpha = Var_{pi_alpha}[sum_t log q]`, so
  `J(G^k p) - J(G^(k-1) p)` is the integral of that variance over alpha in [k-1, k].
* Prop. 4.16: at T = 1 `G(p)` maximises `E[log q] - KL(pi || p)`; calling it "Boltzmann-coherent" is right
  only for a uniform prior. Ex. 3 / App. B labels `G^2(p)` as "pi^F_1" and writes pi_{alpha(2)} for alpha = 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tether.coherence.mdp import LayeredMDP, check_policy
from tether.coherence.values import _log, soft_q_v

__all__ = ["retrain", "retrain_sequence", "tempered", "scaled_log_q", "folded_log_q", "fold"]


def retrain(mdp: LayeredMDP, policy: Sequence) -> list[np.ndarray]:
    """One application of the re-training operator G (Def. 5.3).

    `G(pi)(a|s) = pi(a|s) exp(Q^pi(s,a) - V^pi(s))`, i.e. pi conditioned on future success. States where
    success is impossible (`V^pi(s) = -inf`) keep their policy (the conditional is undefined there).
    """
    policy = check_policy(mdp, policy)
    Q, V = soft_q_v(mdp, policy)
    out = []
    for pi, q, v in zip(policy, Q, V, strict=True):
        dead = ~np.isfinite(v)  # (S,)
        v_safe = np.where(dead, 0.0, v)
        new = np.exp(_log(pi) + q - v_safe[:, None])  # (S, A); log space avoids W underflow at large k
        new = new / new.sum(axis=1, keepdims=True).clip(min=1e-300)  # renormalise rounding only
        out.append(np.where(dead[:, None], pi, new))
    return out


def retrain_sequence(mdp: LayeredMDP, prior: Sequence, rounds: int) -> list[list[np.ndarray]]:
    """`[G^0 p, G^1 p, ..., G^rounds p]`."""
    seq = [check_policy(mdp, prior, "prior")]
    for _ in range(rounds):
        seq.append(retrain(mdp, seq[-1]))
    return seq


def scaled_log_q(mdp: LayeredMDP, alpha: float) -> LayeredMDP:
    """The MDP with `q -> q^alpha` (`0^0 = 1`, so alpha = 0 removes the evidence)."""
    if not alpha >= 0:
        raise ValueError(f"alpha: got {alpha!r}, expected a number >= 0")
    with np.errstate(invalid="ignore"):
        lqs = [np.where(np.isneginf(lq), -np.inf if alpha > 0 else 0.0, alpha * lq) for lq in mdp.log_q]
    return mdp.with_log_q(lqs)


def tempered(mdp: LayeredMDP, prior: Sequence, alpha: float) -> list[np.ndarray]:
    """Temperature route `pi_alpha(a|s) = p(a|s, O^alpha_{t:T} = 1)` with `P(O^alpha = 1) = q^alpha` (Def. 5.6).

    A single conditioning of the prior. Equals `G^k(p)` at alpha = k for deterministic dynamics only.
    """
    return retrain(scaled_log_q(mdp, alpha), prior)


def folded_log_q(mdp: LayeredMDP, prior: Sequence, k: int, cumulative: bool = False) -> list[np.ndarray]:
    """The reward `r_k` after k folds, as log-potentials (Defs. 5.7 and 5.8, prior-corrected).

    `r_0 = log q`; `pi_{j+1} = G_{r_j}(p)`; non-cumulative `r_{j+1} = r_0 + log pi_{j+1} - log p`,
    cumulative `r_{j+1} = r_j + log pi_{j+1} - log p`. Where `p = 0` the shift is 0 (those actions are
    never taken, since conditioning keeps zero-prior actions at zero).
    """
    if k < 0:
        raise ValueError(f"k: got {k!r}, expected an integer >= 0")
    prior = check_policy(mdp, prior, "prior")
    r = [lq.copy() for lq in mdp.log_q]
    for _ in range(k):
        pi = retrain(mdp.with_log_q(r), prior)
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = [np.where(p > 0, _log(pk) - _log(p), 0.0) for pk, p in zip(pi, prior, strict=True)]
        base = r if cumulative else mdp.log_q
        r = [b + s for b, s in zip(base, shift, strict=True)]
    return r


def fold(mdp: LayeredMDP, prior: Sequence, k: int, cumulative: bool = False) -> list[np.ndarray]:
    """The k-th folded policy: `pi^F_k` (non-cumulative) or `pi^H_k` (cumulative); `k = 0` is the prior.

    `pi^F_k = G^k(p)` under any dynamics; `pi^H_k = pi_{alpha=2^(k-1)}` under deterministic dynamics
    (the off-by-one corrected Thm. 5.9 (iii)).
    """
    if k == 0:
        return check_policy(mdp, prior, "prior")
    return retrain(mdp.with_log_q(folded_log_q(mdp, prior, k - 1, cumulative)), prior)
