"""Offline phase, re-training rounds, rejection and folding routes for the neural model, scored exactly.

Karwowski & Douglas, arXiv:2510.06545, §5 (operator G, Thm. 5.9, the training-inference trade-off);
the design is ours, not the paper's (docs/results/coherence.md, "Neural coherence"). One seed of `run_seed` does:

1. Offline: N trajectories of a behaviour prior p, outcome `O ~ Bernoulli(prod q)`, cross-entropy on
   `(O, history) -> action`. Read out at `O = 1`: neural `pi_1 ≈ G(p)` (round k = 1).
2. Round k = 2..K: N rollouts of neural `pi_{k-1}` (the model conditioned on `O = 1`), labelled with
   their true outcomes; fine-tune on these fresh rows only (successes and failures,
   `mode="goal_conditioned"`) or on the successes only (`mode="filtered_bc"`, same target). Old data
   are never mixed in: that would make the implied prior a mixture and break `pi_k ≈ G^k p`.
3. Rejection route at k: sample from the offline model's behaviour branch (NULL outcome token, ≈ p),
   accept with probability `q(xi)^k`; the accepted law is `pi_{alpha=k}` (any dynamics). Its action
   frequencies per state are the route's tabular policy (no network is fitted to the accepted paths).
4. Cumulative folding (deterministic envs): round j rolls out the current model, accepts with probability
   `q(xi)^{alpha_j}` and fine-tunes on the accepted paths, so alpha doubles each round
   (`pi_{alpha} q^alpha ∝ p q^{2 alpha}` needs deterministic dynamics). This sampling form of Def. 5.8
   is ours: the folded reward itself exceeds 1 and cannot label outcomes. Exact target: `fold(..., True)`.

After each round the network is read out as a tabular policy (`neural.read_policy`) and scored with the
exact engine: success, return, incoherence at delta = 1 and 1/k, the one-step fidelity
`TV_occ(pi_k, G(pi_{k-1}))` and the gaps to `G^k p` and `pi_{alpha=k}`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tether.coherence import envs
from tether.coherence.incoherence import incoherence
from tether.coherence.mdp import LayeredMDP, uniform_policy
from tether.coherence.neural.model import NULL, SequenceModel, all_paths, encode, fit, prune, read_policy
from tether.coherence.operators import fold, retrain, retrain_sequence, scaled_log_q, tempered
from tether.coherence.trajectories import Trajectories, rejection_sample, sample_trajectories
from tether.coherence.values import expected_return, occupancy, success_probability
from tether.core.config import ConfigError, to_dict
from tether.core.rundir import write_json_atomic
from tether.core.signals import StopRequested, graceful_stop

__all__ = ["NeuralConfig", "make_env", "behaviour_prior", "occupancy_tv", "count_policy", "run_seed",
           "run", "aggregate"]

NeuralEnvName = Literal["mountain-race", "easy-mountain-race", "deep-mountain-race", "stochastic-counterexample",
                        "success-vs-return"]
"""The environments the neural re-training supports (a subset of `tether.coherence.envs.EnvName`)."""


@dataclass(frozen=True)
class NeuralConfig:
    """`tether coherence neural`: a goal-conditioned sequence model re-trained on its own rollouts."""

    env: NeuralEnvName = "mountain-race"
    """Environment (a small tree-like LayeredMDP of the coherence engine)."""
    depth: int = 3
    """Depth d of the deep mountain race (T = d + 1)."""
    safe_payoff: float = 0.75
    """Success probability c of the safe branch (mountain races)."""
    slip: float = 0.0
    """Slip probability of the deep mountain race (> 0 makes it stochastic)."""
    rounds: int = 6
    """K: rounds 1..K, where round 1 is the offline goal-conditioned model (k applications of G)."""
    seeds: int = 3
    """Number of seeds (seed, seed + 1, ...)."""
    seed: int = 0
    """First seed."""
    rollouts: int = 4000
    """N: trajectories per round (offline data and each re-training round)."""
    steps_offline: int = 400
    """Full-batch Adam steps of the offline phase."""
    steps_round: int = 150
    """Full-batch Adam steps per re-training round (warm start from the previous round)."""
    lr: float = 1e-2
    """Adam learning rate (the transformer needs about 3e-3: at 1e-2 it stays near the uniform policy)."""
    hidden: int = 64
    """Width of the model."""
    arch: Literal["gru", "transformer"] = "gru"
    """Sequence model (the GRU is faster on one CPU thread)."""
    mode: Literal["goal_conditioned", "filtered_bc"] = "goal_conditioned"
    """Re-training data: all rollouts with outcome labels, or the successful rollouts only."""
    prior: Literal["uniform", "skewed"] = "uniform"
    """Behaviour prior of the offline data."""
    skew: float = 0.7
    """Probability of action 0 at every state under the skewed prior (rest shared equally)."""
    rejection: bool = True
    """Also run the inference-time route (rejection sampling with acceptance q^k) at every round."""
    fold_rounds: int = 0
    """Rounds of neural cumulative folding, alpha = 1, 2, 4, ... (<= rounds; deterministic envs only)."""
    accepted: int = 2000
    """Rejection route: accepted trajectories wanted per k."""
    max_samples: int = 2_000_000
    """Rejection route: cap on environment samples per k."""
    floor: float = 0.01
    """Read-out convention: actions below this probability are zeroed for return and incoherence."""
    json: bool = False
    """Print one JSON object per round (mean over seeds) instead of a table."""
    out: str = ""
    """Optional directory for rows.jsonl (per seed and round) and a summary plot; each finished seed is also
    checkpointed there (seeds/seed_<n>.json), so `--resume` continues a killed run."""
    resume: bool = False
    """Reuse the seeds already finished in --out (the config must equal its config.json); needs --out."""

    def __post_init__(self) -> None:
        checks = [("depth", self.depth >= 1, ">= 1"), ("rounds", self.rounds >= 1, ">= 1"),
                  ("seeds", self.seeds >= 1, ">= 1"), ("rollouts", self.rollouts >= 10, ">= 10"),
                  ("safe_payoff", 0 <= self.safe_payoff <= 1, "in [0, 1]"),
                  ("slip", 0 <= self.slip <= 1, "in [0, 1]"),
                  ("skew", 0 < self.skew < 1, "in (0, 1)"), ("floor", 0 <= self.floor < 0.5, "in [0, 0.5)"),
                  ("fold_rounds", 0 <= self.fold_rounds <= self.rounds, "in [0, rounds]"),
                  ("lr", self.lr > 0, "> 0"), ("resume", self.out or not self.resume, "False without --out")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"config field {name!r}: got {getattr(self, name)!r}, expected {allowed}")


def make_env(cfg: NeuralConfig) -> LayeredMDP:
    if cfg.env == "deep-mountain-race":
        return envs.deep_mountain_race(cfg.depth, cfg.safe_payoff, cfg.slip)
    if cfg.env == "mountain-race":
        return envs.deep_mountain_race(1, cfg.safe_payoff)
    builders = {"easy-mountain-race": envs.easy_mountain_race,
                "stochastic-counterexample": envs.stochastic_counterexample,
                "success-vs-return": envs.success_vs_return_counterexample}
    return builders[cfg.env]()


def behaviour_prior(mdp: LayeredMDP, kind: str, skew: float) -> list[np.ndarray]:
    """Uniform, or `skew` on action 0 and the rest shared equally (single-action states stay 1)."""
    if kind == "uniform":
        return uniform_policy(mdp)
    out = []
    for A, S in zip(mdp.n_actions, mdp.n_states[:-1], strict=True):
        row = np.full(A, (1 - skew) / max(A - 1, 1))
        row[0] = skew if A > 1 else 1.0
        out.append(np.tile(row, (S, 1)))
    return out


def occupancy_tv(mdp: LayeredMDP, pi: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> float:
    """`(1/T) sum_t E_{s ~ d^target_t} TV(pi(.|s), target(.|s))`: mean over layers, weighted by the target."""
    d = occupancy(mdp, target)
    per_layer = [np.sum(dt * 0.5 * np.abs(a - b).sum(axis=1)) for dt, a, b in zip(d, pi, target, strict=True)]
    return float(np.mean(per_layer))


def label(tr: Trajectories, rng: np.random.Generator) -> np.ndarray:
    """Realised outcomes `O ~ Bernoulli(exp sum_t log q)`, `(N,)` in {0, 1}."""
    return (np.log(rng.random(len(tr.log_q_sum))) < tr.log_q_sum).astype(np.int64)


def count_policy(mdp: LayeredMDP, tr: Trajectories, fallback: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-state empirical action frequencies of a batch; states without data keep `fallback`."""
    out = []
    for t, la in enumerate(mdp.layers):
        cell = tr.states[:, t] * la.n_actions + tr.actions[:, t]
        n = np.bincount(cell, minlength=la.n_states * la.n_actions).reshape(la.n_states, la.n_actions)
        den = n.sum(axis=1, keepdims=True)
        out.append(np.where(den > 0, n / np.where(den > 0, den, 1), fallback[t]))
    return out


