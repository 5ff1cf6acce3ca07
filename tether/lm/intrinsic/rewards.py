"""Label-free ("intrinsic") rewards for RL of reasoning models, registered into `tether.lm.grpo.rewards.REWARDS`.

arXiv:2603.16578 ("concise and certain" rewards) and its anchors. The paper's formulas were not available;
the table below is our reconstruction (documented in docs/results/intrinsic.md), not a transcription.
With H_t the entropy of the full next-token distribution p_t at step t of a completion of T tokens (EOS
included), all rewards are sequence scalars:

  lp              -T                              concise only (LP)
  ent             -sum_t H_t                      certain and concise: each token adds H_t >= 0 (Ent)
  avg_ent         -mean_t H_t                     certain only: the length term is removed (AvgEnt)
  renyi           -sum_t H_alpha(p_t)             certain and concise, alpha = `renyi_alpha` (cum. Renyi)
  cp              +sum_t sum_v p_t(v)^2           certain, but a sum of positive terms REWARDS length (CP)
  self_certainty  mean_t [logsumexp z_t - mean_v z_t]   INTUITOR, arXiv:2505.19590 (KL(U||p_t) + log V)
  rent            -mean of H_t over the last k tokens   RENT, arXiv:2505.22660 (k = `rent_last_k`)
  em_seq          sum_t log p_t(y_t)              EM-RL sequence, arXiv:2505.15134 (-trajectory entropy MC)
  rlsc            prod_t p_t(y_t) = pi(y|x)       RLSC, arXiv:2506.06395, as a REINFORCE reward (its alpha is
                                                  a constant shift, which a group baseline removes)
  majority        1[answer == group majority]     TTRL arXiv:2504.16084 / SRT arXiv:2505.21444
  semantic        size of the answer's cluster / G  EMPO, arXiv:2504.05812 (clusters = equal integer answers)
  random          Bernoulli(0.5)                  control (Spurious Rewards, arXiv:2506.10947)
Unparsable completions score 0 under majority and semantic. The per-token statistics come from the policy
forward that scores the completion (`Policy.token_stats`), at the sampling temperature, online (INTUITOR shows
a frozen scorer is hacked). Mixtures ("lp+avg_ent") are `tether.lm.grpo.rewards.compute_rewards`.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from tether.core.masked import masked_mean, masked_sum
from tether.lm.grpo.rewards import REWARDS, RewardInput
from tether.lm.model.policy import LOGIT_STATS

__all__ = ["renyi_stat", "INTRINSIC"]

INTRINSIC = ("lp", "ent", "avg_ent", "renyi", "cp", "self_certainty", "rent", "em_seq", "rlsc", "majority",
             "semantic", "random")


def renyi_stat(alpha: float) -> str:
    """Name of the per-token Renyi-alpha entropy statistic, registering it on first use."""
    name = f"renyi_{alpha:g}"
    if name not in LOGIT_STATS:
        def renyi(logits: Tensor, logp_all: Tensor) -> Tensor:
            # H_alpha = log(sum_v p^alpha) / (1 - alpha), via logsumexp for stability at large alpha
            return torch.logsumexp(alpha * logp_all, -1) / (1 - alpha)

        LOGIT_STATS.register(name)(renyi)
    return name


def _needs(*names: str):
    def deco(fn):
        fn.needs = names
        return fn
    return deco


@REWARDS.register("lp")
def length_penalty(batch: RewardInput) -> Tensor:
    """-T: the number of completion tokens (EOS included)."""
    return -batch.mask.sum(-1).float()


@REWARDS.register("ent")
@_needs("entropy")
def neg_entropy_sum(batch: RewardInput) -> Tensor:
    """-sum_t H_t (nats): certainty with an implicit length penalty."""
    return -masked_sum(batch.stats["entropy"], batch.mask, dim=1)


@REWARDS.register("avg_ent")
@_needs("entropy")
def neg_entropy_mean(batch: RewardInput) -> Tensor:
    """-mean_t H_t: certainty, length-neutral."""
    return -masked_mean(batch.stats["entropy"], batch.mask, dim=1)


@REWARDS.register("renyi")
def neg_renyi_sum(batch: RewardInput) -> Tensor:
    """-sum_t H_alpha(p_t): cumulative Renyi entropy (alpha from RewardOptions)."""
    return -masked_sum(batch.stats[renyi_stat(batch.options.renyi_alpha)], batch.mask, dim=1)


# the statistic depends on alpha: `needs` may be a function of the options (see rewards.reward_needs)
neg_renyi_sum.needs = lambda opts: (renyi_stat(opts.renyi_alpha),)


@REWARDS.register("cp")
@_needs("collision")
def collision_sum(batch: RewardInput) -> Tensor:
    """+sum_t sum_v p_t(v)^2: positive per-token terms, so longer completions score higher (verbosity)."""
    return masked_sum(batch.stats["collision"], batch.mask, dim=1)


@REWARDS.register("self_certainty")
@_needs("self_certainty")
def self_certainty(batch: RewardInput) -> Tensor:
    """INTUITOR: mean_t (logsumexp z_t - mean z_t) = mean_t KL(U || p_t) + log V."""
    return masked_mean(batch.stats["self_certainty"], batch.mask, dim=1)


@REWARDS.register("rent")
@_needs("entropy")
def rent_last_k(batch: RewardInput) -> Tensor:
    """RENT: -mean entropy of the last k completion tokens (the final answer region)."""
    k = batch.options.rent_last_k
    lengths = batch.mask.sum(-1, keepdim=True)                                 # (B, 1)
    pos = torch.arange(batch.mask.shape[1])[None, :]                           # (1, T)
    last = batch.mask & (pos >= lengths - k)
    return -masked_mean(batch.stats["entropy"], last, dim=1)


@REWARDS.register("em_seq")
@_needs("logp")
def sequence_logp(batch: RewardInput) -> Tensor:
    """EM-RL sequence reward: log pi(y|x) = sum_t log p_t(y_t)."""
    return masked_sum(batch.stats["logp"], batch.mask, dim=1)


@REWARDS.register("rlsc")
@_needs("logp")
def rlsc(batch: RewardInput) -> Tensor:
    """RLSC mode sharpening as a reward: pi(y|x) = exp(sum_t log p_t(y_t))."""
    return masked_sum(batch.stats["logp"], batch.mask, dim=1).exp()


def _group_answers(batch: RewardInput) -> dict[int, Counter]:
    groups: dict[int, Counter] = {}
    for g, a in zip(batch.group_ids.tolist(), batch.parsed, strict=True):
        groups.setdefault(g, Counter())
        if a is not None:
            groups[g][a] += 1
    return groups


@REWARDS.register("majority")
def majority_vote(batch: RewardInput) -> Tensor:
    """1 if the answer equals its group's most frequent parsed answer (ties: smallest answer), else 0."""
    groups = _group_answers(batch)
    top = {g: min(c, key=lambda a: (-c[a], a)) if c else None for g, c in groups.items()}
    return torch.tensor([float(a is not None and a == top[g])
                         for g, a in zip(batch.group_ids.tolist(), batch.parsed, strict=True)])


@REWARDS.register("semantic")
def semantic_cluster(batch: RewardInput) -> Tensor:
    """EMPO: fraction of the group sharing this completion's answer (0 if unparsable)."""
    groups = _group_answers(batch)
    size = Counter(batch.group_ids.tolist())
    return torch.tensor([groups[g][a] / size[g] if a is not None else 0.0
                         for g, a in zip(batch.group_ids.tolist(), batch.parsed, strict=True)])


@REWARDS.register("random")
def random_reward(batch: RewardInput) -> Tensor:
    """Bernoulli(0.5) from torch's global RNG (seeded per run and checkpointed): a no-information control."""
    return (torch.rand(len(batch.parsed)) < 0.5).float()
