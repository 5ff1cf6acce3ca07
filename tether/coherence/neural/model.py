"""An outcome-conditioned autoregressive sequence model over any `LayeredMDP`, and its exact read-out.

The neural side of Karwowski & Douglas, arXiv:2510.06545 (the paper itself has no neural
experiment, so this design is ours, after the Decision Transformer, arXiv:2106.01345, with the outcome
token in place of the return-to-go). A trajectory is the token sequence

    [O], s_0, a_0, s_1, a_1, ..., s_{T-1}, a_{T-1}        O in {0, 1} is the realised outcome

and the model predicts `a_t` from `(O, s_0, a_0, ..., s_t)`. Conditioning on `O = 1` gives the
goal-conditioned policy `p(a_t | h_t, O = 1)`, whose infinite-data target under a Markov behaviour policy
p is `G(p)(a | s_t)` (Def. 5.3: past outcomes are fixed by the history, so the target is Markov).

A third outcome token, `NULL = 2`, means "outcome not given" (as in classifier-free guidance,
arXiv:2207.12598): the offline phase also trains on every row with O replaced by NULL, so the same
network models the behaviour policy. The rejection route samples that branch. Mixing the O = 0 and
O = 1 branches rolled out in the env would not give back the behaviour law under stochastic dynamics
(conditioning on O also tilts the dynamics); we measured that bias before adding NULL.

This module owns the model (`SequenceModel`, GRU or small causal transformer), the data encoding with
de-duplication (`encode`), the pure loss (`sequence_nll`), full-batch fitting (`fit`) and the read-out of
the network as a tabular policy (`read_policy`) that the exact engine scores. Training rounds live in
`neural_train.py`. Nothing here computes an exact value; that is the engine's job.

De-duplication: identical `(O, trajectory)` rows are merged with a count, and the loss is the
count-weighted mean, which equals the full-batch cross-entropy over all N rollouts (the envs are small,
so a round of 4000 rollouts has at most a few dozen distinct rows). Training is therefore full-batch Adam.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from tether.coherence.mdp import LayeredMDP, uniform_policy
from tether.coherence.trajectories import Trajectories, enumerate_trajectories

__all__ = ["SequenceModel", "Encoded", "encode", "sequence_nll", "fit", "read_policy", "prune", "Paths",
           "all_paths", "NULL"]

NULL = 2  # outcome token meaning "outcome not given" (the behaviour-policy branch)


class SequenceModel(nn.Module):
    """Tiny goal-conditioned policy over `[O], s_0, a_0, ...` for one `LayeredMDP` layout.

    `arch="gru"`: the O-embedding is the initial hidden state; the input at step t is the embedding of
    the state token `(t, s_t)` plus that of the previous action (a start token at t = 0); the action head
    reads the hidden state. `arch="transformer"`: 2-layer, 4-head causal transformer over the interleaved
    `2T + 1` tokens with learned positions; the head reads each state position.
    Logits of actions that layer t does not have are -inf.
    """

    def __init__(self, n_states: Sequence[int], n_actions: Sequence[int], hidden: int = 64,
                 arch: Literal["gru", "transformer"] = "gru") -> None:
        super().__init__()
        self.arch, self.T, self.A = arch, len(n_actions), max(n_actions)
        self.register_buffer("offset", torch.tensor(np.concatenate([[0], np.cumsum(n_states[:-1])]),
                                                    dtype=torch.long), persistent=False)
        valid = torch.arange(self.A)[None, :] < torch.tensor(list(n_actions))[:, None]  # (T, A)
        self.register_buffer("valid", valid, persistent=False)
        self.outcome = nn.Embedding(3, hidden)  # O = 0, 1 and NULL
        self.state = nn.Embedding(int(sum(n_states)), hidden)
        self.action = nn.Embedding(self.A + 1, hidden)  # index 0 = start, a + 1 = action a
        if arch == "gru":
            self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        elif arch == "transformer":
            self.pos = nn.Embedding(2 * self.T + 1, hidden)
            layer = nn.TransformerEncoderLayer(hidden, 4, 2 * hidden, dropout=0.0, batch_first=True)
            self.body = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        else:
            raise ValueError(f"arch: got {arch!r}, expected 'gru' or 'transformer'")
        self.head = nn.Linear(hidden, self.A)

    def forward(self, outcome: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Action logits `(B, T, A)` from outcome `(B,)`, states `(B, T)`, actions `(B, T)` (teacher forcing).

        The logits at step t depend only on `O, s_{0..t}, a_{0..t-1}`.
        """
        B, T = states.shape
        s_emb = self.state(states + self.offset[None, :T])  # (B, T, H)
        prev = torch.cat([torch.zeros(B, 1, dtype=torch.long), actions[:, :-1] + 1], dim=1)  # (B, T)
        if self.arch == "gru":
            h0 = torch.tanh(self.outcome(outcome))[None]  # (1, B, H)
            out, _ = self.rnn(s_emb + self.action(prev), h0)  # (B, T, H)
        else:
            a_emb = self.action(actions + 1)  # (B, T, H)
            seq = torch.stack([s_emb, a_emb], dim=2).reshape(B, 2 * T, -1)  # s_0, a_0, s_1, a_1, ...
            seq = torch.cat([self.outcome(outcome)[:, None], seq], dim=1)  # (B, 2T+1, H)
            seq = seq + self.pos.weight[None, :2 * T + 1]
            mask = nn.Transformer.generate_square_subsequent_mask(2 * T + 1)
            out = self.body(seq, mask=mask, is_causal=True)[:, 1::2]  # (B, T, H) at the s_t positions
        logits = self.head(out)  # (B, T, A)
        return logits.masked_fill(~self.valid[None, :T], float("-inf"))