def _concat(parts: Sequence[Trajectories]) -> Trajectories:
    return Trajectories(*(np.concatenate(x) for x in zip(*parts, strict=True)))


def _score(mdp: LayeredMDP, pi: list[np.ndarray], k: float, floor: float) -> dict:
    """Exact success, return and incoherence of a read-out policy (return/kappa on the pruned read-out)."""
    pruned = prune(pi, floor)
    return {"success": success_probability(mdp, pi), "return": expected_return(mdp, pruned),
            "kappa_1": incoherence(mdp, pruned, 1.0), "kappa_inv_k": incoherence(mdp, pruned, 1.0 / k),
            "root_policy": pi[0][0].tolist()}


def _reference(mdp: LayeredMDP, prior: list[np.ndarray], k: int, exact: list[np.ndarray]) -> dict:
    """Exact `G^k p` and `pi_{alpha=k}` numbers for round k (no network)."""
    temp = tempered(mdp, prior, k)
    g = _score(mdp, exact, k, 0.0)
    return {"exact_success": g["success"], "exact_return": g["return"], "exact_kappa_1": g["kappa_1"],
            "exact_kappa_inv_k": g["kappa_inv_k"], "exact_root_policy": g["root_policy"],
            "tempered_success": success_probability(mdp, temp), "tempered_root_policy": temp[0][0].tolist(),
            "exact_acceptance": success_probability(scaled_log_q(mdp, k), prior)}


