"""Fixed-seed random MDP cases shared by the coherence tests (random chain/tree MDP generators)."""

from __future__ import annotations

import numpy as np
import pytest

from tether.coherence import enumerate_trajectories, random_policy, uniform_policy
from tether.coherence.envs import random_dag, random_tree


def _cases(deterministic: bool | None = None, zero_frac: float = 0.0, seed: int = 0):
    """Trees T in 1..4, A in {2, 3} and 3-wide DAGs; uniform and random full-support priors."""
    out = []
    rng = np.random.default_rng(seed)
    for i, (T, A) in enumerate([(1, 2), (2, 3), (3, 2), (4, 2), (3, 3), (2, 2)]):
        for det in (True, False):
            if deterministic is not None and det != deterministic:
                continue
            tree = random_tree(rng, horizon=T, n_actions=A, stochastic=not det, zero_frac=zero_frac)
            dag = random_dag(rng, horizon=T + 1, n_actions=A, width=3, stochastic=not det, zero_frac=zero_frac)
            for kind, m in (("tree", tree), ("dag", dag)):
                prior = uniform_policy(m) if i % 2 == 0 else random_policy(m, rng)
                out.append((f"{kind}-T{m.horizon}-A{A}-{'det' if det else 'stoch'}", m, prior))
    return out


@pytest.fixture(scope="session")
def det_cases():
    return _cases(deterministic=True)


@pytest.fixture(scope="session")
def stoch_cases():
    return _cases(deterministic=False)


@pytest.fixture(scope="session")
def all_cases():
    return _cases()


@pytest.fixture(scope="session")
def all_cases_with_zeros():
    return _cases(zero_frac=0.2, seed=1)


def path_law(mdp, policy) -> dict[tuple, float]:
    """Trajectory law of `policy` as {(states..., actions...): probability}."""
    tr = enumerate_trajectories(mdp, policy)
    law: dict[tuple, float] = {}
    for s, a, lp in zip(tr.states, tr.actions, tr.log_prob, strict=True):
        key = tuple(s) + tuple(a)
        law[key] = law.get(key, 0.0) + float(np.exp(lp))
    return law


def tv(p: dict, q: dict) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


@pytest.fixture
def law():
    return path_law


@pytest.fixture
def tv_distance():
    return tv