@dataclass(frozen=True)
class Encoded:
    """De-duplicated training rows: `count[i]` copies of `(outcome[i], states[i], actions[i])`."""

    outcome: torch.Tensor  # (U,) long
    states: torch.Tensor  # (U, T) long, s_0 .. s_{T-1}
    actions: torch.Tensor  # (U, T) long
    count: torch.Tensor  # (U,) float64 -> float32 weights

    @property
    def n(self) -> int:
        return int(self.count.sum())


def encode(tr: Trajectories, outcome: np.ndarray, with_null: bool = False) -> Encoded:
    """Merge identical `(O, trajectory)` rows of N rollouts; `outcome` is `(N,)` in {0, 1}.

    `with_null` adds every rollout a second time with the NULL outcome token (2N rows in total).
    """
    T = tr.actions.shape[1]
    outcome = np.asarray(outcome, dtype=np.int64)
    rows = np.concatenate([outcome[:, None], tr.states[:, :T], tr.actions], axis=1)  # (N, 2T+1)
    if with_null:
        rows = np.concatenate([rows, np.concatenate([np.full_like(outcome, NULL)[:, None], rows[:, 1:]], 1)])
    uniq, count = np.unique(rows, axis=0, return_counts=True)  # (U, 2T+1), (U,)
    as_t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.long)  # noqa: E731
    return Encoded(as_t(uniq[:, 0]), as_t(uniq[:, 1:T + 1]), as_t(uniq[:, T + 1:]),
                   torch.as_tensor(count, dtype=torch.float32))