def _round_metrics(mdp: LayeredMDP, prior: list[np.ndarray], k: int, pi: list[np.ndarray],
                   prev: Sequence[np.ndarray], exact: list[np.ndarray], floor: float) -> dict:
    """Exact scores of neural `pi_k`, the exact references, and the TV gaps (fidelity = to `G(pi_{k-1})`)."""
    return {**_score(mdp, pi, k, floor), **_reference(mdp, prior, k, exact),
            "fidelity_tv": occupancy_tv(mdp, pi, retrain(mdp, prev)),
            "tv_to_exact": occupancy_tv(mdp, pi, exact),
            "tv_to_tempered": occupancy_tv(mdp, pi, tempered(mdp, prior, k))}


def _rejection(mdp: LayeredMDP, sampler: list[np.ndarray], k: int, cfg: NeuralConfig,
               rng: np.random.Generator, fallback: list[np.ndarray]) -> tuple[list[np.ndarray], float, int]:
    """Sample the offline model's behaviour branch, accept w.p. `q^k`, until `cfg.accepted` are accepted."""
    kept, drawn = [], 0
    while sum(len(x.actions) for x in kept) < cfg.accepted and drawn < cfg.max_samples:
        kept.append(rejection_sample(mdp, sampler, k, cfg.rollouts, rng)[0])
        drawn += cfg.rollouts
    acc = _concat(kept)
    return count_policy(mdp, acc, fallback), len(acc.actions) / drawn, drawn


