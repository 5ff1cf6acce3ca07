"""Scaling of the exact coherence engine: `retrain` + `incoherence` on layered MDPs of growing size.

Layered random MDPs with S states per layer, horizon 20, 4 actions and 2 random successors per
(state, action); one start state and one terminal state. Reports wall time per size (median of repeats,
build time excluded), the fitted exponent b in time ∝ entries^b, states per second at the largest size,
and the speed ratio against vectorised brute-force trajectory enumeration (G by conditioning enumerated
paths on success, kappa_1 by the trajectory KL) on trees (paths ~ leaves, so the ratio is only ~T) and on a
layered DAG (paths grow exponentially while states do not). `enumeration_ratio` is the stochastic tree's.

Run: OMP_NUM_THREADS=1 python benchmarks/coherence_scale.py [--quick]
Prints progress lines to stderr and one JSON line to stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from tether.coherence import (  # noqa: E402
    LayeredMDP,
    boltzmann_policy,
    enumerate_trajectories,
    incoherence,
    retrain,
    trajectory_kl,
    uniform_policy,
)
from tether.coherence.envs import random_dag, random_tree  # noqa: E402


def layered(rng: np.random.Generator, S: int, T: int = 20, A: int = 4) -> LayeredMDP:
    """Random layered MDP: S states per inner layer, 2 successors per (s, a) with random weights."""
    transitions, log_q = [], []
    for t in range(T):
        n, n_next = (1 if t == 0 else S), (1 if t == T - 1 else S)
        rows = n * A
        w = rng.uniform(0.05, 0.95, size=rows)
        data = np.stack([w, 1 - w], 1).reshape(-1)
        cols = rng.integers(0, n_next, size=2 * rows)
        transitions.append(sp.csr_array((data, cols, np.arange(0, 2 * rows + 1, 2)), shape=(rows, n_next)))
        log_q.append(np.log(rng.uniform(0.5, 1.0, size=(n, A))))
    return LayeredMDP(transitions, log_q, np.ones(1))


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def engine_step(m: LayeredMDP, pi) -> float:
    """One re-training step and the Boltzmann incoherence of its result: the benchmarked unit of work."""
    return incoherence(m, retrain(m, pi), 1.0)


def enumeration_step(m: LayeredMDP, pi) -> float:
    """The same quantities by brute force over enumerated trajectories."""
    tr = enumerate_trajectories(m, pi)
    w = np.exp(tr.log_prob + tr.log_q_sum)  # (N,) joint weight of path and success
    g = []
    for t, la in enumerate(m.layers):
        cell = tr.states[:, t] * la.n_actions + tr.actions[:, t]
        counts = np.bincount(cell, weights=w, minlength=la.n_states * la.n_actions).reshape(la.n_states, -1)
        tot = counts.sum(1, keepdims=True)
        g.append(np.where(tot > 0, counts / np.where(tot > 0, tot, 1), pi[t]))
    return trajectory_kl(m, g, boltzmann_policy(m, g, 1.0))


def scaling(sizes: list[int], rng: np.random.Generator) -> list[dict]:
    rows = []
    for S in sizes:
        m = layered(rng, S)
        pi = uniform_policy(m)
        engine_step(m, pi)  # warm-up
        sec = _timed(lambda m=m, pi=pi: engine_step(m, pi), 3 if S <= 30_000 else 2)
        rows.append({"states_per_layer": S, "states": int(sum(m.n_states)), "entries": m.n_entries, "seconds": sec})
        print(f"[scale] S={S:>7} entries={m.n_entries:>9} retrain+incoherence {sec:.3f} s", file=sys.stderr)
    return rows


def enumeration_ratios(rng: np.random.Generator, quick: bool) -> list[dict]:
    cases = [("binary det tree", random_tree, dict(horizon=12 if quick else 16, n_actions=2, stochastic=False)),
             ("binary stoch tree, 2 children", random_tree, dict(horizon=6 if quick else 8, n_actions=2,
                                                                  stochastic=True)),
             ("stoch DAG, width 4, 2 actions", random_dag, dict(horizon=5 if quick else 7, n_actions=2, width=4))]
    out = []
    for name, build, kw in cases:
        m = build(rng, **kw)
        pi = uniform_policy(m)
        a, b = engine_step(m, pi), enumeration_step(m, pi)
        assert abs(a - b) < 1e-9 * max(1.0, abs(a)), (a, b)
        fast = _timed(lambda m=m, pi=pi: engine_step(m, pi), 5)
        slow = _timed(lambda m=m, pi=pi: enumeration_step(m, pi), 3)
        paths = len(enumerate_trajectories(m, pi).log_prob)
        out.append({"tree": name, "horizon": kw["horizon"], "states": int(sum(m.n_states)), "paths": paths,
                    "engine_s": fast, "enumeration_s": slow, "ratio": slow / fast})
        print(f"[enum] {name} T={kw['horizon']} paths={paths} engine {fast * 1e3:.2f} ms, "
              f"enumeration {slow * 1e3:.1f} ms, ratio {slow / fast:.1f}x", file=sys.stderr)
    return out


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    rng = np.random.default_rng(0)
    sizes = [1_000, 3_000, 10_000] if quick else [1_000, 3_000, 10_000, 30_000, 100_000]
    rows = scaling(sizes, rng)
    big = [r for r in rows if r["states_per_layer"] >= 3_000]  # above the fixed per-layer overhead
    slope = float(np.polyfit(np.log([r["entries"] for r in big]), np.log([r["seconds"] for r in big]), 1)[0])
    enum = enumeration_ratios(rng, quick)
    largest = rows[-1]
    print(json.dumps({
        "states_per_second": largest["states"] / largest["seconds"],
        "largest": largest,
        "enumeration_ratio": enum[1]["ratio"],  # largest stochastic tree; all cases under "enumeration"
        "enumeration": enum,
        "scaling_exponent": slope,
        "sizes": rows,
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