def sequence_nll(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Per-step negative log-likelihood `(B, T)` of the taken actions under `logits (B, T, A)`."""
    logp = torch.log_softmax(logits, dim=-1)  # (B, T, A); -inf at invalid actions, never taken
    return -logp.gather(-1, actions[..., None]).squeeze(-1)


def fit(model: SequenceModel, data: Encoded, steps: int, lr: float) -> float:
    """Full-batch Adam on the count-weighted cross-entropy; returns the final loss (nats per trajectory)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    weight = data.count / data.count.sum()  # (U,)
    loss = torch.zeros(())
    for _ in range(steps):
        nll = sequence_nll(model(data.outcome, data.states, data.actions), data.actions)  # (U, T)
        loss = (weight * nll.sum(dim=1)).sum()  # mean over the N rollouts of the summed step NLL
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


@dataclass(frozen=True)
class Paths:
    """Every feasible history of a small MDP, for the read-out (`all_paths`)."""

    states: torch.Tensor  # (P, T) long
    actions: torch.Tensor  # (P, T) long
    log_dynamics: np.ndarray  # (P,) log mu(s_0) + sum_t log P(s_{t+1} | s_t, a_t)
    state_np: np.ndarray  # (P, T) int
    action_np: np.ndarray  # (P, T) int


def all_paths(mdp: LayeredMDP, max_paths: int = 200_000) -> Paths:
    """Enumerate every (state, action) path of positive probability under the uniform policy."""
    tr = enumerate_trajectories(mdp, uniform_policy(mdp), max_paths=max_paths)
    T = mdp.horizon
    log_uniform = -float(np.sum(np.log(mdp.n_actions)))  # the uniform policy's share of tr.log_prob
    s, a = tr.states[:, :T], tr.actions
    return Paths(torch.as_tensor(s, dtype=torch.long), torch.as_tensor(a, dtype=torch.long),
                 tr.log_prob - log_uniform, s, a)


@torch.no_grad()
def read_policy(model: SequenceModel, mdp: LayeredMDP, paths: Paths, outcome: int = 1) -> list[np.ndarray]:
    """The network conditioned on `O = outcome`, read out as a tabular Markov policy `[(S_t, A_t)]`.

    On a tree every state has one history, so this is the network's policy exactly. On a DAG the
    network may depend on the history; the read-out is its Markovisation
    `pi(a|s_t) = E[pi_net(a|h_t) | s_t]` under the network's own path law. That keeps every (t, s, a)
    marginal, hence the return J, but not the success probability when q < 1 at several steps (success
    is a product along the path). Rollouts are drawn from this read-out, so the re-trained object is
    always the scored tabular policy; every env of `neural_train` is a tree up to single-action merges.
    """
    P = paths.states.shape[0]
    logits = model(torch.full((P,), outcome, dtype=torch.long), paths.states, paths.actions)
    logp = torch.log_softmax(logits.double(), dim=-1).numpy()  # (P, T, A)
    taken = np.take_along_axis(logp, paths.action_np[..., None], axis=-1)[..., 0]  # (P, T)
    log_w = paths.log_dynamics + taken.sum(axis=1)  # (P,) log path probability under the net
    w = np.exp(log_w - log_w.max())  # summing over continuations gives each prefix its own weight
    out = []
    for t, la in enumerate(mdp.layers):
        s = paths.state_np[:, t]
        num = np.zeros((la.n_states, la.n_actions))
        np.add.at(num, s, w[:, None] * np.exp(logp[:, t, :la.n_actions]))
        den = num.sum(axis=1, keepdims=True)
        pi = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0 / la.n_actions)
        out.append(pi / pi.sum(axis=1, keepdims=True))  # exact row sums for check_policy
    return out


def prune(policy: Sequence[np.ndarray], floor: float) -> list[np.ndarray]:
    """Zero the action probabilities below `floor` and renormalise (read-out convention for J and kappa).

    A softmax network never outputs an exact 0, so a policy read from it plays a `q = 0` action with a
    tiny probability, which makes `J = -inf` and `kappa_delta = +inf` (KL to a target with a zero). The
    exact `G^k p` has true zeros there. Success and fidelity are reported on the raw read-out.
    """
    out = []
    for pi in policy:
        kept = np.where(pi >= floor, pi, 0.0)
        kept = np.where(kept.sum(axis=1, keepdims=True) > 0, kept, pi)
        out.append(kept / kept.sum(axis=1, keepdims=True))
    return out