def _fold_route(mdp, prior, model, pi1, cfg, rng, paths) -> list[dict]:
    """Neural cumulative folding: round j fine-tunes on rollouts accepted w.p. q^{alpha_j}; alpha doubles."""
    rows, pi, alpha, samples = [], pi1, 1, cfg.rollouts
    for j in range(1, cfg.fold_rounds + 1):
        if j > 1:
            parts, drawn = [], 0
            while sum(len(x.actions) for x in parts) < cfg.rollouts and drawn < cfg.max_samples:
                parts.append(rejection_sample(mdp, pi, alpha, cfg.rollouts, rng)[0])
                drawn += cfg.rollouts
            acc = _concat(parts)
            fit(model, encode(acc, np.ones(len(acc.actions), dtype=np.int64)), cfg.steps_round, cfg.lr)
            pi, alpha, samples = read_policy(model, mdp, paths), 2 * alpha, samples + drawn
        exact = fold(mdp, prior, j, cumulative=True)
        rows.append({"fold_alpha": alpha, "fold_success": success_probability(mdp, pi),
                     "fold_exact_success": success_probability(mdp, exact),
                     "fold_root_policy": pi[0][0].tolist(),
                     "fold_tv_to_exact": occupancy_tv(mdp, pi, exact), "fold_env_samples": samples})
    return rows


def run_seed(mdp: LayeredMDP, prior: list[np.ndarray], cfg: NeuralConfig, seed: int,
             on_round: Callable[[dict], None] | None = None) -> list[dict]:
    """One seed: offline phase, K - 1 re-training rounds, rejection and fold routes; one row per round.
    `on_round(row)` is called as each round is scored (progress)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    paths = all_paths(mdp)
    exact_seq = retrain_sequence(mdp, prior, cfg.rounds)
    model = SequenceModel(mdp.n_states, mdp.n_actions, cfg.hidden, cfg.arch)
    rows, prev, samples = [], prior, 0
    for k in range(1, cfg.rounds + 1):
        tr = sample_trajectories(mdp, prev, cfg.rollouts, rng)  # k = 1: the prior's offline data
        outcome = label(tr, rng)
        if cfg.mode == "filtered_bc" and k > 1:
            tr, outcome = Trajectories(*(x[outcome == 1] for x in tr)), outcome[outcome == 1]
        data = encode(tr, outcome, with_null=k == 1)  # NULL copies: the behaviour branch for rejection
        loss = fit(model, data, cfg.steps_offline if k == 1 else cfg.steps_round, cfg.lr)
        samples += cfg.rollouts
        pi = read_policy(model, mdp, paths)
        if k == 1:
            behaviour = read_policy(model, mdp, paths, outcome=NULL)
            offline_state = copy.deepcopy(model.state_dict())
        empirical = count_policy(mdp, Trajectories(*(x[outcome == 1] for x in tr)), prev)
        row = {"round": k, "seed": seed, **_round_metrics(mdp, prior, k, pi, prev, exact_seq[k], cfg.floor),
               "fit_tv": occupancy_tv(mdp, pi, empirical), "loss": loss, "env_samples": samples}
        if cfg.rejection:
            rej, acc, drawn = _rejection(mdp, behaviour, k, cfg, rng, prior)
            row.update({"rejection_success": success_probability(mdp, rej), "rejection_acceptance": acc,
                        "rejection_root_policy": rej[0][0].tolist(), "rejection_env_samples": drawn,
                        "rejection_tv_to_tempered": occupancy_tv(mdp, rej, tempered(mdp, prior, k))})
        rows.append(row)
        prev = pi
        if on_round is not None:
            on_round(row)
    if cfg.fold_rounds:
        fold_model = SequenceModel(mdp.n_states, mdp.n_actions, cfg.hidden, cfg.arch)
        fold_model.load_state_dict(offline_state)
        pi1 = read_policy(fold_model, mdp, paths)
        for row, extra in zip(rows, _fold_route(mdp, prior, fold_model, pi1, cfg, rng, paths), strict=False):
            row.update(extra)
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean over seeds per round (lists element-wise); `<key>_sd` and `<key>_max` for a few keys."""
    out = []
    for k in sorted({r["round"] for r in rows}):
        group = [r for r in rows if r["round"] == k]
        agg: dict = {"round": k, "n_seeds": len(group)}
        for key in group[0]:
            if key in ("round", "seed") or any(key not in r for r in group):
                continue
            vals = np.array([r[key] for r in group], dtype=np.float64)
            agg[key] = vals.mean(axis=0).tolist()
            if key in ("success", "fidelity_tv", "tv_to_exact", "rejection_success", "fold_success"):
                agg[key + "_sd"] = float(vals.std())
            if key == "fidelity_tv":
                agg["fidelity_tv_max"] = float(vals.max())
        out.append(agg)
    return out


