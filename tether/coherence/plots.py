"""Figures of the exact coherence engine (matplotlib Agg, small PNGs).

Owns turning exact sequences (re-training G^k p, tempering pi_alpha, cumulative folding pi^H_j) into
figures; every number is computed exactly with the engine, nothing is sampled. Does not own the CLI.
The training-inference trade-off uses *expected* environment-sample counts (deterministic dynamics):
rejection sampling needs N / Z_k prior samples for N accepted ones from pi_{alpha=k}; re-training needs
k rounds of N rollouts plus N final draws, (k + 1) N; cumulative folding reaches alpha = 2^(j-1) after
j rounds, (j + 1) N with j = 1 + ceil(log2 k).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tether.coherence.incoherence import incoherence  # noqa: E402
from tether.coherence.mdp import LayeredMDP  # noqa: E402
from tether.coherence.operators import fold, retrain_sequence, scaled_log_q, tempered  # noqa: E402
from tether.coherence.values import expected_return, soft_q_v, success_probability  # noqa: E402

__all__ = ["plot_success_return", "plot_incoherence", "plot_routes", "plot_tradeoff", "tradeoff_costs"]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_success_return(mdp: LayeredMDP, prior: Sequence, rounds: int, path: Path, title: str) -> Path:
    """Success probability S and return J = E sum log q of G^k(p) against round k."""
    seq = retrain_sequence(mdp, prior, rounds)
    ks = np.arange(rounds + 1)
    fig, ax = plt.subplots(1, 2, figsize=(7.5, 2.8))
    ax[0].plot(ks, [success_probability(mdp, p) for p in seq], "o-")
    ax[0].set(xlabel="re-training round k", ylabel="success S", title=f"{title}: success")
    J = np.array([expected_return(mdp, p) for p in seq])
    ax[1].plot(ks[np.isfinite(J)], J[np.isfinite(J)], "o-", color="C1")
    ax[1].set(xlabel="re-training round k", ylabel="J = E sum log q", title="return (-inf points omitted)")
    return _save(fig, path)


def plot_incoherence(mdp: LayeredMDP, prior: Sequence, rounds: int, delta: float, path: Path, title: str) -> Path:
    """kappa_delta(G^k p) at fixed delta and at delta = 1/k (Cor. 5.11 as corrected)."""
    seq = retrain_sequence(mdp, prior, rounds)
    ks = np.arange(1, rounds + 1)
    fixed = [incoherence(mdp, seq[k], delta) for k in ks]
    inv = [incoherence(mdp, seq[k], 1.0 / k) for k in ks]
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    ax.semilogy(ks, np.maximum(fixed, 1e-16), "o-", label=f"kappa at delta={delta:g}")
    ax.semilogy(ks, np.maximum(inv, 1e-16), "s-", label="kappa at delta=1/k")
    ax.set(xlabel="re-training round k", ylabel="incoherence", title=f"{title}: incoherence")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _root_prob(policy) -> float:
    return float(policy[0][0, 0])


def plot_routes(cases: Sequence[tuple[str, LayeredMDP, Sequence]], max_alpha: int, path: Path) -> Path:
    """Root P(action 0) under re-training (alpha = k), tempering pi_alpha and cumulative folding (2^(j-1))."""
    fig, axes = plt.subplots(1, len(cases), figsize=(3.8 * len(cases), 3.0))
    for ax, (name, mdp, prior) in zip(np.atleast_1d(axes), cases, strict=True):
        seq = retrain_sequence(mdp, prior, max_alpha)
        alphas = np.linspace(0, max_alpha, 4 * max_alpha + 1)
        ax.plot(alphas, [_root_prob(tempered(mdp, prior, a)) for a in alphas], "-", label="tempering pi_alpha")
        ax.plot(range(max_alpha + 1), [_root_prob(p) for p in seq], "o", label="re-training G^k (alpha=k)")
        js = [j for j in range(1, 2 + int(math.log2(max_alpha)))]
        ax.plot([2 ** (j - 1) for j in js], [_root_prob(fold(mdp, prior, j, True)) for j in js], "x", ms=9,
                label="cumulative fold H_j (alpha=2^(j-1))")
        ax.set(xlabel="alpha", ylabel="root P(action 0)", title=name)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return _save(fig, path)


def tradeoff_costs(mdp: LayeredMDP, prior: Sequence, levels: np.ndarray, max_k: int = 256,
                   batch: int = 1000) -> dict[str, np.ndarray]:
    """Expected environment samples to draw `batch` trajectories at success >= level, per route (det. only)."""
    if not mdp.is_deterministic():
        raise ValueError("the training-inference correspondence needs deterministic dynamics")
    S, Z = [], []
    for k in range(max_k + 1):
        pi = tempered(mdp, prior, k)
        S.append(success_probability(mdp, pi))
        _, V = soft_q_v(scaled_log_q(mdp, k), prior)
        Z.append(float(mdp.init @ np.exp(V[0])))  # Z_k = E_p q(xi)^k, the acceptance rate
    S, Z = np.array(S), np.array(Z)
    out = {"rejection": [], "retraining": [], "cumulative_fold": []}
    for level in levels:
        hit = np.flatnonzero(S >= level - 1e-12)
        k = int(hit[0]) if hit.size else None
        out["rejection"].append(np.nan if k is None else batch / Z[k])
        folds = None if k is None else (0 if k == 0 else 1 + math.ceil(math.log2(k)))  # pi^H_j = pi_{2^(j-1)}
        out["retraining"].append(np.nan if k is None else (k + 1) * batch)  # k rounds + the final draw
        out["cumulative_fold"].append(np.nan if k is None else (folds + 1) * batch)
    return {key: np.array(v) for key, v in out.items()}


def plot_tradeoff(mdp: LayeredMDP, prior: Sequence, path: Path, title: str, batch: int = 1000,
                  served: int = 100_000) -> Path:
    """Training-inference trade-off: samples to reach a success level, three routes.

    Left: environment samples for one batch of `batch` trajectories. Right: amortised samples per served
    trajectory after serving `served` of them (training is paid once; rejection sampling on every query).
    """
    s0 = success_probability(mdp, prior)
    s_hi = success_probability(mdp, tempered(mdp, prior, 256))
    levels = np.linspace(s0, s0 + 0.995 * (s_hi - s0), 60)
    costs = tradeoff_costs(mdp, prior, levels, batch=batch)
    fig, ax = plt.subplots(1, 2, figsize=(8.0, 3.0))
    for key, style in (("rejection", "-"), ("retraining", "--"), ("cumulative_fold", ":")):
        ax[0].semilogy(levels, costs[key], style, label=key.replace("_", " "))
        per = costs[key] / batch if key == "rejection" else 1 + (costs[key] - batch) / served
        ax[1].semilogy(levels, per, style, label=key.replace("_", " "))
    ax[0].set(xlabel="target success S", ylabel="env samples", title=f"{title}: {batch} trajectories")
    ax[1].set(xlabel="target success S", ylabel="env samples per trajectory", title=f"amortised over {served:,}")
    ax[0].legend(fontsize=8)
    return _save(fig, path)