def _seed_dir(cfg: NeuralConfig) -> Path | None:
    """Where finished seeds are checkpointed (None without --out); checks a resumed config first."""
    if not cfg.out:
        return None
    out = Path(cfg.out)
    mine = {k: v for k, v in to_dict(cfg).items() if k not in ("resume", "json")}
    if cfg.resume and (out / "config.json").exists():
        try:
            stored = json.loads((out / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"resume: {out / 'config.json'} is not valid JSON ({e}); choose a new --out") from None
        diff = sorted(k for k in mine.keys() | stored.keys() if mine.get(k) != stored.get(k))
        if diff:
            raise ConfigError(f"resume: the config differs from {out / 'config.json'} in {diff}; resume with the "
                              "run's settings or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", mine)
    return out / "seeds"


def run(cfg: NeuralConfig, on_round: Callable[[dict], None] | None = None) -> tuple[list[dict], list[dict]]:
    """All seeds; returns (per-seed rows, per-round means). `on_round(row)` is called after each (seed, round).

    With --out every finished seed is written to seeds/seed_<n>.json; with --resume those seeds are read back
    instead of run again (a seed is a deterministic function of its number, so the result is the same). A
    SIGTERM/SIGINT stops after the current seed, with one line saying how to resume."""
    mdp = make_env(cfg)
    if cfg.fold_rounds and not mdp.is_deterministic():
        raise ValueError(f"fold_rounds: got {cfg.fold_rounds} on the stochastic env {cfg.env!r}; the "
                         "sampling form of cumulative folding needs deterministic dynamics (use 0)")
    prior = behaviour_prior(mdp, cfg.prior, cfg.skew)
    seeds = _seed_dir(cfg)
    rows: list[dict] = []
    with graceful_stop() as stop:
        for i in range(cfg.seeds):
            seed = cfg.seed + i
            done = seeds / f"seed_{seed}.json" if seeds is not None else None
            if cfg.resume and done is not None and done.exists():
                seed_rows = json.loads(done.read_text())
                for row in seed_rows if on_round is not None else ():
                    on_round(row)
            else:
                seed_rows = run_seed(mdp, prior, cfg, seed, on_round)
                if done is not None:
                    done.parent.mkdir(exist_ok=True)
                    write_json_atomic(done, seed_rows)
            rows += seed_rows
            if stop.requested and i + 1 < cfg.seeds:
                where = f"seeds up to {seed} are in {seeds}; rerun with --resume" if seeds else "no --out"
                raise StopRequested(f"stopped by {stop.signal_name} after seed {seed}; {where}", stop.exit_code)
    return rows, aggregate(rows)
